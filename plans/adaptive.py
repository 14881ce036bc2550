"""Adaptive EELS: measure where an agent says, learn, repeat -- data and decisions in one run.

Two workflows from the first paper (``../shared/seeds/000_*.txt``, section V):

:func:`edge_eels`
    forward: the survey image's edges decide every point up front; the spectra at those
    points are measured in one go (137 of 16,384 pixels instead of the full grid).
:func:`adaptive_eels`
    inverse: an active-learning agent (Deep Kernel Learning, say) picks the next point from
    what it has measured so far, step by step.

Plans never import the ML stack. The agent is named (``agent="dkl"`` with ``agent_kwargs``,
built from the survey image through :mod:`agents.registry` when the run has it) or, in the
console, given as a factory that receives the survey image (``agent(image) -> agent``). The
spectrum-to-number function is named too (``scalarizer="band:20:30"``,
:mod:`agents.scalarizers`) or given as ``scalarizer(spectra, energy_axis) -> values``. Named,
every argument is JSON, so the plan can be queued to the queueserver.
"""

from typing import Any, Optional, Union

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.protocols import Flyable, Readable
from bluesky.utils import MsgGenerator

from ophyd_stem import Record, Table

from ._agents import (
    AgentFactory,
    Scalarizer,
    agent_from_survey,
    describe_request,
    image_agent,
    scalarizer_of,
)
from ._metadata import POSITION_DIMENSIONS, decision_record, with_scan_field
from ._queue import AGENT, CONTROL, FLYER, READABLE, SCALARIZER, queue_parameters
from .control import OperatorControl
from .operator import resolve_control
from .stubs import (
    acquire_spectra_at_points,
    instrument_signal,
    read_survey_image,
    record,
    record_table,
    survey_signal,
)
from .zero_loss import ZeroLossStep

__all__ = ["adaptive_eels", "edge_eels"]


def _survey(scan_engine: Any, signal: str) -> MsgGenerator[tuple[np.ndarray, float]]:
    yield from read_survey_image(scan_engine)
    image = survey_signal(scan_engine, signal)
    return image, scan_engine.last_acquisition.pixel_size


@queue_parameters(scan_engine=READABLE, eels_points=FLYER, agent=AGENT, scalarizer=SCALARIZER)
def edge_eels(
    scan_engine: Readable,
    eels_points: Flyable,
    agent: Union[str, AgentFactory] = "edge",
    *,
    agent_kwargs: Optional[dict[str, Any]] = None,
    scalarizer: Union[str, Scalarizer, None] = None,
    signal: Optional[str] = None,
    zero_loss: Optional[bool] = None,
    md: Optional[dict[str, Any]] = None,
) -> MsgGenerator[str]:
    """Edge-guided EELS: spectra only where the survey image shows an edge or interface.

    One run holds the survey image (``survey``), the edge map (``edge_map``), the chosen
    points in beam order (``edge_points``) and the spectra (``primary``); with a
    ``scalarizer`` each spectrum's value goes to ``decisions`` too.

    Parameters
    ----------
    scan_engine, eels_points : the microscope's scan engine and multi-point EELS device
    agent : str or callable
        A registered agent made from the survey image (default ``"edge"``, with
        ``agent_kwargs`` such as ``{"budget": 150}``), or ``agent(survey_image)`` returning an
        agent with ``edges`` (the edge map), ``candidates`` (``(N, 2)`` x, y in beam order) and
        ``suggest(n)``; e.g. ``lambda image: agents.edges.EdgeAgent(image, budget=150)``.
    agent_kwargs : dict, optional
        The named agent's settings.
    scalarizer : str or callable, optional
        A scalarizer spec (``"band:5:15"``) or ``scalarizer(spectra, energy_axis) -> values``,
        recorded per point.
    signal : str, optional
        The survey signal the edges are found in.
        Default (None): HAADF when the scan records it, else its first detector
        (``"survey"`` for a recording whose detector is not named).
    zero_loss : bool, optional
        Zero-loss alignment (:mod:`plans.zero_loss`): None (default) on for low-loss spectra,
        True on, False off. The scalarizer sees aligned spectra; ``primary`` keeps them as
        measured and ``zero_loss`` the shifts.
    """
    make_agent = image_agent(agent, agent_kwargs)
    scalarizer = scalarizer_of(scalarizer)
    aligner = ZeroLossStep(zero_loss)
    signal = yield from instrument_signal(scan_engine, signal)
    _md = {
        "plan_name": "edge_eels",
        "plan_args": {
            **describe_request(agent, agent_kwargs),
            "signal": signal,
            "scalarizer": getattr(scalarizer, "__name__", None),
            "zero_loss": zero_loss,
        },
        "zero_loss": aligner.metadata(),
        "detectors": [scan_engine.name, eels_points.name],
        "num_points_key": "edge-n_points",  # the edge sites found (progress: its total)
        "hints": {"dimensions": POSITION_DIMENSIONS},
        **(md or {}),
    }
    edge_record = Record("edge")
    points_table = Table("edge_points", units={"x": "px", "y": "px"})
    decisions = decision_record(scalarizer)

    @bpp.stage_decorator([scan_engine])
    @bpp.run_decorator(md=_md)
    def inner():
        image, _ = yield from _survey(scan_engine, signal)
        agent = agent_from_survey(make_agent, image, signal)
        points = np.asarray(agent.candidates, dtype=np.float64)
        yield from record(
            edge_record,
            "edge_map",
            edge_map=np.asarray(agent.edges, dtype=np.float32),
            n_points=len(points),
            fraction_of_pixels=len(points) / image.size,
            report=agent.report(),
        )
        if len(points) == 0:
            return
        yield from record_table(
            points_table,
            order=np.arange(len(points)),
            x=points[:, 0],
            y=points[:, 1],
            edge_strength=np.asarray(getattr(agent, "strength", np.zeros(len(points)))),
        )
        suggestions = agent.suggest(len(points))
        positions = np.array([[s["x"], s["y"]] for s in suggestions])
        acquisition = yield from acquire_spectra_at_points(
            eels_points, positions, zero_loss=aligner
        )
        if scalarizer is not None:
            values = np.asarray(scalarizer(acquisition.spectra, acquisition.energy_axis))
            agent.ingest(acquisition.positions, values)
            for i, (x, y) in enumerate(acquisition.positions):
                yield from record(
                    decisions, "decisions", step=i, x=float(x), y=float(y), value=float(values[i])
                )

    return (yield from with_scan_field(inner(), scan_engine))


