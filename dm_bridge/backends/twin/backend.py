"""The digital twin behind the bridge: a simulated STEM-EELS instrument with ground truth.

:class:`TwinBackend` answers every bridge command as the DigitalMicrograph backend would,
forming HAADF images and EELS spectra from a sample model (:mod:`.samples`), taking the time
the real instrument would (:mod:`.timing`), and keeping the truth apart: it is reachable only
through :meth:`TwinBackend.get_truth` (the twin-only ``get_truth`` command) and the helper
methods below, never in acquisition results. Its command-line options
(``dm-bridge serve --backend twin``) are :mod:`.options`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ...errors import Aborted
from ..base import (
    Backend,
    EELSParameters,
    ImageAcquisition,
    Limits,
    ScanParameters,
    SpectrumAcquisition,
    energy_axis,
)
from .eels import SpectrumModel, add_noise, shift_channels
from .geometry import DriftModel, ScanFrame
from .imaging import NoiseModel, add_image_noise, noise_model_for_level
from .options import TwinOptions, sample_parameters_from_arguments
from .samples import Sample, make_sample
from .timing import TimingModel
from .truth import TargetBand, TruthFrame, build_truth

__all__ = ["TwinBackend", "sample_parameters_from_arguments"]

ELECTRON_CHARGE = 1.602176634e-19  # C
#: share of the electrons scattered into the HAADF annulus that the detector counts
#: (scintillator and photomultiplier); with it the default graphene image has the
#: contrast-to-noise of the real G-Si-2nm image
HAADF_EFFICIENCY = 0.3
_CHUNK = 1024  # spectra per vectorised step (bounds memory, lets abort in between)
#: images of at least this many pixels are simulated in a worker thread, so that an abort
#: is answered at once instead of after seconds of simulation
_ABORTABLE_PIXELS = 512 * 512


@dataclass
class _ImageRecord:
    """What truth needs to know about the last image."""

    frame: ScanFrame
    time: float
    electrons_per_unit: float  # expected electrons per pixel for a HAADF fraction of 1
    count: int


class TwinBackend(TwinOptions, Backend):
    """Digital twin of a STEM with HAADF detector and EELS spectrometer.

    Args:
        sample: ``"graphene"``, ``"srtio3"``, ``"nanowire"``, ``"nanoparticles"``, or a
            :class:`~.samples.Sample` instance.
        seed: one integer for everything random: the same seed gives the same sample and the
            same noise sequence; different seeds give different noise.
        sample_parameters: keyword arguments of the sample class (field size, rotation,
            defect densities, thickness, ...).
        limits, time_scale: see :class:`~dm_bridge.backends.base.Backend` (time_scale 0:
            instant, 1: real time).
        noise_level: HAADF image quality in [0, 1] (0 essentially noiseless, 0.9 very noisy);
            None uses the physical ``beam_current``. See :func:`.imaging.noise_model_for_level`.
        beam_current: probe current, pA (EELS counts, beam damage, and HAADF dose when
            ``noise_level`` is None).
        probe_fwhm: probe diameter (FWHM), nm.
        read_noise, scan_noise: override the HAADF read noise (electrons) and scan-line gain
            noise (relative) that ``noise_level`` implies.
        drift: let the specimen drift (``drift_velocity`` nm/s plus a random walk of
            ``drift_random_walk`` nm/√s) in instrument time.
        damage: let the beam knock atoms out (graphene).
        energy_drift: drift of the energy scale, eV per second of instrument time.
        energy_jitter: random energy shift of each spectrum, eV rms.
        zlp_fwhm: energy resolution, eV (None: the sample's default).
        eels_read_noise: Gaussian read noise per channel, counts.
        timing: the instrument's time model.
        target_band: ``(low, high)`` eV of the DKL target band in truth (``target_map``);
            None leaves the target map out of truth (faster truth for image-only work).

    Example:
        >>> twin = TwinBackend("graphene", seed=1, noise_level=0.2)
        >>> acq = twin.acquire_image()
        >>> acq.images["HAADF"].shape, round(acq.instrument_time, 2)
        ((256, 256), 2.22)
        >>> truth = twin.get_truth()
        >>> sorted(truth["label_names"])[:2]
        ['dopant', 'grain_boundary']
    """

    kind = "twin"

    def __init__(
        self,
        sample: Union[str, Sample] = "graphene",
        seed: int = 0,
        sample_parameters: Optional[Mapping[str, Any]] = None,
        limits: Optional[Limits] = None,
        time_scale: float = 0.0,
        noise_level: Optional[float] = None,
        beam_current: float = 50.0,
        probe_fwhm: float = 0.09,
        read_noise: Optional[float] = None,
        scan_noise: Optional[float] = None,
        drift: bool = False,
        drift_velocity: Tuple[float, float] = (0.02, 0.01),
        drift_random_walk: float = 0.005,
        damage: bool = False,
        energy_drift: float = 0.0,
        energy_jitter: float = 0.0,
        zlp_fwhm: Optional[float] = None,
        eels_read_noise: float = 0.0,
        timing: Optional[TimingModel] = None,
        target_band: Optional[Tuple[float, float]] = (20.0, 30.0),
    ) -> None:
        super().__init__(limits=limits, time_scale=time_scale)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        _positive("beam_current", beam_current, allow_zero=True)
        _positive("probe_fwhm", probe_fwhm)
        _positive("drift_random_walk", drift_random_walk, allow_zero=True)
        _positive("energy_jitter", energy_jitter, allow_zero=True)
        _positive("eels_read_noise", eels_read_noise, allow_zero=True)
        if target_band is not None and not (
            len(target_band) == 2 and target_band[0] < target_band[1]
        ):
            raise ValueError("target_band must be (low, high) eV with low < high, or None")
        streams = np.random.SeedSequence(int(seed)).spawn(6)
        rngs = [np.random.default_rng(s) for s in streams]
        if isinstance(sample, Sample):
            self.sample = sample
        else:
            self.sample = make_sample(str(sample), rngs[0], **dict(sample_parameters or {}))
        self.seed = int(seed)
        self.beam_current = float(beam_current)
        self.probe_sigma = float(probe_fwhm) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        self.timing = timing or TimingModel()
        self.target_band = (
            None if target_band is None else (float(target_band[0]), float(target_band[1]))
        )
        self.noise_level = noise_level
        self._image_rng, self._eels_rng, self._damage_rng, self._jitter_rng = rngs[1:5]
        self.drift = DriftModel(drift_velocity, drift_random_walk, rngs[5], enabled=drift)
        self.damage = bool(damage)
        self.energy_drift = float(energy_drift)
        self.energy_jitter = float(energy_jitter)
        self.eels_read_noise = float(eels_read_noise)
        zlp = self.sample.zlp_fwhm if zlp_fwhm is None else float(zlp_fwhm)
        self.model = SpectrumModel(self.sample.components, zlp_fwhm=zlp)

        scan = self.sample.default_scan
        self._scan = ScanParameters(
            width=scan["width"],
            height=scan["height"],
            dwell_time=scan["dwell_time"],
            field_of_view=scan["field_of_view"],
        )
        self._beam = ((self._scan.width - 1) / 2.0, (self._scan.height - 1) / 2.0)
        eels = self.sample.default_eels
        self._eels = EELSParameters(
            energy_offset=eels["energy_offset"],
            dispersion=eels["dispersion"],
            channels=min(eels["channels"], self.limits.sensor_channels),
        )
        ref = self._haadf_electrons(scan["dwell_time"]) * self.sample.reference_fraction(
            self.probe_sigma
        )
        noise = noise_model_for_level(noise_level, ref)
        self.noise = NoiseModel(
            dose_scale=noise.dose_scale,
            read_noise=noise.read_noise if read_noise is None else float(read_noise),
            line_gain=noise.line_gain if scan_noise is None else float(scan_noise),
            line_offset=noise.line_offset if scan_noise is None else 0.0,
        )
        self._last_image: Optional[_ImageRecord] = None
        self._pending_dose: Optional[Tuple[ScanFrame, float]] = None
        self._images = 0
        self._truth_cache: Optional[Tuple[Any, Dict[str, Any]]] = None
        self._abandoned: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ description

    def describe(self) -> Dict[str, Any]:
        return {
            "name": f"digital twin ({self.sample.name})",
            "high_tension_kv": self.sample.high_tension_kv,
            "detectors": list(self.limits.signals),
            "spectrometer": {
                "name": "twin spectrometer",
                "sensor_channels": self.limits.sensor_channels,
                "energy_resolution_eV": self.model.zlp_fwhm,
            },
            "probe": {
                "current_pA": self.beam_current,
                "convergence_mrad": 30.0,
                "fwhm_nm": self.probe_sigma * 2.0 * math.sqrt(2.0 * math.log(2.0)),
            },
            "sample": self.sample.name,
            "seed": self.seed,
            "timing": self.timing.to_dict(),
        }

    def capabilities(self) -> List[str]:
        return [*super().capabilities(), "get_truth"]

    def timing_overheads(self) -> Dict[str, float]:
        """The timing model's overheads (a single spectrum's set-up counted per command)."""
        t = self.timing
        return {
            "image_overhead": t.frame_overhead,
            "line_overhead": t.line_flyback,
            "spectrum_overhead": t.beam_settle + t.readout,
            "acquisition_overhead": t.camera_activate + t.single_readout,
            "time_scale": self.time_scale,
        }

    # ------------------------------------------------------------------ helpers

    def _electrons(self, seconds: float) -> float:
        """Electrons delivered by the probe in ``seconds``."""
        return self.beam_current * 1e-12 * seconds / ELECTRON_CHARGE

    def _haadf_electrons(self, dwell_time: float) -> float:
        """Electrons the HAADF detector counts per pixel for a scattered fraction of 1."""
        return self._electrons(dwell_time) * HAADF_EFFICIENCY

    def _frame(self, scan: ScanParameters, drift: Tuple[float, float] = (0.0, 0.0)) -> ScanFrame:
        return ScanFrame(scan.width, scan.height, scan.pixel_size, scan.rotation, (0.0, 0.0), drift)

    def _apply_pending_damage(self) -> None:
        """Knock-outs from the last scan take effect before the next acquisition, so that
        truth between acquisitions describes the sample as the last image saw it."""
        self._finish_abandoned()  # the sample must not change under an abandoned step
        if self._pending_dose is None:
            return
        frame, dose = self._pending_dose
        self._pending_dose = None
        self.sample.apply_dose(frame, dose, self._damage_rng)

    def _energy_shifts(self, times: np.ndarray) -> np.ndarray:
        shift = self.energy_drift * times
        if self.energy_jitter > 0:
            shift = shift + self.energy_jitter * self._jitter_rng.standard_normal(len(times))
        return shift

    # ------------------------------------------------------------------ images

    def _do_acquire_image(self, scan: ScanParameters) -> ImageAcquisition:
        self._apply_pending_damage()
        start = self.instrument_time_total
        frame = self._frame(scan, self.drift.offset(start))
        duration = self.spend(self.timing.image_time(scan))
        per_unit = (
            0.0 if self._blanked else self._haadf_electrons(scan.dwell_time) * self.noise.dose_scale
        )
        if scan.width * scan.height >= _ABORTABLE_PIXELS:
            fraction = self._abortable(lambda: self.sample.haadf(frame, self.probe_sigma))
        else:
            fraction = self.sample.haadf(frame, self.probe_sigma)
        images: Dict[str, np.ndarray] = {}
        for signal in scan.signals:
            images[signal] = add_image_noise(
                _detector_signal(signal, fraction, self.sample.reference_fraction(self.probe_sigma))
                * per_unit,
                self.noise,
                self._image_rng,
            )
        self._images += 1
        self._last_image = _ImageRecord(frame, start, per_unit, self._images)
        if self.damage and not self._blanked:
            dose = self._electrons(scan.dwell_time) / scan.pixel_size**2
            self._pending_dose = (frame, dose)
        dose_a2 = (
            0.0
            if self._blanked
            else self._electrons(scan.dwell_time) / (scan.pixel_size * 10.0) ** 2
        )
        return ImageAcquisition(
            images=images,
            pixel_size=scan.pixel_size,
            instrument_time=duration,
            metadata={
                "beam_current_pA": self.beam_current,
                "dose_e_per_A2": dose_a2,
                "detector": "HAADF 40-200 mrad",
            },
        )

    def _abortable(self, work: Any) -> Any:
        """Run a long simulation step in a worker thread and wait for it or for an abort.

        On abort the step is abandoned at once (:class:`Aborted`); it runs to its end in the
        background, and the next simulation step waits for it, as a real scan finishes its
        line. (Threads are fine here: the twin is numpy, not DigitalMicrograph.)
        """
        self._finish_abandoned()
        self.check_abort()
        done = threading.Event()
        box: Dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = work()
            except BaseException as exc:  # handed to the waiting thread
                box["error"] = exc
            finally:
                done.set()

        # Not a daemon: a process that ends during an abandoned step waits for it (a
        # daemon thread inside scipy at interpreter exit aborts the process).
        worker = threading.Thread(target=run, name="twin-simulation", daemon=False)
        worker.start()
        while not done.wait(0.02):
            if self._abort.is_set():
                self._abandoned = worker
                raise Aborted("acquisition aborted")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _finish_abandoned(self) -> None:
        worker, self._abandoned = self._abandoned, None
        if worker is not None:
            worker.join()

    # ------------------------------------------------------------------ spectra

    def _do_acquire_spectrum(
        self, eels: EELSParameters, position: Tuple[float, float]
    ) -> SpectrumAcquisition:
        self._apply_pending_damage()
        start = self.instrument_time_total
        duration = self.spend(self.timing.spectrum_time(eels.exposure))
        pts = np.asarray([position], dtype=np.float64)
        spectra, axis = self._spectra(eels, pts, np.array([start + duration]))
        return SpectrumAcquisition(spectra=spectra[0], energy_axis=axis, instrument_time=duration)

    def _do_acquire_spectra_at_points(
        self, eels: EELSParameters, points: np.ndarray
    ) -> SpectrumAcquisition:
        self._apply_pending_damage()
        per_point = self.timing.point_time(eels.exposure)
        total = self.spend(self.timing.camera_activate)
        start = self.instrument_time_total
        out = np.empty((len(points), eels.channels), dtype=np.float32)
        axis = energy_axis(eels)
        for i in range(0, len(points), _CHUNK):
            chunk = points[i : i + _CHUNK]
            total += self.spend(per_point * len(chunk))
            times = start + per_point * (i + 1 + np.arange(len(chunk)))
            out[i : i + len(chunk)], axis = self._spectra(eels, chunk, times)
        return SpectrumAcquisition(spectra=out, energy_axis=axis, instrument_time=total)

    def _do_set_beam_position(self, x: float, y: float) -> None:
        self.spend(self.timing.beam_settle)

    def _do_read_beam_position(self, assumed: Tuple[float, float]) -> Tuple[float, float]:
        self.spend(self.timing.beam_read)
        return assumed

    def _do_blank(self, blank: bool) -> None:
        """The twin's beam blanker: blanked, images and spectra record no electrons."""

    def _spectra(
        self, eels: EELSParameters, points: np.ndarray, times: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Noisy spectra (float32) at pixel positions taken at instrument ``times``."""
        expected, axis = self._expected_spectra(eels, points, self.drift.offsets(times))
        shifts = self._energy_shifts(times)
        if np.any(shifts != 0):
            expected = shift_channels(expected, shifts / eels.channel_width)
        return add_noise(expected, self._eels_rng, self.eels_read_noise), axis

    def _expected_spectra(
        self, eels: EELSParameters, points: np.ndarray, drift: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray]:
        frame = self._frame(self._scan)
        xs, ys = frame.to_sample(points[:, 0], points[:, 1], drift=drift)
        tau = self.sample.tau(xs, ys)
        electrons = 0.0 if self._blanked else self._electrons(eels.exposure)
        axis, expected = self.model.expected(
            tau, electrons, eels.energy_offset, eels.dispersion, eels.binning, eels.channels
        )
        return expected, axis

    # ------------------------------------------------------------------ truth

    def get_truth(self) -> Dict[str, Any]:
        """Ground truth of the last image's field (or the current field before any image).

        Returns a dict (numpy arrays for arrays, JSON-able otherwise):

        * ``sample``, ``seed``, ``parameters``: what was simulated;
        * ``frame``: width, height, pixel_size, rotation, ``centre_nm``, ``drift_nm``,
          ``time`` (instrument s) and ``from_image`` (False before the first image);
        * ``label_names`` and ``labels`` (height × width, uint8): regions per pixel;
        * ``thickness`` (nm) and ``clean_image`` (noise-free expected HAADF electrons);
        * ``atoms``: ``xy_nm``, ``xy_px`` (x = column, y = row in that image), ``z``,
          ``species`` (codes), ``species_names`` (None for the nanoscale samples);
        * ``target_band`` and ``target_map``: noise-free counts in the band per pixel with
          the current EELS settings (the DKL benchmark's true scalar);
        * ``knocked_out``: atoms removed by the beam so far; sample-specific extras.
        """
        self._finish_abandoned()
        key = (
            self._images,
            self._scan,
            self._eels,
            self.sample.knocked_out,
            self._blanked,
        )
        if self._truth_cache is None or self._truth_cache[0] != key:
            frame, time, per_unit, from_image = self.truth_frame()
            target = None
            if self.target_band is not None:
                electrons = self._electrons(self._eels.exposure)
                target = TargetBand(self.target_band, self._eels, self.model, electrons)
            truth = build_truth(
                self.sample,
                TruthFrame(frame, time, per_unit, from_image),
                self.probe_sigma,
                self.seed,
                self.noise_level,
                target,
            )
            self._truth_cache = (key, truth)
        return dict(self._truth_cache[1])

    @property
    def truth(self) -> Dict[str, Any]:
        """Same as :meth:`get_truth` (Python API)."""
        return self.get_truth()

    def truth_frame(self) -> Tuple[ScanFrame, float, float, bool]:
        """(frame, time, electrons per unit HAADF fraction, from_image) that truth describes."""
        if self._last_image is not None:
            rec = self._last_image
            return rec.frame, rec.time, rec.electrons_per_unit, True
        now = self.instrument_time_total
        frame = self._frame(self._scan, self.drift.peek(now))
        per_unit = self._haadf_electrons(self._scan.dwell_time) * self.noise.dose_scale
        return frame, now, per_unit, False

    def truth_spectra(
        self, points: Sequence[Sequence[float]], eels: Optional[EELSParameters] = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Noise-free spectra at ``(x, y)`` pixel positions of the current scan field.

        Uses the drift of the truth frame (the last image), no energy drift or jitter, and
        the current (or given) EELS settings. Returns ``(energy_axis, spectra (N, C))`` in
        expected counts.

        Example:
            >>> twin = TwinBackend("nanoparticles")
            >>> axis, s = twin.truth_spectra([[64, 64]])
            >>> s.shape
            (1, 2048)
        """
        pts = self.check_points(points)
        frame, _, _, _ = self.truth_frame()
        drift = np.repeat(np.asarray(frame.drift, dtype=np.float64)[None, :], len(pts), axis=0)
        expected, axis = self._expected_spectra(eels or self._eels, pts, drift)
        return axis, expected

    def truth_band_intensity(
        self, points: Sequence[Sequence[float]], band: Optional[Tuple[float, float]] = None
    ) -> np.ndarray:
        """Noise-free counts in ``band`` (eV; default ``target_band``) at pixel positions."""
        axis, spectra = self.truth_spectra(points)
        band = band or self.target_band
        if band is None:
            raise ValueError("give a band: this twin has no target_band")
        lo, hi = band
        return spectra[:, (axis >= lo) & (axis <= hi)].sum(axis=1)


def _detector_signal(signal: str, haadf: np.ndarray, reference: float) -> np.ndarray:
    """Fraction of electrons reaching each detector.

    HAADF is the sample's own model. BF and ABF are simple complements, not dynamical
    simulations: BF dims where HAADF brightens; ABF shows atoms as dips of the same width in
    which light atoms count relatively more (square root).
    """
    if signal == "HAADF":
        return haadf
    rel = np.clip(haadf / max(reference, 1e-30), 0.0, None)
    if signal == "BF":
        return 0.3 * np.clip(1.0 - 0.3 * rel, 0.05, None)
    return 0.1 * np.clip(1.0 - 0.3 * np.sqrt(rel), 0.05, None)


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
