"""Forensics: re-run a run's agent offline and check it makes the same decisions.

A run holds what was measured, in order, and what the agent decided at each step (its
suggestions, the operator's interventions). :func:`forensics` rebuilds the agent from the
run (same survey image, same seed and settings, the scalarizer from ``plan_args`` and the
interventions), feeds it the recorded measurements in the recorded order, re-applies every
intervention where it happened, and compares each suggestion it makes now with the one
recorded. A mismatch means the agent (its code, its settings, the libraries under it) no
longer behaves as it did during the experiment.

Workflows: ``adaptive_eels`` (DKL and any agent given by ``make_agent``), ``edge_eels``
(the edge agent's points), ``logstar`` (the Pareto front, the choice, the atoms), ``dcnn``,
``drift_corrected_edge_eels`` (the edge points, every drift estimate re-registered from the
recorded re-scans, every beam position re-derived) and, in any run that aligned its spectra
on the zero-loss peak (``spectrum_image`` included), the peaks located again
(:mod:`.corrections`).

The agent is rebuilt on the kind of device its report says it computed on (runs from before
devices were recorded ran on the CPU): a run decided on a GPU replays on a GPU when this
machine has one, else on the CPU with a note that decisions may then differ by the GPU's
rounding.

Example:
    >>> report = forensics(catalog["3f2a9c"])                     # doctest: +SKIP
    >>> print(report.text())                                      # doctest: +SKIP
    forensics of 3f2a9c01 (adaptive_eels, agent dkl): 30 of 30 suggestions match
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.runs import RunData, unpack_run

__all__ = [
    "Check",
    "ForensicsReport",
    "agent_factory",
    "as_run_data",
    "forensics",
    "replay_device",
]

#: positions closer than this (pixels) are the same decision
POSITION_TOLERANCE = 1e-6


def as_run_data(run: Any) -> RunData:
    """A :class:`~agents.runs.RunData` from itself, a tiled run, or a list of documents."""
    return run if isinstance(run, RunData) else unpack_run(run)


@dataclass
class Check:
    """One comparison of a recorded decision with the replayed agent's.

    Attributes:
        step: the plan's step (image index for LoG*).
        what: ``"suggest"`` (the plan asked the agent), ``"resuggest"`` (asked again after
            the operator's veto or setting change), ``"points"``, ``"front"``, ``"choice"``
            or ``"atoms"``.
        recorded, replayed: the positions ``(N, 2)`` (or numbers) compared.
        match: True when they agree.
        distance: largest position difference, pixels (or relative difference of numbers).
    """

    step: int
    what: str
    recorded: Any
    replayed: Any
    match: bool
    distance: float = 0.0


@dataclass
class ForensicsReport:
    """The outcome of :func:`forensics`.

    Attributes:
        uid: the run.
        plan_name: its plan.
        agent: how the agent was rebuilt (class and settings).
        checks: every comparison, in order.
        interventions: interventions re-applied.
        value_error: largest relative difference between the recorded values and the
            scalarizer applied again to the recorded spectra (None when not checked).
        notes: what could not be checked, and why.
    """

    uid: str
    plan_name: str | None
    agent: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    interventions: int = 0
    value_error: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def matches(self) -> int:
        return sum(c.match for c in self.checks)

    @property
    def ok(self) -> bool:
        """True when every check matched (and there was something to check)."""
        return bool(self.checks) and self.matches == len(self.checks)

    @property
    def mismatches(self) -> list[Check]:
        return [c for c in self.checks if not c.match]

    def text(self) -> str:
        """A short report: the verdict, then a line per step."""
        lines = [
            f"forensics of {self.uid[:8]} ({self.plan_name}, agent {self.agent.get('class')}): "
            f"{self.matches} of {len(self.checks)} decisions match"
            + ("" if self.ok else "  <-- MISMATCH"),
            f"  interventions re-applied: {self.interventions}",
        ]
        if self.value_error is not None:
            lines.append(
                f"  values recomputed from the spectra: max relative error {self.value_error:.2g}"
            )
        for c in self.checks:
            mark = "ok " if c.match else "DIFF"
            lines.append(
                f"  {mark} step {c.step:3d} {c.what:9s} recorded {_short(c.recorded)}"
                + ("" if c.match else f"  replayed {_short(c.replayed)} (off by {c.distance:.3g})")
            )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "plan_name": self.plan_name,
            "agent": self.agent,
            "ok": self.ok,
            "matches": self.matches,
            "checks": len(self.checks),
            "interventions": self.interventions,
            "value_error": self.value_error,
            "mismatched_steps": sorted({c.step for c in self.mismatches}),
            "notes": self.notes,
        }


def _short(value: Any) -> str:
    arr = np.asarray(value, dtype=float) if not isinstance(value, str) else None
    if arr is None:
        return str(value)
    if arr.ndim == 2 and arr.shape[1] == 2:
        return ", ".join(f"({x:.1f}, {y:.1f})" for x, y in arr[:4]) + (
            " ..." if len(arr) > 4 else ""
        )
    return np.array2string(arr.ravel()[:6], precision=4)


def _xy(points: Any) -> np.ndarray:
    if len(points) == 0:
        return np.empty((0, 2))
    if isinstance(points[0], dict):
        return np.array([[p["x"], p["y"]] for p in points], dtype=float)
    return np.asarray(points, dtype=float).reshape(-1, 2)


def _compare(step: int, what: str, recorded: Any, replayed: Any) -> Check:
    a, b = _xy(recorded), _xy(replayed)
    if a.shape != b.shape:
        return Check(step, what, a, b, False, float("inf"))
    distance = float(np.max(np.abs(a - b))) if len(a) else 0.0
    return Check(step, what, a, b, distance <= POSITION_TOLERANCE, distance)


# ---------------------------------------------------------------------- agents from runs


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


# ---------------------------------------------------------------------- replays


def _apply(agent: Any, iv: dict[str, Any]) -> bool:
    """Re-apply one recorded intervention to the agent; True if it changes the agent."""
    from plans.control import relabel

    kind, detail = iv.get("kind"), iv.get("detail") or {}
    if kind == "set_acquisition":
        agent.set_exploration(**detail)
    elif kind == "set_scalarizer":
        relabel(agent, detail.get("values", []))
    elif kind == "pick_front":
        agent.select(index=int(iv["after"]["index"]), chooser=str(iv.get("who")))
    else:
        return False
    return True


def _adaptive(data: RunData, make_agent: Callable, report: ForensicsReport) -> None:
    if data.survey_image is None:
        raise ValueError("the run has no survey image: nothing to rebuild the agent on")
    agent = make_agent(np.asarray(data.survey_image, dtype=np.float64))
    batch = int(data.plan_args.get("batch", 1))
    dec = data.decisions
    steps = np.asarray(dec.get("step", []), dtype=int)
    positions = np.column_stack([dec.get("x", []), dec.get("y", [])]).astype(float)
    values = np.asarray(dec.get("value", []), dtype=float)
    sources = list(dec.get("source", []))
    all_steps = sorted(set(steps.tolist()) | {int(iv["step"]) for iv in data.interventions})
    for step in all_steps:
        ivs = [iv for iv in data.interventions if int(iv["step"]) == step]
        for iv in ivs:
            if iv.get("phase") == "prepare":
                report.interventions += _apply(agent, iv)
        rows = np.flatnonzero(steps == step)
        review = [iv for iv in ivs if iv.get("phase") == "review"]
        first = next((iv for iv in review if iv["kind"] == "suggested"), None)
        replayed = agent.suggest(batch)
        if first is not None:
            recorded = first["after"]
        else:
            recorded = [positions[i] for i in rows if sources[i] != "operator"]
            replayed = replayed[: len(recorded)] if len(recorded) < len(replayed) else replayed
        report.checks.append(_compare(step, "suggest", recorded, replayed))
        for iv in review:
            if iv is first:
                continue
            if iv["kind"] == "suggested":
                n = int((iv.get("detail") or {}).get("n", len(iv["after"])))
                again = agent.suggest(n)
                report.checks.append(_compare(step, "resuggest", iv["after"], again))
            else:
                report.interventions += _apply(agent, iv)
        if len(rows):
            agent.ingest(positions[rows], values[rows])
    _check_values(data, report)


def _check_values(data: RunData, report: ForensicsReport) -> None:
    """Scalarize the recorded spectra again (the scalarizer in force at each step)."""
    if data.spectra is None or data.energy_axis is None or not len(data.values):
        return
    if len(data.spectra) != len(data.values):
        report.notes.append("spectra and decisions differ in number: values not recomputed")
        return
    from agents.scalarizers import get_scalarizer

    name = data.plan_args.get("scalarizer")
    changes = [
        (int(iv["step"]), iv["after"])
        for iv in data.interventions
        if iv.get("kind") == "set_scalarizer"
    ]
    steps = np.asarray(data.decisions["step"], dtype=int)
    recomputed = np.empty(len(steps))
    spectra = data.aligned_spectra  # what the scalarizer saw: zero-loss aligned when it was
    try:
        for i, step in enumerate(steps):
            current = name
            for at, new in changes:
                if at <= step:
                    current = new
            func = get_scalarizer(str(current))
            recomputed[i] = float(np.asarray(func(spectra[i], data.energy_axis)))
    except (ValueError, TypeError) as exc:
        report.notes.append(f"scalarizer {name!r} could not be rebuilt by name: {exc}")
        return
    scale = np.maximum(np.abs(data.values), 1e-12)
    report.value_error = float(np.max(np.abs(recomputed - data.values) / scale))


def _edge(data: RunData, make_agent: Callable, report: ForensicsReport) -> None:
    if data.survey_image is None:
        raise ValueError("the run has no survey image: nothing to rebuild the agent on")
    agent = make_agent(np.asarray(data.survey_image, dtype=np.float64))
    report.checks.append(_compare(0, "points", data.edge_points, agent.candidates))


def _logstar(data: RunData, make_agent: Callable, report: ForensicsReport) -> None:
    from agents.logstar.params import LoGParameters

    agent = make_agent(None)
    for record in data.logstar:
        index = int(record["image"])
        image = np.asarray(data.survey_images[index], dtype=np.float64)  # as the plan does
        ivs = [iv for iv in data.interventions if int(iv["step"]) == index]
        if not record.get("optimised"):
            params = (record.get("report") or {}).get("params")
            agent.params = LoGParameters(**params)
            agent.params_pixel_size_nm = data.pixel_size
        summary = agent.observe(
            image, pixel_size_nm=data.pixel_size, optimize=bool(record.get("optimised"))
        )
        if summary["optimised"]:
            front = [p for p in data.front if int(p.get("image", 0)) == index]
            names = [k for k in front[0] if k not in ("image", "point", "chosen", "parameters")]
            recorded = np.array([[p[n] for n in names] for p in front], dtype=float)
            replayed = np.array([[p.rewards[n] for n in names] for p in agent.front])
            same = recorded.shape == replayed.shape and np.allclose(recorded, replayed, rtol=1e-9)
            distance = float(np.max(np.abs(recorded - replayed))) if same else float("inf")
            report.checks.append(Check(index, "front", recorded, replayed, same, distance))
        for iv in ivs:
            if iv.get("phase") == "front":
                report.interventions += _apply(agent, iv)
        chosen = agent.choice.index if agent.choice is not None else -1
        report.checks.append(
            Check(index, "choice", record["chosen"], chosen, chosen == record["chosen"])
        )
        n = len(agent.atoms)
        report.checks.append(Check(index, "atoms", record["n_atoms"], n, n == record["n_atoms"]))


def _dcnn(data: RunData, make_agent: Callable, report: ForensicsReport) -> None:
    agent = make_agent(None)
    n_eels = int(data.plan_args.get("n_eels") or 0)
    atoms = data.atoms
    images = np.asarray(atoms.get("image", []), dtype=int)
    measured = np.asarray(data.positions, dtype=float)
    used = 0
    for record in data.dcnn:
        index = int(record["image"])
        agent.observe(np.asarray(data.survey_images[index], dtype=np.float64))
        keep = images == index
        recorded = np.column_stack([np.asarray(atoms["x"])[keep], np.asarray(atoms["y"])[keep]])
        report.checks.append(_compare(index, "atoms", recorded, agent.prediction.xy))
        if n_eels:
            suggestions = agent.suggest(n_eels)
            taken = measured[used : used + len(suggestions)]
            used += len(suggestions)
            report.checks.append(_compare(index, "suggestions", taken, suggestions))
            agent.ingest(taken, np.zeros(len(taken)))  # as the plan does


def forensics(run: Any, make_agent: Callable[[np.ndarray], Any] | None = None) -> ForensicsReport:
    """Re-run the run's agent on its recorded measurements and compare every decision.

    Args:
        run: a tiled run, its documents, or a :class:`~agents.runs.RunData`.
        make_agent: ``make_agent(survey_image) -> agent`` to use instead of the agent
            rebuilt from the run's records (e.g. a changed agent, to see what differs).

    Returns:
        The :class:`ForensicsReport` (``report.ok``, ``report.text()``).

    Raises:
        ValueError: a plan without an agent to rebuild, or a run without a survey image.

    Example:
        >>> report = forensics(catalog[-1])                       # doctest: +SKIP
        >>> report.ok, report.matches, len(report.checks)         # doctest: +SKIP
        (True, 12, 12)
    """
    from .corrections import drift_checks, zero_loss_checks

    data = as_run_data(run)
    if data.plan_name == "spectrum_image":  # no agent: only the zero-loss alignment to redo
        if not data.zero_loss:
            raise ValueError("a spectrum image without zero-loss alignment has no decisions")
        factory, description = None, {"class": "none (spectrum image)"}
    else:
        factory, description = agent_factory(data)
    if make_agent is not None:
        factory, description = make_agent, {"class": "given make_agent"}
    report = ForensicsReport(uid=data.uid, plan_name=data.plan_name, agent=description)
    _, device_note = replay_device(data)
    if device_note and make_agent is None:
        report.notes.append(device_note)
    if data.plan_name == "adaptive_eels":
        _adaptive(data, factory, report)
    elif data.plan_name in ("edge_eels", "drift_corrected_edge_eels"):
        _edge(data, factory, report)
    elif data.plan_name == "dcnn":
        _dcnn(data, factory, report)
    elif data.plan_name == "logstar":
        _logstar(data, factory, report)
    elif data.plan_name == "latent_eels":
        from .latent import latent_checks

        report.checks += latent_checks(data, factory)
    extras = [drift_checks] if data.plan_name == "drift_corrected_edge_eels" else []
    for extra in [*extras, zero_loss_checks]:
        checks, notes = extra(data)
        report.checks += checks
        report.notes += notes
    if data.exit_status not in (None, "success"):
        report.notes.append(f"the run ended with '{data.exit_status}': checked what it holds")
    return report