@queue_parameters(
    scan_engine=READABLE,
    eels_points=FLYER,
    agent=AGENT,
    scalarizer=SCALARIZER,
    control=CONTROL,
)
def adaptive_eels(
    scan_engine: Readable,
    eels_points: Flyable,
    agent: Union[str, AgentFactory],
    scalarizer: Union[str, Scalarizer],
    *,
    agent_kwargs: Optional[dict[str, Any]] = None,
    steps: int = 30,
    batch: int = 1,
    maps_every: int = 5,
    control: Union[str, OperatorControl, None] = None,
    signal: Optional[str] = None,
    zero_loss: Optional[bool] = None,
    md: Optional[dict[str, Any]] = None,
) -> MsgGenerator[str]:
    """The inverse workflow: an agent chooses each next EELS position from what it learnt.

    Each step: the agent suggests ``batch`` positions; the spectra there go to ``primary``;
    the scalarizer turns each into a number the agent ingests; the step's decision (position,
    value, the agent's acquisition value, predicted mean and uncertainty there, its report,
    and ``survey_warning``: why the survey gives the agent nothing to learn from, e.g. a
    constant image, "" when it does) goes to ``decisions``; every ``maps_every`` steps the
    predicted mean, uncertainty and acquisition maps go to ``agent_maps``. Data and
    decisions both, so the run can be replayed and audited.

    Parameters
    ----------
    scan_engine, eels_points : the microscope's scan engine and multi-point EELS device
    agent : str or callable
        A registered agent made from the survey image, e.g. ``"dkl"`` (settings in
        ``agent_kwargs``), or ``agent(survey_image)`` returning an agent (``suggest``,
        ``ingest``, ``report``; ``predict_maps`` for the maps), e.g.
        ``lambda image: agents.DKLAgent(image)``.
    scalarizer : str or callable
        A spec such as ``"band:20:30"`` or ``scalarizer(spectra, energy_axis) -> values``
        (``agents.scalarizers``).
    agent_kwargs : dict, optional
        The named agent's settings, e.g. ``{"acquisition": "ucb", "beta": 9}``.
    steps : int
        Agent steps (each measures ``batch`` positions).
    batch : int
        Positions per step.
    maps_every : int
        Record the agent's maps every this many steps (0: never); also after the last step.
    control : plans.OperatorControl or "free" or "approve", optional
        The operator's hand on the loop (approve, veto, add points, change the acquisition
        function or the scalarizer; see :mod:`plans.control`); a mode name uses the
        session's shared control, which remote operators reach (:mod:`plans.operator`). Its
        plan stubs
        ``prepare(step, agent)`` and ``review(step, suggestions, agent)`` run before and after
        the agent suggests, and ``scalarize`` applies the scalarizer in force. None: the agent
        runs freely.
    signal : str, optional
        The survey signal the agent sees.
        Default (None): HAADF when the scan records it, else its first detector
        (``"survey"`` for a recording whose detector is not named).
    zero_loss : bool, optional
        Zero-loss alignment (:mod:`plans.zero_loss`): None (default) on for low-loss spectra,
        True on, False off. The scalarizer sees aligned spectra; ``primary`` keeps them as
        measured and ``zero_loss`` the shifts.
    """
    if steps < 1 or batch < 1:
        raise ValueError("steps and batch must be >= 1")
    make_agent = image_agent(agent, agent_kwargs)
    scalarizer = scalarizer_of(scalarizer)
    control = resolve_control(control)
    aligner = ZeroLossStep(zero_loss)
    signal = yield from instrument_signal(scan_engine, signal)
    _md = {
        "plan_name": "adaptive_eels",
        "plan_args": {
            **describe_request(agent, agent_kwargs),
            "steps": steps,
            "batch": batch,
            "maps_every": maps_every,
            "signal": signal,
            "scalarizer": getattr(scalarizer, "__name__", repr(scalarizer)),
            "control": None if control is None else control.mode,
            "zero_loss": zero_loss,
        },
        "zero_loss": aligner.metadata(),
        "detectors": [scan_engine.name, eels_points.name],
        "num_points": steps * batch,
        "hints": {"dimensions": POSITION_DIMENSIONS},
        **(md or {}),
    }
    decisions = decision_record(scalarizer)
    value_units = getattr(scalarizer, "units", None)
    maps = Record(
        "agent_maps",
        units={"acquisition": ""}
        if value_units is None
        else {"mean": value_units, "std": value_units, "acquisition": ""},
    )

    def record_maps(agent: Any, step: int):
        predict = getattr(agent, "predict_maps", None)
        if predict is None or len(getattr(agent, "values", ())) < 2:
            return
        m = predict()
        yield from record(maps, "agent_maps", step=step, **{k: np.asarray(v) for k, v in m.items()})

    @bpp.stage_decorator([scan_engine])
    @bpp.run_decorator(md=_md)
    def inner():
        image, _ = yield from _survey(scan_engine, signal)
        agent = agent_from_survey(make_agent, image, signal)
        yield from bps.checkpoint()
        for step in range(1, steps + 1):
            if control is not None:  # the operator's changes made while paused
                yield from control.prepare(step, agent)
            suggestions = agent.suggest(batch)
            if control is not None:
                suggestions = yield from control.review(step, suggestions, agent)
            if not suggestions:
                break
            positions = np.array([[s["x"], s["y"]] for s in suggestions], dtype=np.float64)
            acquisition = yield from acquire_spectra_at_points(
                eels_points, positions, zero_loss=aligner
            )
            if control is not None:  # the operator may have changed the scalarizer
                raw = control.scalarize(acquisition.spectra, acquisition.energy_axis, scalarizer)
            else:
                raw = scalarizer(acquisition.spectra, acquisition.energy_axis)
            values = np.atleast_1d(np.asarray(raw, dtype=np.float64))
            agent.ingest(acquisition.positions, values)
            report = agent.report()
            # what "auto" chose (agents.scalarizer_auto), where figures and replays find it
            chosen = getattr(scalarizer, "resolved", None)
            if chosen is not None:
                report = {**(report or {}), "scalarizer": chosen}
            # said beside the report, where a search or a summary sees it (DKL's word on a
            # featureless survey: its choices are then random, not learnt)
            survey_warning = str((report or {}).get("survey_warning") or "")
            for s, (x, y), value in zip(suggestions, acquisition.positions, values):
                yield from record(
                    decisions,
                    "decisions",
                    step=step,
                    x=float(x),
                    y=float(y),
                    value=float(value),
                    acquisition=float(s.get("acquisition", np.nan)),
                    predicted_mean=float(s.get("mean", np.nan)),
                    predicted_std=float(s.get("std", np.nan)),
                    source=str(s.get("source", "agent")),
                    survey_warning=survey_warning,
                    report=report,
                )
            if maps_every and (step % maps_every == 0 or step == steps):
                yield from record_maps(agent, step)
            yield from bps.checkpoint()

    return (yield from with_scan_field(inner(), scan_engine))
