"""Forensics: re-run a run's agent offline and check it makes the same decisions.

A run holds what was measured, in order, and what the agent decided at each step (its
suggestions, the operator's interventions). :func:`forensics` rebuilds the agent from the
run (same survey image, same seed and settings, the scalarizer from ``plan_args`` and the
interventions), feeds it the recorded measurements in the recorded order, asks it for its
report and its maps where the plan did (asking can make an agent fit, which moves its next
decisions on), re-applies every intervention where it happened, and compares each suggestion
it makes now with the one recorded. A mismatch means the agent (its code, its settings, the
libraries under it) no longer behaves as it did during the experiment.

Workflows: ``adaptive_eels`` (DKL and any agent given by ``make_agent``), ``edge_eels``
(the edge agent's points), ``logstar`` (the Pareto front, the choice, the atoms; and
whether it took the columns dark, where it did: an ABF survey), ``dcnn`` (likewise),
``drift_corrected_edge_eels`` (the edge points, every drift estimate re-registered from the
recorded re-scans, every beam position re-derived) and, in any run that aligned its spectra
on the zero-loss peak (``spectrum_image`` included), the peaks located again
(:mod:`.corrections`).

The agent is rebuilt on the kind of device its report says it computed on (runs from before
devices were recorded ran on the CPU): a run decided on a GPU replays on a GPU when this
machine has one, else on the CPU with a note that decisions may then differ by the GPU's
rounding.

This module replays; the agent is rebuilt in :mod:`.rebuild`, the comparisons and the report
are :mod:`.checks`.

Example:
    >>> report = forensics(catalog["3f2a9c"])                     # doctest: +SKIP
    >>> print(report.text())                                      # doctest: +SKIP
    forensics of 3f2a9c01 (adaptive_eels, agent dkl): 30 of 30 suggestions match
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from agents.runs import RunData

from .checks import Check, ForensicsReport, _compare
from .rebuild import (
    after_step,
    agent_factory,
    as_run_data,
    map_steps,
    replay_device,
    survey_detector,
)

__all__ = [
    "Check",
    "ForensicsReport",
    "agent_factory",
    "as_run_data",
    "forensics",
    "replay_device",
]


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
    mapped = map_steps(data)
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
            after_step(agent, step, mapped)
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
            image,
            pixel_size_nm=data.pixel_size,
            optimize=bool(record.get("optimised")),
            **survey_detector(agent, data),
        )
        report.checks += _contrast_check(index, record, agent)
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


def _contrast_check(index: int, record: dict[str, Any], agent: Any) -> list[Check]:
    """The atom finder's bright/dark decision against the run's, where it mattered: dark
    columns recorded or replayed (a bright one agreeing adds nothing to the atoms' check)."""
    recorded = ((record.get("report") or {}).get("contrast") or {}).get("contrast")
    decision = getattr(agent, "contrast_decision", None)
    replayed = decision.contrast if decision is not None else None
    if recorded is None or (recorded == "bright" and replayed in ("bright", None)):
        return []
    return [Check(index, "contrast", recorded, replayed, recorded == replayed)]


def _dcnn(data: RunData, make_agent: Callable, report: ForensicsReport) -> None:
    agent = make_agent(None)
    n_eels = int(data.plan_args.get("n_eels") or 0)
    atoms = data.atoms
    images = np.asarray(atoms.get("image", []), dtype=int)
    measured = np.asarray(data.positions, dtype=float)
    used = 0
    for record in data.dcnn:
        index = int(record["image"])
        image = np.asarray(data.survey_images[index], dtype=np.float64)
        agent.observe(image, **survey_detector(agent, data))
        report.checks += _contrast_check(index, record, agent)
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
