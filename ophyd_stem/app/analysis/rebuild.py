"""A run's agent rebuilt from what the run recorded: its class, its settings and the kind of
device it computed on.

:func:`agent_factory` gives ``make_agent(survey_image)``, the same agent for
:mod:`.forensics`, or with settings changed for :mod:`.counterfactual`. The agents are
imported when a factory is made.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from agents.runs import RunData, unpack_run

__all__ = [
    "REPORTED_AGENTS",
    "after_step",
    "agent_factory",
    "as_run_data",
    "map_steps",
    "replay_device",
    "reported_agent_class",
    "survey_detector",
]


def as_run_data(run: Any) -> RunData:
    """A :class:`~agents.runs.RunData` from itself, a tiled run, or a list of documents."""
    return run if isinstance(run, RunData) else unpack_run(run)


def _recorded_device(data: RunData) -> dict[str, Any] | None:
    """Where the run's agent computed, from its report (None: not recorded)."""
    if data.plan_name == "adaptive_eels":
        reports = [r for r in data.decisions.get("reports", []) if isinstance(r, dict)]
        return reports[0].get("device") if reports else None
    if data.plan_name == "dcnn" and data.dcnn:
        return (data.dcnn[0].get("report") or {}).get("device")
    if data.plan_name == "latent_eels":
        from .latent import recorded_latent_map

        return ((recorded_latent_map(data) or {}).get("report") or {}).get("device")
    return None


def replay_device(data: RunData) -> tuple[str, str | None]:
    """``(device, note)``: where a replay of the run's agent computes, and why it differs.

    The same kind of device as the run's: the CPU for a run decided on a CPU (also when
    this machine has a GPU: its rounding differs), a GPU for a run decided on one when this
    machine has a GPU; else the CPU, with a note.
    """
    from agents.device import NoDeviceError, resolve_device

    used = _recorded_device(data) or {"type": "cpu"}
    if used.get("type") != "cuda":
        return "cpu", None
    try:
        resolve_device("cuda")
    except NoDeviceError:
        name = used.get("name") or "a GPU"
        return "cpu", (
            f"the run's agent computed on {name} (cuda:{used.get('index')}); no GPU here, so "
            "this replay computes on the CPU and its decisions can differ by the GPU's rounding"
        )
    return "cuda", None


def survey_detector(agent: Any, data: RunData) -> dict[str, Any]:
    """``{"detector": <the run's survey signal>}`` for an atom finder whose ``observe`` takes
    it, as the plan passed it (an ABF survey: columns dark), else nothing."""
    try:
        takes = "detector" in inspect.signature(agent.observe).parameters
    except (AttributeError, TypeError, ValueError):
        takes = False
    return {"detector": data.survey_signal} if takes else {}


