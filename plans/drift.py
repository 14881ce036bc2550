"""Drift-corrected EELS: re-scan the field now and then, follow the specimen, keep the sites.

A point-by-point acquisition of tens of minutes lets the stage drift by many pixels; the
spectra said to be "at the interface" end up beside it. :func:`acquire_spectra_tracking_drift`
(a stub for any plan) takes the spectra in chunks; before each chunk it re-scans the field
(``drift_images``), registers the new image against the survey by phase correlation
(:class:`agents.drift.DriftTracker`), records the estimate (``drift``: displacement in px,
correlation peak, velocity), and moves every position of the chunk by the drift expected
when that spectrum is taken. :func:`drift_corrected_edge_eels` is the edge-guided workflow
(the points along the survey's edges) measured that way; every argument is JSON.

Records: ``survey``, ``edge_map`` and ``edge_points`` as in :func:`plans.edge_eels` (the
*intended* sites, on the survey); ``primary`` (the spectra, with the beam where it really
went); ``drift_images`` (each re-scan); ``drift`` (each estimate); ``decisions`` (intended
and corrected position of every spectrum).
"""

from typing import Any, Dict, Optional

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
from bluesky.protocols import Flyable, Readable
from bluesky.utils import MsgGenerator

from dm_bridge.types import SpectrumAcquisition
from ophyd_stem import Record, Table

from ._metadata import POSITION_DIMENSIONS, with_scan_field
from ._metadata import decision_record as make_decision_record
from ._queue import FLYER, READABLE, queue_parameters
from .stubs import (
    acquire_spectra_at_points,
    instrument_signal,
    read_survey_image,
    record,
    record_table,
    survey_signal,
)
from .zero_loss import ZeroLossStep

__all__ = ["acquire_spectra_tracking_drift", "drift_corrected_edge_eels"]


def acquire_spectra_tracking_drift(
    scan: Any,
    eels_points: Any,
    points: np.ndarray,
    tracker: Any,
    *,
    clock: float,
    signal: str = "HAADF",
    correct: bool = True,
    drift_record: Optional[Any] = None,
    decision_record: Optional[Any] = None,
    zero_loss: Optional[Any] = None,
) -> MsgGenerator[SpectrumAcquisition]:
    """Spectra at the survey sites ``points`` ``(N, 2)``, re-measuring the drift between chunks.

    Must run inside an open run. ``tracker`` is an :class:`agents.drift.DriftTracker` built
    on the survey image (its ``reference_time`` on the same clock); ``clock`` is the
    instrument time now, s, on that clock. Chunks hold ``tracker.chunk(seconds per spectrum)``
    positions; the first is one spectrum long, to learn how long a spectrum takes.

    ``correct=False`` measures and records the drift the same way but leaves the beam on the
    survey's positions: the uncorrected baseline. ``zero_loss``: a
    :class:`plans.zero_loss.ZeroLossStep` aligning each chunk's spectra.

    Each decision records ``planned_time``, the instrument time the correction was computed
    for, so forensics can re-derive every corrected position from the recorded re-scans.

    Returns:
        The spectra with the positions the beam was really sent to (corrected).
    """
    points = np.asarray(points, dtype=np.float64)
    drift_record = drift_record or Record(
        "drift", units={"dx": "px", "dy": "px", "time": "s"}, hints=["dx", "dy"]
    )
    decision_record = decision_record or make_decision_record()
    rows, cols = np.shape(tracker.reference)
    limit = np.array([cols - 1, rows - 1], dtype=np.float64)
    parts = []
    per_point = 0.0
    done = 0
    since_points, since_time = 0, 0.0
    while done < len(points):
        if done and tracker.due(since_points, since_time):
            started = clock
            yield from read_survey_image(scan, "drift_images")
            acquisition = scan.last_acquisition
            duration = float(acquisition.instrument_time)
            clock += duration
            # the image is an average over its frame: its time is the middle of the frame
            est = tracker.measure(survey_signal(scan, signal), started + duration / 2)
            yield from record(
                drift_record,
                "drift",
                time=est["time"],
                dx=est["dx"],
                dy=est["dy"],
                peak=est["peak"],
                used=est["used"],
                vx=est["vx"],
                vy=est["vy"],
                spectra_done=done,
            )
            since_points, since_time = 0, 0.0
        size = 1 if done == 0 else min(tracker.chunk(per_point), len(points) - done)
        chunk = points[done : done + size]
        # when each spectrum of the chunk will be taken (end of its exposure)
        times = clock + per_point * (np.arange(len(chunk)) + 1)
        corrected = tracker.correct(chunk, times) if correct else chunk
        # a site that drifted out of the field is measured at the field's edge, and flagged
        outside = np.any((corrected < 0) | (corrected > limit), axis=1)
        corrected = np.clip(corrected, 0.0, limit)
        got = yield from acquire_spectra_at_points(eels_points, corrected, zero_loss=zero_loss)
        spent = float(got.instrument_time)
        clock += spent
        per_point = spent / len(chunk)
        for (x0, y0), (x, y), out, when in zip(chunk, got.positions, outside, times):
            yield from record(
                decision_record,
                "decisions",
                step=done,
                x=float(x),
                y=float(y),
                planned_time=float(when),
                intended_x=float(x0),
                intended_y=float(y0),
                correction_x=float(x - x0),
                correction_y=float(y - y0),
                outside_field=bool(out),
            )
            done += 1
        since_points += len(chunk)
        since_time += spent
        parts.append(got)
        yield from bps.checkpoint()
    return SpectrumAcquisition(
        spectra=np.concatenate([p.spectra for p in parts]),
        energy_axis=parts[0].energy_axis,
        positions=np.concatenate([p.positions for p in parts]),
        instrument_time=float(sum(p.instrument_time for p in parts)),
    )


