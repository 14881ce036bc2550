"""Specimen drift during acquisition: measure it from images, keep the beam on its sites.

The first seed paper: "Adding drift correction while acquisition can be easily incorporated
using correlation maps of subsequent acquisitions". A long point-by-point EELS acquisition
(tens of minutes) lets the stage drift by many pixels, so the spectrum said to be "at the
interface" is taken beside it. :class:`DriftTracker` keeps the first survey image as its
reference; each later image of the same field (a quick re-scan every ``every_points``
spectra or ``every_seconds`` of instrument time) is registered against it by **phase
correlation** (the normalised cross-power spectrum, its peak refined to a fraction of a
pixel by an upsampled DFT around it), which gives how far the features have moved. A line
through the recent measurements gives the drift velocity, so positions are corrected for
the drift expected at the moment each spectrum is taken, not only at the last re-scan.

Conventions: displacements are those of the *features* in the image, in pixels, ``x`` =
column, ``y`` = row; a site seen at ``p`` in the reference is found at ``p + displacement``
later. Times are instrument seconds (the plan's clock), any origin.

Example:
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> from agents.drift import DriftTracker
    >>> survey = ndimage.gaussian_filter(np.random.default_rng(0).random((64, 64)), 2)
    >>> later = np.roll(survey, (1, 2), axis=(0, 1))    # features 2 px right, 1 px down
    >>> tracker = DriftTracker(survey, every_points=20)
    >>> m = tracker.measure(later, time=100.0)           # 100 s after the reference
    >>> m["dx"], m["dy"]                                 # px, to the upsampled DFT's step
    (1.95, 0.95)
    >>> tracker.correct([[40.0, 12.0]], times=[150.0])   # where that site is at 150 s
    array([[42.925, 13.425]])
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .base import as_positions
from .images import survey_image_array, without_hot_pixels

log = logging.getLogger(__name__)

__all__ = ["NORMALISATIONS", "DriftTracker", "phase_correlation"]


#: how the cross-power spectrum is weighted: "phase" divides by its magnitude (classic phase
#: correlation: all frequencies alike); "cross" keeps it (plain cross-correlation). On noisy
#: HAADF images of the twin's nanowire, "phase" gave 3.4 px mean error and "cross" 0.1 px:
#: whitening lifts the noise-only high frequencies to the weight of the structure.
NORMALISATIONS = ("cross", "phase")


def _window(shape: tuple[int, int]) -> np.ndarray:
    """A Tukey window (flat middle, 15 % cosine taper each side): keeps the image borders,
    which wrap around in the FFT, out of the peak. A Hann window tapers so much of the field
    away that errors tripled on the twin's nanowire."""
    from scipy.signal.windows import tukey

    return np.outer(tukey(shape[0], 0.3), tukey(shape[1], 0.3))


def phase_correlation(
    reference: Any,
    image: Any,
    upsample: int = 20,
    window: bool = True,
    normalisation: str = "cross",
) -> Dict[str, float]:
    """How far the features of ``image`` have moved relative to ``reference``, sub-pixel.

    Args:
        reference, image: 2-D images of the same field and shape.
        upsample: the peak is refined to ``1 / upsample`` px (matrix-multiply DFT around it).
        window: apply a Tukey window first (recommended: the field's borders do not wrap).
        normalisation: ``"cross"`` (default, robust to noise) or ``"phase"`` (whitened).

    Returns:
        ``{"dx", "dy"}`` in px (features at ``p`` in the reference are at ``p + (dx, dy)``
        in ``image``) and ``"peak"``, the height of the normalised correlation peak (near 1
        for a clean shift, near 0 when nothing matches: a changed field, or noise only).

    A few undefined pixels (NaN or infinite: a dead-pixel mask, an aligned frame's empty
    border) are filled from their neighbours first (:func:`agents.images.survey_image_array`):
    the FFT would spread one of them over the whole correlation; isolated extreme pixels
    (hot pixels, spikes) are replaced by their neighbourhood's median
    (:func:`agents.images.without_hot_pixels`).

    Raises:
        ValueError: images of different shapes, not 2-D, constant, or largely undefined.
    """
    from skimage.registration import phase_cross_correlation

    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
    ref = survey_image_array(reference, what="reference image")
    img = survey_image_array(image, what="drift image")
    # hot pixels stay where the camera has them while the specimen drifts: with 0.3 % of
    # them in both frames the correlation read no drift at all (and trusted it)
    ref, _ = without_hot_pixels(ref)
    img, _ = without_hot_pixels(img)
    if ref.shape != img.shape:
        raise ValueError(f"need two 2-D images of one shape, got {ref.shape} and {img.shape}")
    if np.ptp(ref) == 0 or np.ptp(img) == 0:
        raise ValueError("a constant image has no features to correlate")
    ref = ref - ref.mean()
    img = img - img.mean()
    if window:
        w = _window(ref.shape)
        ref, img = ref * w, img * w
    shift, _, _ = phase_cross_correlation(
        ref,
        img,
        upsample_factor=int(upsample),
        normalization="phase" if normalisation == "phase" else None,
    )
    # the peak height: how much of the cross-power spectrum agrees on one shift
    f = np.fft.fft2(ref) * np.conj(np.fft.fft2(img))
    f /= np.maximum(np.abs(f), 1e-12)
    peak = float(np.abs(np.fft.ifft2(f)).max())
    # skimage gives the shift that registers ``image`` onto ``reference``: the opposite of
    # the features' displacement
    return {"dx": float(-shift[1]), "dy": float(-shift[0]), "peak": peak}


