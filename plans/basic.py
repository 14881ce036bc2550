"""Complete plans that open and close one run: the survey image and the exhaustive
spectrum image that adaptive workflows are measured against."""

from collections.abc import Sequence
from typing import Any, Optional

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky.protocols import Flyable, Readable
from bluesky.utils import MsgGenerator

from ._queue import FLYER, READABLE, queue_parameters
from .stubs import acquire_spectra_at_points, grid_positions, read_survey_image
from .zero_loss import ZeroLossStep

__all__ = ["spectrum_image", "survey"]


@queue_parameters(scan_engine=READABLE)
def survey(
    scan_engine: Readable, num: int = 1, md: Optional[dict[str, Any]] = None
) -> MsgGenerator[str]:
    """Acquire ``num`` survey images (HAADF and any other selected signals).

    Parameters
    ----------
    scan_engine : ophyd_stem.ScanEngine
        The scan engine; its current scan parameters are used and recorded.
    num : int
        Number of images (e.g. several to measure drift).
    md : dict, optional
        Metadata merged into the start document.
    """
    _md = {
        "plan_name": "survey",
        "plan_args": {"scan_engine": repr(scan_engine), "num": num},
        "detectors": [scan_engine.name],
        "num_points": num,
        "num_intervals": max(num - 1, 0),
        "hints": {"dimensions": [(["time"], "primary")]},
        **(md or {}),
    }

    @bpp.stage_decorator([scan_engine])
    @bpp.run_decorator(md=_md)
    def inner():
        for _ in range(num):
            yield from bps.trigger_and_read([scan_engine])

    return (yield from inner())


@queue_parameters(scan_engine=READABLE, eels_points=FLYER)
def spectrum_image(
    scan_engine: Readable,
    eels_points: Flyable,
    rows: int,
    cols: int,
    region: Optional[Sequence[float]] = None,
    batch: int = 256,
    zero_loss: Optional[bool] = None,
    md: Optional[dict[str, Any]] = None,
) -> MsgGenerator[str]:
    """The exhaustive baseline: a survey image, then a spectrum at every grid position.

    The survey image goes to the ``survey`` stream; the ``rows x cols`` spectra (with their
    beam positions) to ``primary``, acquired a chunk of positions per bridge call; with
    zero-loss alignment on, where each spectrum's zero-loss peak was and the shift that puts
    it at 0 eV go to ``zero_loss`` (:mod:`plans.zero_loss`).

    Parameters
    ----------
    scan_engine : ophyd_stem.ScanEngine
    eels_points : ophyd_stem.EELSPoints
    rows, cols : int
        Grid shape.
    region : (x0, y0, x1, y1), optional
        First and last grid positions in scan-field pixels; default the whole field.
    batch : int
        Positions per checkpoint: after a pause or a bridge outage, only the batch in flight
        is measured again.
    zero_loss : bool, optional
        Zero-loss alignment: None (default) on when the energy axis holds 0 eV (low-loss),
        off for core-loss; True on; False off.
    md : dict, optional
    """
    aligner = ZeroLossStep(zero_loss)

    @bpp.stage_decorator([scan_engine])
    def staged():
        width = yield from bps.rd(scan_engine.width)
        height = yield from bps.rd(scan_engine.height)
        points = grid_positions(rows, cols, int(width), int(height), region)
        (x0, y0), (x1, y1) = points[0].tolist(), points[-1].tolist()
        _md = {
            "plan_name": "spectrum_image",
            "plan_args": {
                "rows": rows,
                "cols": cols,
                "region": list(region) if region else None,
                "zero_loss": zero_loss,
            },
            "zero_loss": aligner.metadata(),
            "detectors": [scan_engine.name, eels_points.name],
            "num_points": rows * cols,
            # BestEffortCallback draws the intensity map (LiveGrid) over the scan field in px
            "shape": [rows, cols],
            "extents": [[y0, y1], [x0, x1]],
            "hints": {
                "dimensions": [(["stem-beam-y"], "primary"), (["stem-beam-x"], "primary")],
                "gridding": "rectilinear",
            },
            **(md or {}),
        }

        @bpp.run_decorator(md=_md)
        def inner():
            yield from read_survey_image(scan_engine)
            yield from acquire_spectra_at_points(
                eels_points, points, batch=batch, zero_loss=aligner
            )

        return (yield from inner())

    return (yield from staged())
