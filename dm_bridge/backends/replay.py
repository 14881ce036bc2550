"""Replay backend: a recorded survey image and spectrum image, served as an instrument.

The scan field is the recording's survey grid (or, without a survey, the spectrum image's
grid, with an integrated-intensity survey synthesised from it). The beam position picks the
spectrum there: bilinear interpolation between the four neighbouring recorded spectra for
sub-pixel positions, through the two grids' calibrations when the spectrum image is sampled
differently from the survey. Scan and EELS parameters are fixed by the recording; setting
the recorded values is accepted, anything else is refused with ``Unsupported``.

Instrument time is what the real instrument would have taken: dwell time x pixels for an
image, exposure + readout per spectrum (the recording's exposure when it has one).

Example (from the repository root, with the shared data beside it):
    >>> from dm_bridge.backends.replay import ReplayBackend
    >>> replay = ReplayBackend("../shared/data/LSMO_STO_linescan.hspy")  # doctest: +SKIP
    >>> scan = replay.get_scan_parameters()  # doctest: +SKIP
    >>> scan["width"], scan["height"]  # doctest: +SKIP
    (10, 1)
    >>> replay.set_beam_position(3.5, 0)  # half-way between spectra 3 and 4  # doctest: +SKIP
    (3.5, 0.0)
    >>> replay.acquire_spectrum().spectra.shape  # doctest: +SKIP
    (512,)

Standard library and numpy; the file readers import rosettasciio or h5py lazily.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from ..errors import Unsupported
from .base import (
    Backend,
    EELSParameters,
    ImageAcquisition,
    Limits,
    ScanParameters,
    SpectrumAcquisition,
    energy_axis,
)
from .recording import GridAxis, PathLike, Recording, load_recording

__all__ = ["DEFAULT_READOUT_TIME", "ReplayBackend"]

#: seconds added to each spectrum's exposure: beam move, camera readout and transfer. From
#: the first paper's anchor, a 128 x 128 grid of 10 ms spectra in ~80 min: 0.293 s per
#: spectrum, less the exposure (the twin's timing model gives the same per position).
DEFAULT_READOUT_TIME = 80 * 60 / (128 * 128) - 0.01

#: positions this close to a recorded grid position (in spectrum-image pixels) are served
#: that spectrum exactly, so float round-off in the calibrations never blends in a neighbour
_SNAP = 1e-9

#: spectra interpolated per block (bounded memory, and abort is checked between blocks)
_BLOCK_VALUES = 2_000_000


class ReplayBackend(Backend):
    """Serve recorded data through the bridge as if it came from the microscope.

    Args:
        file: the recording (``.dm3``/``.dm4``, ``.hspy``, Velox ``.emd``, ``.npz``,
            ``.h5``, ``.npy``): a spectrum image, with or without survey images.
        survey: a separate survey-image file (its images replace any in ``file``).
        signal: detector name of the survey image (for files that do not say); with
            several images, serve only this one.
        spectrum: title of the spectrum image, when the file holds several.
        pixel_size, energy_offset, dispersion, exposure, dwell_time: calibrations in nm,
            eV, eV/channel, s and s that override (or supply) the file's.
        readout_time: seconds per spectrum on top of the exposure.
        timing: optional instrument-time model with ``image_time(scan)``,
            ``points_time(n, exposure)`` and ``spectrum_time(exposure)`` (the twin's
            ``TimingModel`` fits), so that a replay and a twin account time alike; default:
            dwell time x pixels per image, exposure + ``readout_time`` per spectrum.
        recording: an already loaded :class:`~dm_bridge.backends.recording.Recording`
            (instead of ``file``/``survey``).
        limits: base limits; they are widened to admit the recorded values.
        time_scale: see :class:`~dm_bridge.backends.base.Backend`.

    Raises:
        FileNotFoundError: a file does not exist.
        RecordingError: the recording cannot be read or makes no sense.
    """

    kind = "replay"

    def __init__(
        self,
        file: Optional[PathLike] = None,
        survey: Optional[PathLike] = None,
        *,
        signal: Optional[str] = None,
        spectrum: Optional[str] = None,
        pixel_size: Optional[float] = None,
        energy_offset: Optional[float] = None,
        dispersion: Optional[float] = None,
        exposure: Optional[float] = None,
        dwell_time: Optional[float] = None,
        readout_time: float = DEFAULT_READOUT_TIME,
        timing: Optional[Any] = None,
        recording: Optional[Recording] = None,
        limits: Optional[Limits] = None,
        time_scale: float = 0.0,
    ) -> None:
        super().__init__(limits=limits, time_scale=time_scale)
        if recording is not None and (file is not None or survey is not None):
            raise ValueError("give either files or a loaded recording, not both")
        if recording is None:
            recording = load_recording(
                file,
                survey,
                signal=signal,
                spectrum=spectrum,
                pixel_size=pixel_size,
                energy_offset=energy_offset,
                dispersion=dispersion,
                exposure=exposure,
                dwell_time=dwell_time,
            )
        if not (math.isfinite(readout_time) and readout_time >= 0):
            raise ValueError(f"readout_time must be >= 0 seconds, got {readout_time!r}")
        self.recording = recording
        self.readout_time = float(readout_time)
        self.timing = timing
        rec = recording
        self._scan = ScanParameters(
            width=rec.width,
            height=rec.height,
            dwell_time=rec.dwell_time if rec.dwell_time is not None else self._scan.dwell_time,
            rotation=0.0,
            field_of_view=rec.width * rec.survey_x.scale,
            signals=tuple(rec.survey),
        )
        if rec.spectra is not None:
            self._eels = EELSParameters(
                exposure=rec.exposure if rec.exposure is not None else self._eels.exposure,
                energy_offset=rec.energy_offset,
                dispersion=rec.dispersion,
                binning=1,
                channels=rec.channels,
            )
        self.limits = _limits_for(self.limits, self._scan, self._eels, rec)
        self._beam = ((rec.width - 1) / 2.0, (rec.height - 1) / 2.0)
        self._map_x = _position_map(rec.survey_x, rec.spectrum_x)
        self._map_y = _position_map(rec.survey_y, rec.spectrum_y)

    # ---------------------------------------------------------------- construction from the CLI

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        """``dm-bridge serve replay`` options: the files and calibration overrides."""
        super().add_arguments(parser)
        parser.add_argument(
            "--file",
            help="recording to replay: .dm3/.dm4, .hspy, .emd, .npz, .h5 or .npy "
            "(a spectrum image, with or without survey images)",
        )
        parser.add_argument("--survey", help="separate survey-image file")
        parser.add_argument("--signal", help="detector name of the survey image, e.g. HAADF")
        parser.add_argument("--spectrum", help="title of the spectrum image to serve")
        parser.add_argument("--pixel-size", type=float, help="survey pixel size in nm")
        parser.add_argument("--energy-offset", type=float, help="energy of channel 0, in eV")
        parser.add_argument("--dispersion", type=float, help="eV per channel")
        parser.add_argument("--exposure", type=float, help="seconds per spectrum")
        parser.add_argument("--dwell-time", type=float, help="seconds per survey pixel")
        parser.add_argument(
            "--readout-time",
            type=float,
            default=DEFAULT_READOUT_TIME,
            help="seconds of readout and beam move added to each spectrum's exposure",
        )

    @classmethod
    def options_from_arguments(cls, args: Any) -> Dict[str, Any]:
        """Constructor keywords from parsed ``dm-bridge serve replay`` options."""
        options = super().options_from_arguments(args)
        for name in (
            "file",
            "survey",
            "signal",
            "spectrum",
            "pixel_size",
            "energy_offset",
            "dispersion",
            "exposure",
            "dwell_time",
            "readout_time",
        ):
            options[name] = getattr(args, name)
        return options

    # ---------------------------------------------------------------- description

    def describe(self) -> Dict[str, Any]:
        rec = self.recording
        spectrometer = None
        if rec.spectra is not None:
            axis = rec.energy_axis
            spectrometer = {
                "name": rec.spectrometer,
                "channels": rec.channels,
                "energy_range_eV": [float(axis[0]), float(axis[-1])],
            }
        return {
            "name": "replay of " + ", ".join(Path(s).name for s in rec.sources)
            if rec.sources
            else "replay of an in-memory recording",
            "replay": True,
            "files": list(rec.sources),
            "microscope": rec.microscope,
            "high_tension_kv": rec.high_tension_kv,
            "detectors": list(rec.survey),
            "spectrometer": spectrometer,
            "probe": {},
            "recording": {
                "survey_shape": [rec.height, rec.width],
                "pixel_size_nm": rec.survey_x.scale if rec.survey_x.calibrated else None,
                "spectrum_image_shape": None if rec.spectra is None else list(rec.spectra.shape),
                "exposure_s": rec.exposure,
                "dwell_time_s": rec.dwell_time,
                "readout_time_s": self.readout_time,
                "notes": _jsonable(rec.notes),
            },
        }

    # ---------------------------------------------------------------- fixed parameters

    def validate_scan_parameters(self, changes: Mapping[str, Any]) -> ScanParameters:
        """As the base class, then refuse changes to what the recording fixes."""
        new = super().validate_scan_parameters(changes)
        fixed = ["width", "height", "field_of_view", "rotation"]
        if self.recording.dwell_time is not None:
            fixed.append("dwell_time")
        _refuse_changes("scan", changes, new, self._scan, fixed)
        return new

    def validate_eels_parameters(self, changes: Mapping[str, Any]) -> EELSParameters:
        """As the base class, then refuse changes to what the recording fixes."""
        if self.recording.spectra is None:
            raise Unsupported("this recording has no spectra; EELS parameters do not apply")
        new = super().validate_eels_parameters(changes)
        fixed = ["energy_offset", "dispersion", "binning", "channels"]
        if self.recording.exposure is not None:
            fixed.append("exposure")
        _refuse_changes("EELS", changes, new, self._eels, fixed)
        # Only what was asked changes: a binning of 1 must not reset the channel count.
        return replace(self._eels, **{k: getattr(new, k) for k in changes})

    # ---------------------------------------------------------------- acquisition

    def _do_acquire_image(self, scan: ScanParameters) -> ImageAcquisition:
        rec = self.recording
        if self.timing is not None:
            seconds = self.spend(self.timing.image_time(scan))
        else:
            seconds = self.spend(scan.width * scan.height * scan.dwell_time)
        images = {name: rec.survey[name].copy() for name in scan.signals}
        metadata: Dict[str, Any] = {"replay": list(rec.sources)}
        if "survey_synthesised" in rec.notes:
            metadata["survey_synthesised"] = rec.notes["survey_synthesised"]
        return ImageAcquisition(
            images=images,
            pixel_size=rec.survey_x.scale,
            origin=(rec.survey_x.centre(0), rec.survey_y.centre(0)),
            instrument_time=seconds,
            metadata=metadata,
        )

    def _do_acquire_spectrum(
        self, eels: EELSParameters, position: Tuple[float, float]
    ) -> SpectrumAcquisition:
        acq = self._acquire(eels, np.asarray([position], dtype=np.float64), single=True)
        acq.spectra = acq.spectra[0]
        return acq

    def _do_acquire_spectra_at_points(
        self, eels: EELSParameters, points: np.ndarray
    ) -> SpectrumAcquisition:
        return self._acquire(eels, points, single=False)

    def timing_overheads(self) -> Dict[str, float]:
        """Read-out per spectrum; with a timing model, its overheads."""
        t = self.timing
        if t is None:
            return {
                "image_overhead": 0.0,
                "line_overhead": 0.0,
                "spectrum_overhead": self.readout_time,
                "acquisition_overhead": 0.0,
                "time_scale": self.time_scale,
            }
        return {
            "image_overhead": t.frame_overhead,
            "line_overhead": t.line_flyback,
            "spectrum_overhead": t.beam_settle + t.readout,
            "acquisition_overhead": t.camera_activate + t.single_readout,
            "time_scale": self.time_scale,
        }

    def _instrument_time(self, n: int, exposure: float, single: bool) -> float:
        if self.timing is None:
            return n * (exposure + self.readout_time)
        if single:
            return float(self.timing.spectrum_time(exposure))
        return float(self.timing.points_time(n, exposure))

    def _acquire(
        self, eels: EELSParameters, points: np.ndarray, single: bool
    ) -> SpectrumAcquisition:
        self.spectra_at(np.zeros((0, 2)))  # refuses a survey-only recording before any time
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        # Spent block by block, so that an abort (or time_scale > 0) acts mid-acquisition.
        per_spectrum = self._instrument_time(len(points), eels.exposure, single) / len(points)
        block = max(1, _BLOCK_VALUES // max(1, self.recording.channels))
        out = np.empty((len(points), self.recording.channels), dtype=np.float32)
        outside = 0
        total = 0.0
        for start in range(0, len(points), block):
            self.check_abort()
            chunk = points[start : start + block]
            out[start : start + len(chunk)], n_out = self.spectra_at(chunk)
            outside += n_out
            total += self.spend(len(chunk) * per_spectrum)
        metadata: Dict[str, Any] = {"replay": list(self.recording.sources)}
        if outside:
            metadata["outside_recording"] = outside
        return SpectrumAcquisition(
            spectra=out,
            energy_axis=energy_axis(eels),
            instrument_time=total,
            metadata=metadata,
        )

    def spectra_at(self, points: Any) -> Tuple[np.ndarray, int]:
        """Interpolated recorded spectra at beam positions, without instrument time.

        Args:
            points: ``(N, 2)`` beam positions ``(x, y)`` in pixels of the scan field.

        Returns:
            ``(N, channels)`` float32 spectra, and how many points lay outside the area the
            spectrum image covers (those get the nearest edge spectrum).
        """
        rec = self.recording
        if rec.spectra is None:
            raise Unsupported(
                "this recording has no spectrum image (survey only): cannot acquire spectra"
            )
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        rows, cols = rec.spectra.shape[:2]
        r0, r1, wr, out_r = _neighbours(self._map_y, pts[:, 1], rows)
        c0, c1, wc, out_c = _neighbours(self._map_x, pts[:, 0], cols)
        s = rec.spectra
        # float64 weights: an exact grid hit (weights 1, 0, 0, 0) returns the recorded
        # float32 values bit for bit.
        spectra = (
            ((1 - wr) * (1 - wc))[:, None] * s[r0, c0]
            + ((1 - wr) * wc)[:, None] * s[r0, c1]
            + (wr * (1 - wc))[:, None] * s[r1, c0]
            + (wr * wc)[:, None] * s[r1, c1]
        )
        return spectra.astype(np.float32), int(np.count_nonzero(out_r | out_c))


# ------------------------------------------------------------------------------ helpers


def _position_map(survey: GridAxis, spectrum: Optional[GridAxis]) -> Tuple[float, float]:
    """``(a, b)`` with spectrum-image index = ``a * survey_pixel + b`` along one direction.

    Through the calibrations when both grids have one; otherwise the spectrum image is
    taken to span the survey's field.
    """
    if spectrum is None:
        return 1.0, 0.0
    if survey.calibrated and spectrum.calibrated:
        a = survey.scale / spectrum.scale
        b = (survey.offset + 0.5 * survey.scale - spectrum.offset) / spectrum.scale - 0.5
        return a, b
    a = spectrum.size / survey.size
    return a, 0.5 * a - 0.5


def _neighbours(
    mapping: Tuple[float, float], pixel: np.ndarray, n: int
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper neighbour indices, the upper one's weight, and the outside mask."""
    a, b = mapping
    f = a * pixel + b
    nearest = np.round(f)
    f = np.where(np.abs(f - nearest) < _SNAP, nearest, f)
    outside = (f < -0.5 - _SNAP) | (f > n - 0.5 + _SNAP)
    f = np.clip(f, 0.0, n - 1.0)
    lo = np.clip(np.floor(f).astype(np.intp), 0, max(n - 2, 0))
    hi = np.minimum(lo + 1, n - 1)
    weight = f - lo if n > 1 else np.zeros_like(f)
    return lo, hi, weight, outside


