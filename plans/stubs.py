"""Plan stubs: pieces for ``yield from`` that never open or close a run."""

from collections.abc import Sequence
from typing import Any

import bluesky.plan_stubs as bps
import numpy as np
from bluesky.utils import MsgGenerator

from dm_bridge.types import SpectrumAcquisition

__all__ = [
    "acquire_spectra_at_points",
    "eels_at_suggestions",
    "grid_positions",
    "instrument_signal",
    "read_survey_image",
    "record",
    "record_table",
    "survey_signal",
]


def grid_positions(
    rows: int, cols: int, width: int, height: int, region: Sequence[float] | None = None
) -> np.ndarray:
    """``(rows*cols, 2)`` beam positions ``(x, y)`` of a raster, row by row.

    Args:
        rows, cols: grid shape.
        width, height: the scan field in pixels.
        region: ``(x0, y0, x1, y1)``, first and last grid positions; default the whole field.
    """
    if rows < 1 or cols < 1:
        raise ValueError("rows and cols must be >= 1")
    x0, y0, x1, y1 = region if region is not None else (0, 0, width - 1, height - 1)
    gx, gy = np.meshgrid(np.linspace(x0, x1, cols), np.linspace(y0, y1, rows))
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def acquire_spectra_at_points(
    eels_points: Any,
    points: np.ndarray,
    stream_name: str = "primary",
    batch: int = 256,
    zero_loss: Any = None,
) -> MsgGenerator[SpectrumAcquisition | None]:
    """Acquire a spectrum at each ``(x, y)`` of ``points`` into ``stream_name``.

    Uses the microscope's multi-point EELS device (one bridge call per chunk of positions),
    one event per position. The positions go in batches of ``batch``, each behind a
    checkpoint and collected when done: if the run is paused or suspended (the bridge stopped
    answering), only the batch in flight is measured again on resume, and no event is
    emitted twice. Must run inside an open run; may run several times in one run (the stream
    is described once).

    With ``zero_loss`` (a :class:`plans.zero_loss.ZeroLossStep`), each batch is aligned on its
    zero-loss peaks as it arrives and the alignment recorded (stream ``zero_loss``, in the
    same order as the spectra); the stream keeps the spectra as measured.

    Returns:
        All the spectra (zero-loss aligned when ``zero_loss`` is on), their positions and
        energy axis in one :class:`~dm_bridge.types.SpectrumAcquisition` (for the plan's
        agent), or None when ``points`` is empty.
    """
    points = np.asarray(points, dtype=np.float64)
    if batch < 1:
        raise ValueError("batch must be >= 1")
    eels_points.stream = stream_name
    parts = []
    for start in range(0, len(points), batch):
        yield from bps.checkpoint()
        yield from bps.prepare(eels_points, points[start : start + batch], wait=True)
        yield from bps.kickoff(eels_points, wait=True)
        yield from bps.complete(eels_points, wait=True)
        yield from bps.collect(eels_points)
        part = eels_points.last_acquisition
        if zero_loss is not None:
            part = yield from zero_loss.apply(part)
        parts.append(part)
    if not parts:
        return None
    return SpectrumAcquisition(
        spectra=np.concatenate([p.spectra for p in parts]),
        energy_axis=parts[0].energy_axis,
        positions=np.concatenate([p.positions for p in parts]),
        instrument_time=float(sum(p.instrument_time for p in parts)),
    )


def read_survey_image(scan_engine: Any, stream_name: str = "survey") -> MsgGenerator[str]:
    """Trigger the scan engine once and read it into ``stream_name`` (one event)."""
    return (yield from bps.trigger_and_read([scan_engine], name=stream_name))


def instrument_signal(scan_engine: Any, signal: str | None) -> MsgGenerator[str]:
    """``signal``, or where it is None the instrument's own: HAADF when its scan records
    HAADF, else its first detector (a recording whose detector is not named: ``"survey"``,
    whose contrast the agents then read from the image, not from a name it does not have)."""
    if signal is not None:
        return signal
    signals = list((yield from bps.rd(scan_engine.signals)) or [])
    return "HAADF" if "HAADF" in signals or not signals else str(signals[0])


def survey_signal(scan_engine: Any, signal: str) -> np.ndarray:
    """The last survey image's ``signal`` (HAADF, ABF...) as a float64 array.

    Raises:
        RuntimeError: no image was taken yet, or the scan did not record ``signal`` (the
            message names the signals it did record).
    """
    acquisition = scan_engine.last_acquisition
    if acquisition is None:
        raise RuntimeError("no survey image has been taken yet")
    if signal not in acquisition.images:
        recorded = ", ".join(sorted(acquisition.images)) or "none"
        raise RuntimeError(
            f"the survey image has no {signal!r} signal (it recorded: {recorded}); "
            "ask for one of those (signal=... in a plan, --signal on the command line)"
        )
    return np.asarray(acquisition.images[signal], dtype=np.float64)


def record(recorder: Any, stream: str, **values: Any) -> MsgGenerator[str]:
    """Record computed values (a decision, a map, a report) as one event of ``stream``.

    ``recorder`` is an :class:`ophyd_stem.Record`; dicts and mixed lists are stored as JSON.
    """
    recorder.load(**values)
    return (yield from bps.trigger_and_read([recorder], name=stream))


def record_table(table: Any, **columns: Any) -> MsgGenerator[None]:
    """Record rows (atoms, candidates, a Pareto front) as events of ``table.stream``.

    ``table`` is an :class:`ophyd_stem.Table`; columns are equal-length sequences.
    """
    table.load(**columns)
    yield from bps.collect(table)


def eels_at_suggestions(
    agent: Any,
    eels_points: Any,
    n: int,
    control: Any = None,
    step: int = 0,
    zero_loss: Any = None,
) -> MsgGenerator[SpectrumAcquisition | None]:
    """Spectra at the agent's next ``n`` suggestions (atoms of its target class, say), into
    ``primary``, after the operator's review when a ``control`` is given; with ``zero_loss``
    (a :class:`plans.zero_loss.ZeroLossStep`) aligned on their zero-loss peaks and the
    alignment recorded, as the adaptive plans do.

    The agent is told where it measured (``ingest`` with zeros: forward workflows rank by
    the image, not by the spectra), so it never suggests the same place twice. Returns the
    spectra, or None when there was nothing to measure.
    """
    suggestions = agent.suggest(n)
    if control is not None and suggestions:
        suggestions = yield from control.review(step, suggestions, agent)
    if not suggestions:
        return None
    positions = np.array([[s["x"], s["y"]] for s in suggestions], dtype=np.float64)
    acquisition = yield from acquire_spectra_at_points(eels_points, positions, zero_loss=zero_loss)
    agent.ingest(positions, np.zeros(len(positions)))
    return acquisition
