"""Plan stubs: pieces for ``yield from`` that never open or close a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bluesky.plan_stubs as bps
import numpy as np
from bluesky.utils import MsgGenerator

__all__ = [
    "acquire_spectra_at_points",
    "grid_positions",
    "read_survey_image",
    "record",
    "record_table",
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
    eels_points: Any, points: np.ndarray, stream_name: str = "primary"
) -> MsgGenerator[int]:
    """Acquire a spectrum at each ``(x, y)`` of ``points`` into ``stream_name``.

    Uses the microscope's multi-point EELS device (one bridge call per chunk of positions),
    one event per position. Must run inside an open run; may run several times in one run
    (the stream is described once). Returns the number of spectra.
    """
    points = np.asarray(points, dtype=np.float64)
    eels_points.stream = stream_name
    yield from bps.prepare(eels_points, points, wait=True)
    yield from bps.kickoff(eels_points, wait=True)
    status = yield from bps.complete(eels_points, wait=False)
    # Emit pages while the acquisition runs, so the catalog and live views keep up.
    while not status.done:
        yield from bps.collect(eels_points)
        yield from bps.sleep(0.5)
    yield from bps.wait_for([lambda: _status_coroutine(status)])
    yield from bps.collect(eels_points)
    return len(points)


async def _status_coroutine(status: Any) -> None:
    await status


def read_survey_image(scan: Any, stream_name: str = "survey") -> MsgGenerator[str]:
    """Trigger the scan engine once and read it into ``stream_name`` (one event)."""
    return (yield from bps.trigger_and_read([scan], name=stream_name))


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
