"""Complete plans that open and close one run: the survey image and the exhaustive
spectrum image that adaptive workflows are measured against."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.utils import MsgGenerator

from .stubs import acquire_spectra_at_points, grid_positions, read_survey_image

__all__ = ["spectrum_image", "survey"]


def survey(scan: Any, num: int = 1, md: dict[str, Any] | None = None) -> MsgGenerator[str]:
    """Acquire ``num`` survey images (HAADF and any other selected signals).

    Parameters
    ----------
    scan : ophyd_stem.ScanEngine
        The scan engine; its current scan parameters are used and recorded.
    num : int
        Number of images (e.g. several to measure drift).
    md : dict, optional
        Metadata merged into the start document.
    """
    _md = {
        "plan_name": "survey",
        "plan_args": {"scan": repr(scan), "num": num},
        "detectors": [scan.name],
        "num_points": num,
        "num_intervals": max(num - 1, 0),
        "hints": {"dimensions": [(["time"], "primary")]},
        **(md or {}),
    }

    @bpp.stage_decorator([scan])
    @bpp.run_decorator(md=_md)
    def inner():
        for _ in range(num):
            yield from bps.trigger_and_read([scan])

    return (yield from inner())


def spectrum_image(
    scan: Any,
    eels_points: Any,
    rows: int,
    cols: int,
    region: Sequence[float] | None = None,
    batch: int = 256,
    md: dict[str, Any] | None = None,
) -> MsgGenerator[str]:
    """The exhaustive baseline: a survey image, then a spectrum at every grid position.

    The survey image goes to the ``survey`` stream; the ``rows x cols`` spectra (with their
    beam positions) to ``primary``, acquired a chunk of positions per bridge call.

    Parameters
    ----------
    scan : ophyd_stem.ScanEngine
    eels_points : ophyd_stem.EELSPoints
    rows, cols : int
        Grid shape.
    region : (x0, y0, x1, y1), optional
        First and last grid positions in scan-field pixels; default the whole field.
    batch : int
        Positions per checkpoint: after a pause or a bridge outage, only the batch in flight
        is measured again.
    md : dict, optional
    """
    _md = {
        "plan_name": "spectrum_image",
        "plan_args": {"rows": rows, "cols": cols, "region": list(region) if region else None},
        "detectors": [scan.name, eels_points.name],
        "num_points": rows * cols,
        "shape": [rows, cols],
        "extents": [[0, rows - 1], [0, cols - 1]],
        "hints": {"dimensions": [(["stem-beam-y"], "primary"), (["stem-beam-x"], "primary")]},
        **(md or {}),
    }

    @bpp.stage_decorator([scan])
    @bpp.run_decorator(md=_md)
    def inner():
        yield from read_survey_image(scan)
        width = yield from bps.rd(scan.width)
        height = yield from bps.rd(scan.height)
        points = grid_positions(rows, cols, int(width), int(height), region)
        yield from acquire_spectra_at_points(eels_points, points, batch=batch)

    return (yield from inner())