@queue_parameters(scan_engine=READABLE, eels_points=FLYER)
def drift_corrected_edge_eels(
    scan_engine: Readable,
    eels_points: Flyable,
    budget: int = 150,
    method: str = "canny",
    sigma: float = 1.5,
    spacing: float = 1.5,
    every_points: int = 20,
    every_seconds: float = 0.0,
    first_points: int = 3,
    correct: bool = True,
    normalisation: str = "cross",
    signal: Optional[str] = None,
    zero_loss: Optional[bool] = None,
    md: Optional[Dict[str, Any]] = None,
) -> MsgGenerator[str]:
    """Edge-guided EELS with drift correction: the edge sites of the survey, hit on time.

    Parameters
    ----------
    scan_engine, eels_points : the microscope's scan engine and multi-point EELS device
    budget, method, sigma, spacing : the edge agent's settings
        (:class:`agents.edges.EdgeAgent`: most points, ``"canny"`` or ``"gradient"``,
        smoothing in px, least spacing in px).
    every_points : int
        Re-scan the field after this many spectra (0: not by count).
    every_seconds : float
        Re-scan after this much instrument time, s (0: not by time).
    first_points : int
        At the start, re-scan after this many spectra until two drift estimates are in
        (nothing is corrected before the first; 0: by ``every_points``/``every_seconds``
        only): see :class:`agents.drift.DriftTracker`.
    correct : bool
        False measures the drift the same way but leaves the beam where the survey said
        (the uncorrected baseline, for comparison).
    normalisation : str
        ``"cross"`` (cross-correlation, robust on noisy images) or ``"phase"`` (phase
        correlation): see :func:`agents.drift.phase_correlation`.
    signal : str, optional
        The survey signal the edges are found in and the drift is measured on.
        Default (None): HAADF when the scan records it, else its first detector
        (``"survey"`` for a recording whose detector is not named).
    zero_loss : bool, optional
        Zero-loss alignment of the spectra (:mod:`plans.zero_loss`): None (default) on for
        low-loss spectra, True on, False off.
    """
    from agents.drift import DriftTracker
    from agents.edges import EdgeAgent

    if budget < 1:
        raise ValueError("budget must be >= 1")
    if every_points <= 0 and every_seconds <= 0:
        raise ValueError("give every_points or every_seconds (> 0): when to re-measure drift")
    signal = yield from instrument_signal(scan_engine, signal)
    plan_args = {
        "budget": budget,
        "method": method,
        "sigma": sigma,
        "spacing": spacing,
        "every_points": every_points,
        "every_seconds": every_seconds,
        "first_points": first_points,
        "correct": correct,
        "normalisation": normalisation,
        "signal": signal,
        "zero_loss": zero_loss,
    }
    aligner = ZeroLossStep(zero_loss)
    _md = {
        "plan_name": "drift_corrected_edge_eels",
        "plan_args": plan_args,
        "zero_loss": aligner.metadata(),
        "detectors": [scan_engine.name, eels_points.name],
        "num_points": budget,  # at most; the edge sites found, once known:
        "num_points_key": "edge-n_points",
        "hints": {"dimensions": POSITION_DIMENSIONS},
        **(md or {}),
    }
    edge_record = Record("edge")
    points_table = Table("edge_points", units={"x": "px", "y": "px"})

    @bpp.stage_decorator([scan_engine])
    @bpp.run_decorator(md=_md)
    def inner():
        yield from read_survey_image(scan_engine)
        image = survey_signal(scan_engine, signal)
        survey = scan_engine.last_acquisition
        agent = EdgeAgent(image, method=method, sigma=sigma, spacing=spacing, budget=budget)
        frame = float(survey.instrument_time)
        tracker = DriftTracker(
            image,
            reference_time=frame / 2,
            every_points=every_points,
            every_seconds=every_seconds,
            normalisation=normalisation,
            first_points=first_points,
        )
        points = np.asarray(agent.candidates, dtype=np.float64)
        yield from record(
            edge_record,
            "edge_map",
            edge_map=np.asarray(agent.edges, dtype=np.float32),
            n_points=len(points),
            fraction_of_pixels=len(points) / image.size,
            report={**agent.report(), "drift": tracker.config()},
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
        sites = np.array([[s["x"], s["y"]] for s in agent.suggest(len(points))])
        yield from acquire_spectra_tracking_drift(
            scan_engine,
            eels_points,
            sites,
            tracker,
            clock=frame,
            signal=signal,
            correct=correct,
            zero_loss=aligner,
        )

    return (yield from with_scan_field(inner(), scan_engine))