def _refuse_changes(
    what: str,
    changes: Mapping[str, Any],
    new: Any,
    current: Any,
    fixed: Any,
) -> None:
    for name in fixed:
        if name not in changes:
            continue
        asked, recorded = getattr(new, name), getattr(current, name)
        if not math.isclose(asked, recorded, rel_tol=1e-9, abs_tol=1e-12):
            raise Unsupported(
                f"{what} parameter {name} is fixed by the recording at {recorded:g}; "
                f"cannot set {asked:g} on a replay"
            )


def _widen(pair: Tuple[float, float], *values: Optional[float]) -> Tuple[float, float]:
    lo, hi = pair
    for v in values:
        if v is not None:
            lo, hi = min(lo, v), max(hi, v)
    return lo, hi


def _limits_for(base: Limits, scan: ScanParameters, eels: EELSParameters, rec: Recording) -> Limits:
    """The base limits, widened so that every recorded value is allowed."""
    lo, hi = _widen(base.image_size, scan.width, scan.height)
    changes: Dict[str, Any] = {
        "image_size": (int(lo), int(hi)),
        "field_of_view": _widen(base.field_of_view, scan.field_of_view),
        "dwell_time": _widen(base.dwell_time, scan.dwell_time),
        "signals": tuple(rec.survey),
    }
    if rec.spectra is not None:
        changes.update(
            energy_offset=_widen(base.energy_offset, eels.energy_offset),
            dispersion=_widen(base.dispersion, eels.dispersion),
            max_exposure=max(base.max_exposure, eels.exposure),
            min_exposure=min(base.min_exposure, eels.exposure),
            binnings=(1,),
            sensor_channels=eels.channels,
        )
    return replace(base, **changes)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
