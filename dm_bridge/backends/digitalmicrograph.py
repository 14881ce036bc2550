"""The DigitalMicrograph backend: DigiScan survey images, beam placement and EELS spectra.

Runs inside Gatan DigitalMicrograph (GMS 3.4+ with Python), where ``import DigitalMicrograph``
works; the module itself imports anywhere (the DM module is imported when the backend is
created), so ``dm-bridge serve --backend dm --help`` lists its options on any machine.

Every DM call goes through :class:`~.dm_session.DMSession` (its docstring tables which DM
call does which job; calls are timed as instrument time and DM's failures become
:class:`~dm_bridge.errors.InstrumentError` with DM's message); every pixel <-> DigiScan
conversion goes through :class:`~.dm_calibration.DigiScanFrame`. This module is the backend
itself and its DigiScan side (survey images, beam placement); the spectrometer's commands (EELS
parameters, spectra) are the mixin :class:`~.dm_eels.DMSpectrometer`. Read-back: ``get_*``
report what DM's tags and calls say (the last survey's ``DigiScan:`` tags and calibration,
the last spectrum's tags, the live energy loss), not what was last set -- except for a
parameter set since the last acquisition, which DM can only confirm by acquiring.

Fidelity. Confirmed by public code that ran on microscopes: the ``DS_*`` acquisition calls,
``DS_GetBeamDSPosition``, ``DS_MoveBeamTo`` (the paper's server), ``GetActiveCamera`` /
``PrepareForAcquire`` / ``AcquireImage`` and processing level 3 = gain normalised (pylo),
``Py_Microscope().GetHighTension`` / ``HasBeamBlanker`` / ``SetBeamBlanked`` (pylo and DM
user scripts), ``GetDimensionCalibration``, ``GetPersistentTagGroup``, ``ExecuteScriptString``
raising ``RuntimeError`` (execdmscript), the EELS tag paths (a real GMS 3.x DM3 file).
From Gatan's DM-script reference only (not yet run here): ``DSSetScanControl``,
``DSStopAcquisition``, ``DSSetBeamDSPosition``, ``DSCalcDSCoordFromImage``,
``IFGetEnergyLoss(0)``'s argument, ``CameraGetActiveCameraID``, ``Camera.GetDefaultParameters``
(seen in one facility's code). ``docs/dm-install.md`` lists the commissioning checks.

References: Pratiush et al., "Implementing dynamic HPC supported workflows on STEM" (sec. IV)
and its public Pyro5 server; miile7/execdmscript and miile7/pylo (DM Python in practice);
D. R. G. Mitchell, "Faux DigiScan Library" (dmscripting.com); Gatan, "Python images and
NumPy arrays"; RosettaSciIO's DigitalMicrograph reader.

Standard library and numpy only, Python 3.8 syntax.
"""

from __future__ import annotations

import logging
import math
from dataclasses import fields, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import Aborted, BadRequest, InstrumentError, Unsupported
from .base import (
    Backend,
    EELSParameters,
    ImageAcquisition,
    Limits,
    ScanParameters,
    SpectrumAcquisition,
    energy_axis,
)
from .dm_calibration import (
    DIGISCAN,
    EELS_TAGS,
    DigiScanFrame,
    dimension_calibration,
    length_to_nm,
    read_tag,
)
from .dm_eels import DMSpectrometer
from .dm_options import DEFAULT_SIGNALS, DigitalMicrographOptions, check_signals
from .dm_session import PROCESSING, DMSession

__all__ = ["DEFAULT_SIGNALS", "DigitalMicrographBackend"]

log = logging.getLogger(__name__)


