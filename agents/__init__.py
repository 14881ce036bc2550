"""ML agents for ophyd-stem: they decide where to measure next.

Pure numpy/torch: no bluesky, ophyd or bridge imports. Heavy agents (torch, gpytorch,
botorch) are imported lazily, on first attribute access, so ``import agents`` stays cheap
and torch-free until an ML agent is actually used.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Agent, Suggestion, as_positions

__all__ = ["Agent", "Suggestion", "as_positions"]

# public name -> module that defines it; filled in as agents land
_LAZY: dict[str, str] = {
    "DKLAgent": "agents.dkl",
    "BanditAgent": "agents.bandit",
    "DriftTracker": "agents.drift",
    "ZeroLossAligner": "agents.zlp",
    "PhysicsGPAgent": "agents.physics",
    "LatentAgent": "agents.latent",
    "RotationInvariantVAE": "agents.rvae",
    "EdgeAgent": "agents.edges",
    "evaluate_edge_points": "agents.edges",
    "AGENTS": "agents.registry",
    "register_agent": "agents.registry",
    "make_agent": "agents.registry",
    "agent_factory": "agents.registry",
    "get_scalarizer": "agents.scalarizers",
    "register_scalarizer": "agents.scalarizers",
    "extract_patches": "agents.patches",
    "acquisition_values": "agents.acquisition",
    "EnsembleAgent": "agents.ensemble",
    "Ensemble": "agents.ensemble",
    "TrainingSettings": "agents.ensemble",
    "train_ensemble": "agents.ensemble",
    "iterative_training": "agents.ensemble",
    "load_ensemble": "agents.ensemble",
    "save_ensemble": "agents.ensemble",
    "EnsembleNotFoundError": "agents.ensemble",
    "LoGStarAgent": "agents.logstar",
    "LoGStarOptimizer": "agents.logstar",
    "optimize_log": "agents.logstar",
}


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'agents' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(_LAZY))
