"""ML agents for ophyd-stem: they decide where to measure next.

Pure numpy/torch: no bluesky, ophyd or bridge imports. Heavy agents (torch, gpytorch,
botorch) are imported lazily, on first attribute access, so ``import agents`` stays cheap
and torch-free until an ML agent is actually used.

Agents compute with one torch thread by default and on ``device="auto"`` (a GPU when there
is one); work that fans out takes ``compute=`` (:mod:`agents.compute`). Importing this
package before torch makes waiting OpenMP threads sleep instead of spin
(``OMP_WAIT_POLICY=PASSIVE``, unless the environment says otherwise): spinning threads made
multi-threaded torch calls up to 29x slower on a busy machine (decision 0010).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

if "torch" not in sys.modules:  # OpenMP reads it once, when torch loads
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import scalarizer_auto  # noqa: F401  (registers the "auto" scalarizer; numpy only)
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
    "fan_out": "agents.compute",
    "resolve_device": "agents.device",
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