def _accepted(cls: Any, options: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(cls).parameters
    return {k: v for k, v in options.items() if k in params}


def _dkl_options(data: RunData) -> dict[str, Any]:
    """DKLAgent settings from the decisions' reports (the model block, the acquisition in
    force before any intervention, the seed count) and the candidate count."""
    reports = [r for r in data.decisions.get("reports", []) if isinstance(r, dict)]
    if not reports:
        raise ValueError("the run records no agent report: forensics needs its settings")
    first = reports[0]
    options: dict[str, Any] = dict(first.get("config") or {})
    options.update(first.get("model") or {})
    exploration = dict(first.get("acquisition") or {})
    for iv in data.interventions:  # the settings before the operator changed them
        if iv.get("kind") == "set_acquisition" and isinstance(iv.get("before"), dict):
            exploration = iv["before"]
            break
    if exploration:
        options.update(
            acquisition=exploration.get("name", "ei"),
            xi=exploration.get("xi", 0.01),
            beta=exploration.get("beta", 4.0),
        )
    if options.get("hidden") is not None:
        options["hidden"] = tuple(options["hidden"])
    # runs recorded before the seed points' order was an option drew it (the default then);
    # those before "objects" recorded no contrast, which only "objects" reads
    options.setdefault("seed_order", "drawn")
    # seeds: those handed out by the first report (after the first step), plus those left
    first_step = int(data.decisions["step"][0])
    seeds = {
        (float(x), float(y))
        for x, y, s, k in zip(
            data.decisions.get("x", []),
            data.decisions.get("y", []),
            data.decisions.get("source", []),
            data.decisions["step"],
        )
        if s == "seed" and int(k) == first_step
    }
    for iv in data.interventions:
        if iv.get("kind") == "suggested" and int(iv["step"]) <= first_step:
            seeds |= {(p["x"], p["y"]) for p in iv.get("after") or [] if p.get("source") == "seed"}
    options.setdefault("n_seed", len(seeds) + int(first.get("seeds_left") or 0))
    n_candidates = first.get("n_candidates")
    if "step" not in options and n_candidates and data.survey_image is not None:
        from agents.patches import candidate_grid

        shape = data.survey_image.shape
        for step in range(1, 17):
            if len(candidate_grid(shape, step)) == n_candidates:
                options["step"] = step
                break
    return options


#: agents of adaptive runs that say in each report who they are and how they were made
#: (``report()["agent"]`` and ``["config"]``): rebuilt from that alone
REPORTED_AGENTS = {
    "bandit": "agents.bandit:BanditAgent",
    "physics_gp": "agents.physics:PhysicsGPAgent",
    "hypotheses": "agents.hypotheses:HypothesisAgent",
    "latent": "agents.latent:LatentAgent",
}


def reported_agent_class(name: str) -> Any:
    """The class of a :data:`REPORTED_AGENTS` name (imported now)."""
    import importlib

    module, _, attribute = REPORTED_AGENTS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def _reported_factory(
    data: RunData, **overrides: Any
) -> tuple[Callable[[np.ndarray], Any], dict] | None:
    reports = [r for r in data.decisions.get("reports", []) if isinstance(r, dict)]
    name = reports[0].get("agent") if reports else None
    if name not in REPORTED_AGENTS:
        return None
    cls = reported_agent_class(name)
    options = _accepted(cls, {**(reports[0].get("config") or {}), **overrides})
    return (lambda image: cls(image, **options)), {"class": cls.__name__, **options}


def agent_factory(data: RunData, **overrides: Any) -> tuple[Callable[[np.ndarray], Any], dict]:
    """``(make_agent, description)``: how to rebuild the run's agent from its records.

    Args:
        data: the unpacked run.
        overrides: settings that replace the recorded ones (a counterfactual's).

    Raises:
        ValueError: a plan whose agent cannot be rebuilt from the run.
    """
    plan = data.plan_name
    device, _ = replay_device(data)
    if plan == "adaptive_eels":
        reported = _reported_factory(data, **{"device": device, **overrides})
        if reported is not None:
            return reported
        from agents.dkl import DKLAgent

        options = {**_dkl_options(data), "device": device, **overrides}
        options = _accepted(DKLAgent, options)
        return (lambda image: DKLAgent(image, **options)), {"class": "DKLAgent", **options}
    if plan in ("edge_eels", "drift_corrected_edge_eels"):
        from agents.edges import EdgeAgent

        options = _accepted(EdgeAgent, {**data.edge_report, **overrides})
        return (lambda image: EdgeAgent(image, **options)), {"class": "EdgeAgent", **options}
    if plan == "logstar":
        from agents.logstar import LoGStarAgent

        config = dict((data.start.get("agent") or {}).get("config") or {})
        # runs from before the contrast option took every image as it came: bright columns
        config.setdefault("contrast", "bright")
        report = data.logstar[0]["report"] if data.logstar else {}
        options = {"lattice": report.get("lattice", "graphene"), **config, **overrides}
        options = _accepted(LoGStarAgent, options)

        def make(image: Any) -> Any:
            agent = LoGStarAgent(**options)
            # the optimiser's seed moves on with each optimisation the agent made before
            agent.optimisations = int(config.get("optimisations") or 0)
            return agent

        return make, {"class": "LoGStarAgent", **options}
    if plan == "dcnn":
        return _dcnn_factory(data, **{"device": device, **overrides})
    if plan == "latent_eels":
        from .latent import latent_factory

        return latent_factory(data, **{"device": device, **overrides})
    raise ValueError(
        f"no agent to rebuild for plan {plan!r} (adaptive_eels, edge_eels, logstar, dcnn, "
        "drift_corrected_edge_eels, latent_eels)"
    )


#: how the ensemble found atoms before runs recorded its atom rules and calibration
PREDICT_BEFORE_RULES = {
    "min_spacing": None,
    "exclude_edge": False,
    "calibration": None,
    "max_false": None,
}


#: settings for which None is a choice (keep both close atoms, default separation, variance)
_NONE_MEANS_SOMETHING = ("min_separation", "min_spacing", "calibration", "max_false")


def _dcnn_factory(data: RunData, **overrides: Any) -> tuple[Callable[[Any], Any], dict]:
    """The same EnsembleAgent: the ensemble loaded by name and checked against the weights'
    checksum the run recorded (the weights themselves are not in the run)."""
    from agents.ensemble import AtomCalibration, EnsembleAgent, load_ensemble

    if not data.dcnn:
        raise ValueError("the run records no DCNN report: forensics needs its settings")
    config = dict((data.dcnn[0].get("report") or {}).get("config") or {})
    name = config.get("ensemble")
    if not name:
        raise ValueError("the run does not name its ensemble (it was never saved)")
    ensemble = load_ensemble(name)
    recorded, actual = config.get("weights_sha256"), ensemble.metadata.get("weights_sha256")
    if recorded and actual != recorded:
        raise ValueError(
            f"the ensemble {name!r} has changed since the run (weights {str(actual)[:12]} now, "
            f"{str(recorded)[:12]} then): forensics needs the same weights"
        )
    predict = dict(config.get("predict") or {})
    if "calibration" in config:  # the uncertainty the run used, whatever the ensemble has now
        recorded_cal = config["calibration"]
        predict["calibration"] = AtomCalibration.from_dict(recorded_cal) if recorded_cal else None
    else:  # runs from before atom rules and calibration: atoms and uncertainty as then
        predict = {**PREDICT_BEFORE_RULES, **predict}
    options = {
        "target": config.get("target", "uncertain"),
        "min_separation": config.get("min_separation"),
        # runs from before the contrast option took every image as it came: bright columns
        "contrast": config.get("contrast", "bright"),
        # ... and predicted on every image as it came, whatever its columns' size
        "rescale": config.get("rescale", False),
        **predict,
        **overrides,
    }
    options = {k: v for k, v in options.items() if v is not None or k in _NONE_MEANS_SOMETHING}
    described = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in options.items()}
    return (lambda image: EnsembleAgent(ensemble, **options)), {
        "class": "EnsembleAgent",
        "ensemble": name,
        **described,
    }


def map_steps(data: Any) -> set[int]:
    """The steps after which the run recorded the agent's maps (what :func:`after_step`
    asks for again)."""
    return {int(m["step"]) for m in data.maps if "step" in m}


def after_step(agent: Any, step: int, map_steps: set[int]) -> None:
    """What ``adaptive_eels`` asks of the agent after a step's measurements: its report (with
    the step's decisions), then its maps where the run recorded them. Asking can change what
    the agent decides next: the hypotheses agent fits every hypothesis to weigh them for its
    report, a physics GP fits for its maps, and each fit moves their warm start and their
    fits' random seed on. The replay asks when the run did."""
    if callable(getattr(agent, "report", None)):
        agent.report()
    if step in map_steps and callable(getattr(agent, "predict_maps", None)):
        agent.predict_maps()