def _constant(image: Any) -> Optional[str]:
    """Why a drift frame has nothing to correlate (None when it has)."""
    values = np.asarray(image)
    if values.size and np.issubdtype(values.dtype, np.number):
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        if finite.size and not np.ptp(finite) > 0:
            return f"the drift image is constant ({float(finite.flat[0]):g} everywhere)"
    return None


class DriftTracker:
    """Drift of the features since a reference image, and the beam positions that follow it.

    Args:
        reference_image: the survey image the sites were chosen on.
        reference_time: instrument time of the reference, s (mid-frame).
        every_points: re-measure after this many spectra (0: not by count).
        every_seconds: re-measure after this much instrument time, s (0: not by time).
        upsample: sub-pixel refinement of the correlation peak (1 / upsample px).
        velocity_window: how many of the latest measurements the velocity is fitted over.
        normalisation: ``"cross"`` or ``"phase"`` (see :func:`phase_correlation`).
        min_peak: a correlation peak lower than this is not trusted (the estimate is
            recorded but the correction keeps the previous one): a field that changed under
            the beam must not throw the beam off.
        first_points: at the start, re-measure after this many spectra (or sooner by
            ``every_points``/``every_seconds``) until two measurements besides the reference
            are in: before the first nothing is corrected (no drift is known yet), and a
            velocity from one short stretch is too noisy to extrapolate over a whole chunk
            (0: by ``every_points`` and ``every_seconds`` only). On the twin's 30-minute
            benchmark without it, every spectrum more than 0.5 px off its site was one of
            the first 11 (up to 1.4 px); with it, one of 711 (0.51 px).

    Raises:
        ValueError: a reference that is not a 2-D image, or negative intervals.
    """

    name = "drift"

    def __init__(
        self,
        reference_image: Any,
        reference_time: float = 0.0,
        every_points: int = 20,
        every_seconds: float = 0.0,
        upsample: int = 20,
        velocity_window: int = 4,
        min_peak: float = 0.02,
        normalisation: str = "cross",
        first_points: int = 3,
    ) -> None:
        # undefined pixels filled (logged), a one-frame stack taken: agents.images
        ref = np.asarray(reference_image)
        if ref.ndim < 2 or min(ref.shape[-2:]) < 8:
            raise ValueError(f"reference must be a 2-D image of at least 8 x 8, got {ref.shape}")
        ref = survey_image_array(ref, what="drift reference", min_size=8)
        if not np.ptp(ref) > 0:
            raise ValueError(
                "the drift reference image is constant: it has no features to follow (is the "
                "beam blanked or the survey detector off?)"
            )
        if every_points < 0 or every_seconds < 0 or first_points < 0:
            raise ValueError("every_points, every_seconds and first_points must be >= 0")
        if upsample < 1 or velocity_window < 1:
            raise ValueError("upsample and velocity_window must be >= 1")
        self.reference = ref
        self.reference_time = float(reference_time)
        self.every_points = int(every_points)
        self.every_seconds = float(every_seconds)
        self.first_points = int(first_points)
        self.upsample = int(upsample)
        self.velocity_window = int(velocity_window)
        self.min_peak = float(min_peak)
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}")
        self.normalisation = normalisation
        #: every measurement: ``{"time", "dx", "dy", "peak", "used"}``
        self.history: List[Dict[str, float]] = [
            {"time": self.reference_time, "dx": 0.0, "dy": 0.0, "peak": 1.0, "used": True}
        ]

    # ------------------------------------------------------------------ when

    def due(self, points_since: int, seconds_since: float) -> bool:
        """Is it time to re-measure, ``points_since`` spectra and ``seconds_since`` seconds
        after the last measurement?"""
        by_count = self.every_points > 0 and points_since >= self.every_points
        by_time = self.every_seconds > 0 and seconds_since >= self.every_seconds
        return by_count or by_time or (self._warming_up() and points_since >= self.first_points)

    def _warming_up(self) -> bool:
        """Fewer than two trusted measurements besides the reference: the velocity is
        unknown or comes from one short stretch."""
        return self.first_points > 0 and len(self._trusted()) < 3

    def chunk(self, seconds_per_point: float) -> int:
        """How many spectra to take before the next re-measurement (at least 1)."""
        sizes = []
        if self.every_points > 0:
            sizes.append(self.every_points)
        if self.every_seconds > 0 and seconds_per_point > 0:
            # enough spectra to reach the interval (due() asks for >= every_seconds): with
            # fewer, the chunk ends short of it, is not due, and a second chunk doubles it
            sizes.append(int(np.ceil(self.every_seconds / seconds_per_point - 1e-9)))
        if self._warming_up():
            sizes.append(self.first_points)
        return max(1, min(sizes)) if sizes else 1 << 30

    # ------------------------------------------------------------------ measure

    def measure(self, image: Any, time: float) -> Dict[str, float]:
        """Register a new image of the field against the reference; remember the result.

        Returns:
            ``{"time", "dx", "dy", "peak", "used", "vx", "vy"}``: displacement in px,
            correlation peak, whether it was trusted, and the velocity estimate in px/s. A
            constant frame (nothing to correlate) is recorded untrusted with peak 0 and a
            logged warning; the drift known so far stands.
        """
        blank = _constant(image)
        if blank is not None:
            # a frame with nothing to correlate (the beam blanked for a moment, a detector
            # glitch) says nothing about the drift: recorded untrusted, the run goes on with
            # the drift known so far (it stopped the run with "a constant image ...")
            log.warning("drift: %s; the correction keeps the drift measured so far", blank)
            est = {"dx": 0.0, "dy": 0.0, "peak": 0.0}
        else:
            est = phase_correlation(
                self.reference, image, upsample=self.upsample, normalisation=self.normalisation
            )
        used = blank is None and est["peak"] >= self.min_peak
        entry = {"time": float(time), **est, "used": bool(used)}
        self.history.append(entry)
        vx, vy = self.velocity()
        return {**entry, "vx": vx, "vy": vy}

    def _trusted(self) -> List[Dict[str, float]]:
        return [h for h in self.history if h["used"]]

    def velocity(self) -> tuple[float, float]:
        """Drift velocity, px/s: a least-squares line through the latest trusted
        measurements (the reference counts as one); 0 with a single one."""
        pts = self._trusted()[-(self.velocity_window + 1) :]
        if len(pts) < 2:
            return 0.0, 0.0
        t = np.array([p["time"] for p in pts])
        if np.ptp(t) <= 0:
            return 0.0, 0.0
        d = np.array([[p["dx"], p["dy"]] for p in pts])
        a = np.column_stack([t - t.mean(), np.ones_like(t)])
        coef, *_ = np.linalg.lstsq(a, d, rcond=None)
        return float(coef[0, 0]), float(coef[0, 1])

    def predict(self, times: Sequence[float]) -> np.ndarray:
        """Expected displacement ``(N, 2)`` px at instrument ``times``: the least-squares line
        through the latest trusted measurements (so one noisy estimate does not move the
        beam on its own), evaluated at each time."""
        pts = self._trusted()[-(self.velocity_window + 1) :]
        t = np.array([p["time"] for p in pts])
        d = np.array([[p["dx"], p["dy"]] for p in pts])
        when = np.asarray(times, dtype=np.float64)
        if len(pts) < 2 or np.ptp(t) <= 0:
            return np.repeat(d[-1:], len(when), axis=0)
        vx, vy = self.velocity()
        centre = d.mean(axis=0)
        dt = when - t.mean()
        return np.column_stack([centre[0] + vx * dt, centre[1] + vy * dt])

    def correct(self, positions: Any, times: Optional[Sequence[float]] = None) -> np.ndarray:
        """Where to put the beam to hit the reference sites ``positions`` ``(N, 2)`` x, y at
        instrument ``times`` (default: the time of the latest measurement)."""
        pts = as_positions(positions)
        if times is None:
            times = [self.history[-1]["time"]] * len(pts)
        if len(times) != len(pts):
            raise ValueError(f"{len(pts)} positions but {len(times)} times")
        return pts + self.predict(times)

    # ------------------------------------------------------------------ report

    def config(self) -> Dict[str, Any]:
        """How the tracker was made (all but the reference image), to rebuild it."""
        return {
            "reference_time": self.reference_time,
            "every_points": self.every_points,
            "every_seconds": self.every_seconds,
            "upsample": self.upsample,
            "velocity_window": self.velocity_window,
            "min_peak": self.min_peak,
            "normalisation": self.normalisation,
            "first_points": self.first_points,
        }

    def report(self) -> Dict[str, Any]:
        """Measurements made, the latest displacement and the velocity (px, px/s)."""
        last = self._trusted()[-1]
        vx, vy = self.velocity()
        return {
            "agent": self.name,
            "config": self.config(),
            "measurements": len(self.history) - 1,
            "rejected": sum(not h["used"] for h in self.history),
            "dx": last["dx"],
            "dy": last["dy"],
            "vx_px_per_s": vx,
            "vy_px_per_s": vy,
        }