class DigitalMicrographBackend(DigitalMicrographOptions, DMSpectrometer, Backend):
    """The microscope itself, driven from inside DigitalMicrograph.

    Args:
        limits: instrument limits; ``signals`` comes from ``signals`` below and
            ``sensor_channels`` is the camera's width along the dispersion.
        time_scale: ignored (real hardware takes the time it takes); accepted so that the
            common ``dm-bridge serve`` options apply.
        signals: detector name -> DigiScan signal index (default :data:`DEFAULT_SIGNALS`).
        eels_rows: ``(top, bottom)`` camera rows summed into a spectrum; default: the
            camera's default read-out area.
        eels_vertical_binning: camera binning across the dispersion (rows are summed
            anyway; hardware binning reads out faster).
        eels_processing: ``"gain_normalized"`` (processed: dark and gain corrected),
            ``"dark_subtracted"`` or ``"unprocessed"``.
        camera_id: when given, the active camera in DM must have this ID.
        microscope_name: reported by ``hello``.
        show_images: show each survey image in DM, so the operator sees what the client sees.
        line_sync: synchronise DigiScan lines with the mains.
        dm: the ``DigitalMicrograph`` module (default: imported now; tests pass a fake).

    Example (in a DM Python script window)::

        from dm_bridge.backends.digitalmicrograph import DigitalMicrographBackend
        backend = DigitalMicrographBackend(signals={"HAADF": 0, "BF": 1})
        survey = backend.acquire_image()          # also calibrates beam placement
        backend.set_beam_position(100.5, 42.0)    # pixels of that survey
        spectrum = backend.acquire_spectrum()
    """

    kind = "dm"

    def __init__(
        self,
        limits: Optional[Limits] = None,
        time_scale: float = 0.0,
        signals: Optional[Mapping[str, int]] = None,
        eels_rows: Optional[Tuple[int, int]] = None,
        eels_vertical_binning: int = 1,
        eels_processing: str = "gain_normalized",
        camera_id: Optional[int] = None,
        microscope_name: Optional[str] = None,
        show_images: bool = False,
        line_sync: bool = False,
        dm: Any = None,
    ) -> None:
        self._signal_index = check_signals(DEFAULT_SIGNALS if signals is None else signals)
        limits = replace(limits or Limits(), signals=tuple(self._signal_index))
        super().__init__(limits=limits, time_scale=0.0)
        if self._scan.signals[0] not in self._signal_index:
            self._scan = replace(self._scan, signals=(limits.signals[0],))
        if eels_processing not in PROCESSING:
            raise ValueError(f"eels_processing must be one of {sorted(PROCESSING)}")
        if eels_rows is not None and not 0 <= int(eels_rows[0]) < int(eels_rows[1]):
            raise ValueError(f"eels_rows must be (top, bottom) with 0 <= top < bottom: {eels_rows}")
        if int(eels_vertical_binning) < 1:
            raise ValueError("eels_vertical_binning must be >= 1")
        self._eels_rows = None if eels_rows is None else (int(eels_rows[0]), int(eels_rows[1]))
        self._vbin = int(eels_vertical_binning)
        self._processing = eels_processing
        self._camera_id = camera_id
        self._microscope_name = microscope_name
        self._show_images = bool(show_images)
        self._line_sync = bool(line_sync)
        self.session = DMSession(dm, account=self._account)
        self._survey: Dict[str, Any] = {}  # signal -> Py_Image of the last survey
        self._frame: Optional[DigiScanFrame] = None
        self._frame_error = "no survey image yet: acquire_image first"
        self._last_spectrum: Any = None
        self._dirty_scan: set = set()  # set since the last survey: not yet in DM's tags
        self._dirty_eels: set = set()
        self._acquiring: Optional[str] = None
        self._energy_requested = False

    def _account(self, seconds: float) -> None:
        self.instrument_time_total += seconds

    # ---------------------------------------------------------------- description

    def describe(self) -> Dict[str, Any]:
        """Microscope, detectors and spectrometer as DM reports them; tags of the last
        acquisitions fill in what DM's live API does not expose."""
        try:  # hello must answer even if DM has since dropped the image
            tags = self._last_spectrum.GetTagGroup() if self._last_spectrum is not None else None
            survey_tags = self._survey_tags()
        except Exception:
            tags = survey_tags = None
        high_tension, source = None, None
        try:
            high_tension, source = self.session.high_tension_kv(), "Py_Microscope.GetHighTension"
        except Exception as exc:  # DM offline, or no microscope interface configured
            log.info("high tension not readable from the microscope: %s", exc)
            volts = read_tag(tags, EELS_TAGS["voltage_v"]) or read_tag(
                survey_tags, EELS_TAGS["voltage_v"]
            )
            if volts:
                high_tension, source = volts / 1000.0, "image tags"
        name = self._microscope_name or read_tag(tags, EELS_TAGS["microscope"], "string")
        return {
            "name": name or "DigitalMicrograph STEM",
            "high_tension_kv": high_tension,
            "high_tension_source": source,
            "detectors": list(self._signal_index),
            "digiscan_signals": dict(self._signal_index),
            "spectrometer": {
                "name": read_tag(tags, EELS_TAGS["spectrometer"], "string"),
                "camera": read_tag(tags, EELS_TAGS["camera"], "string"),
                "sensor_channels": self.limits.sensor_channels,
                "processing": self._processing,
                "read_rows": list(self._eels_rows) if self._eels_rows else None,
            },
            "probe": {
                "convergence_mrad": read_tag(tags, EELS_TAGS["convergence_mrad"]),
                "collection_mrad": read_tag(tags, EELS_TAGS["collection_mrad"]),
                "current_nA": read_tag(tags, EELS_TAGS["probe_current_na"]),
            },
            "dm_routes": self.session.routes(),
        }

    def live_status(self) -> Dict[str, Any]:
        state = super().live_status()
        state["acquiring"] = self._acquiring
        return state

    def status(self) -> Dict[str, Any]:
        state = super().status()
        state["acquiring"] = self._acquiring
        state["beam_placement"] = "ready" if self._frame_problem() is None else "needs survey"
        return state

    def abort(self) -> None:
        """Ask the running acquisition to stop: a DigiScan frame at the next poll (the
        script thread watching it sends ``DSStopAcquisition``), a camera exposure at its
        end, a multi-point acquisition before its next point. Thread-safe: it only raises a
        flag and never calls DigitalMicrograph, whose API belongs to the script thread."""
        super().abort()

    # ---------------------------------------------------------------- DigiScan

    def _do_set_scan_parameters(self, params: ScanParameters) -> None:
        old = self._scan
        if not math.isclose(params.field_of_view, old.field_of_view, rel_tol=1e-9):
            raise Unsupported(
                "on DigitalMicrograph the field of view follows the microscope's "
                f"magnification (now {old.field_of_view:g} nm): change the magnification on "
                "the microscope; the next acquire_image reads the new field of view back"
            )
        self._dirty_scan |= {
            f.name
            for f in fields(ScanParameters)
            if getattr(params, f.name) != getattr(old, f.name)
        }

    def _do_acquire_image(self, scan: ScanParameters) -> ImageAcquisition:
        with self.session.call("acquire a DigiScan image") as watch:
            self._acquiring = "digiscan"
            try:
                holders, stopped = self.session.acquire_digiscan(
                    scan.width,
                    scan.height,
                    scan.rotation,
                    scan.dwell_time,
                    self._line_sync,
                    {name: self._signal_index[name] for name in scan.signals},
                    self._show_images,
                    self._abort.is_set,
                )
            finally:
                self._acquiring = None
            if stopped:
                raise Aborted("acquisition aborted")  # an incomplete frame: never return it
            self.check_abort()
            # GetNumArray is a view on DM's memory: copy before DM reuses the image
            images = {n: np.array(h.GetNumArray(), dtype=np.float32) for n, h in holders.items()}
            first = holders[scan.signals[0]]
            origin_x, scale_x, unit_x = dimension_calibration(first, 0)
            origin_y, scale_y, unit_y = dimension_calibration(first, 1)
        for name, data in images.items():
            if data.shape != (scan.height, scan.width):
                raise InstrumentError(
                    f"DigiScan returned a {data.shape} image for {name}, "
                    f"expected {(scan.height, scan.width)}"
                )
        self._survey = holders
        self._dirty_scan.clear()
        try:
            self._frame = DigiScanFrame.from_tags(first.GetTagGroup(), scan.width, scan.height)
        except InstrumentError as exc:  # the image is fine; only beam placement must refuse
            self._frame, self._frame_error = None, str(exc)
            log.warning("%s", exc)
        self._scan = replace(scan, **self._scan_from_survey())
        metadata: Dict[str, Any] = {
            "dm_image_ids": {n: int(h.GetID()) for n, h in holders.items()},
            "pixel_size_y_nm": abs(length_to_nm(scale_y, unit_y)),
            "digiscan": self._frame.as_dict() if self._frame else None,
        }
        if self._frame is None:
            metadata["digiscan_error"] = self._frame_error
        return ImageAcquisition(
            images=images,
            pixel_size=abs(length_to_nm(scale_x, unit_x)),
            origin=(
                0.0 - length_to_nm(origin_x * scale_x, unit_x),
                0.0 - length_to_nm(origin_y * scale_y, unit_y),
            ),
            units="nm",
            instrument_time=watch.seconds,
            metadata=metadata,
        )

    def _survey_tags(self) -> Any:
        return next(iter(self._survey.values())).GetTagGroup() if self._survey else None

    def _scan_from_survey(self) -> Dict[str, Any]:
        """Scan parameters as the last survey image's shape, calibration and tags state them."""
        first = next(iter(self._survey.values()))
        tags = first.GetTagGroup()
        height, width = np.shape(first.GetNumArray())
        _, scale, unit = dimension_calibration(first, 0)
        found: Dict[str, Any] = {
            "width": int(width),
            "height": int(height),
            "field_of_view": abs(length_to_nm(scale, unit)) * int(width),
            "signals": tuple(self._survey),
        }
        dwell_us = read_tag(tags, DIGISCAN["sample_time_us"])
        if dwell_us is not None:
            found["dwell_time"] = dwell_us * 1e-6
        rotation = read_tag(tags, DIGISCAN["rotation"])
        if rotation is not None:
            found["rotation"] = rotation
        return found

    def _do_read_scan_parameters(self, assumed: ScanParameters) -> ScanParameters:
        if not self._survey:
            return assumed
        with self.session.call("read the survey image's tags"):
            found = self._scan_from_survey()
        return replace(assumed, **{k: v for k, v in found.items() if k not in self._dirty_scan})

    # ---------------------------------------------------------------- beam

    def _frame_problem(self) -> Optional[str]:
        if self._frame is None:
            return self._frame_error
        stale = self._dirty_scan & {"width", "height", "rotation"}
        if stale:
            return (
                f"the scan field changed ({', '.join(sorted(stale))}) since the last survey "
                "image; acquire_image again before placing the beam"
            )
        return None

    def _current_frame(self) -> DigiScanFrame:
        """The DigiScan frame of the current scan field -- the only way to a DS position."""
        problem = self._frame_problem()
        if problem is not None or self._frame is None:
            raise BadRequest(f"cannot place the beam: {problem}")
        return self._frame

    def _move_beam(self, x: float, y: float) -> float:
        ds_x, ds_y = self._current_frame().to_digiscan(x, y)
        with self.session.call("move the beam") as watch:
            self.session.move_beam(ds_x, ds_y)
        return watch.seconds

    def _do_set_beam_position(self, x: float, y: float) -> None:
        self._move_beam(x, y)

    def _do_read_beam_position(self, assumed: Tuple[float, float]) -> Tuple[float, float]:
        frame = self._current_frame()
        with self.session.call("read the beam position"):
            ds_x, ds_y = self.session.beam_position()
        x, y = frame.to_pixels(ds_x, ds_y)
        return float(x), float(y)

    def _do_blank(self, blank: bool) -> None:
        with self.session.call("blank the beam" if blank else "unblank the beam"):
            self.session.set_beam_blanked(blank)

    def check_digiscan_frame(
        self, points: Optional[Sequence[Tuple[float, float]]] = None
    ) -> List[Dict[str, Any]]:
        """Commissioning: compare our pixel -> DigiScan conversion with DM's own.

        Runs DM-script ``DSCalcDSCoordFromImage`` on the last survey image for each point
        (default: the four corner pixels and the centre) and returns, per point, both
        answers and their difference in DigiScan units. A half-pixel offset means DM counts
        pixels from their corner; anything else means the tags were misread -- see
        docs/dm-install.md. Not a wire command: run it from a DM script.
        """
        frame = self._current_frame()
        image_id = int(next(iter(self._survey.values())).GetID())
        if points is None:
            w, h = frame.width - 1.0, frame.height - 1.0
            points = [(0.0, 0.0), (w, 0.0), (0.0, h), (w, h), (w / 2, h / 2)]
        report = []
        for x, y in points:
            ours = frame.to_digiscan(x, y)
            with self.session.call("convert a pixel with DSCalcDSCoordFromImage"):
                theirs = self.session.digiscan_position_of_pixel(image_id, x, y)
            report.append(
                {
                    "pixel": (float(x), float(y)),
                    "ours": (float(ours[0]), float(ours[1])),
                    "dm": theirs,
                    "difference": (theirs[0] - ours[0], theirs[1] - ours[1]),
                }
            )
        return report

    # ---------------------------------------------------------------- spectra at points
    # (the beam's and the spectrometer's (:class:`~.dm_eels.DMSpectrometer`) jobs together)

    def _do_acquire_spectra_at_points(
        self, eels: EELSParameters, points: np.ndarray
    ) -> SpectrumAcquisition:
        self._current_frame()  # refuse before the beam moves at all
        spectra = np.empty((len(points), eels.channels), dtype=np.float32)
        total, axis, metadata = 0.0, energy_axis(eels), {}
        for i, (x, y) in enumerate(points):
            self.check_abort()
            total += self._move_beam(float(x), float(y))
            self._beam = (float(x), float(y))
            one = self._do_acquire_spectrum(eels, self._beam)
            spectra[i] = one.spectra
            total += one.instrument_time
            axis, metadata = one.energy_axis, one.metadata
        return SpectrumAcquisition(
            spectra=spectra, energy_axis=axis, instrument_time=total, metadata=metadata
        )

    def close(self) -> None:
        """Hand DigiScan's dialog back to the operator and drop our references into DM."""
        self.session.forget()
        self._survey, self._last_spectrum = {}, None
