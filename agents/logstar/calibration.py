"""The pixel size of an atomic-resolution image, from its own lattice reflections.

LoG*'s rewards are in pixels, so they need the pixel size. When the survey image's
calibration is missing (a file without one) or doubtful, the image itself says it: the
Fourier transform of a crystal shows its reflections at ``|g| x pixel_size`` cycles per
pixel, ``|g|`` the reciprocal-lattice vector lengths of the projected lattice (nm^-1). Why
not the nearest-neighbour distance of atoms found in the image: a finder's extra and missing
atoms bias it (low: a few close false positives pull the median down), while the
reflections come from thousands of columns at once.

:func:`estimate_pixel_size` predicts the lattice's reflection rings (with their structure
factors, so the honeycomb's weak rings weigh little), finds the scale that puts the
strongest predicted rings on the brightest spots of the image's power spectrum, then refines
it spot by spot to a fraction of an FFT pixel. On the real ``G-Si-2nm`` graphene image it
agrees with the reference atoms' lattice to 0.2 % (``tests/agents/logstar/
test_calibration.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from scipy import ndimage
from scipy.signal.windows import tukey

from ..images import without_hot_pixels
from .lattice import Lattice

__all__ = [
    "PixelSizeEstimate",
    "compare_calibration",
    "estimate_pixel_size",
    "lattice_reflections",
]

#: a calibration and a clear lattice disagreeing by more than this is reported
DISAGREEMENT = 0.05

#: the fraction of each side the window's cosine edges take (``scipy.signal.windows.tukey``)
TUKEY_ALPHA = 0.25
#: reflections weaker than this (|F|^2 over its largest value) are not used
_WEAK = 0.05
#: the brightest spots of the whitened power spectrum that are matched to the lattice
_SPOTS = 200
#: a spot must be this many times its radius' median power: noise (exponential power)
#: passes it about once in a million pixels
_SPOT_LEVEL = 20.0


@dataclass
class PixelSizeEstimate:
    """What the image's Fourier transform says about its pixel size.

    Attributes:
        pixel_size_nm: the estimate, nm per pixel.
        spread: relative scatter of the estimates from the single reflections (0.002 =
            0.2 %); large when the lattice does not fit the image.
        contrast: the used spots' power over the median power at their radius (median
            over the spots: how clearly the image shows the lattice; below ~10 it is weak).
        reflections: per used spot: ``d_nm`` (its lattice spacing), ``k_px`` (measured
            radius, cycles per pixel), ``pixel_size_nm`` (what it alone gives).
        ambiguity: the best score of a pixel size more than 5 % away over the estimate's
            (0: no other size explains the spots; near 1: another one does about as well,
            e.g. x sqrt 3 on a honeycomb whose 100 ring is too weak to see).
        reference_score: with ``reference`` given, how well that pixel size explains the
            spots relative to the estimate (1: as well; below 0.5: clearly worse).
        window: the taper the transform was made with (``"hann"`` or ``"tukey"``).
    """

    pixel_size_nm: float
    spread: float
    contrast: float
    reflections: List[Dict[str, float]] = field(default_factory=list)
    ambiguity: float = 0.0
    reference_score: Optional[float] = None
    window: str = "hann"

    @property
    def clear(self) -> bool:
        """The lattice shows clearly: at least 6 spots on at least 2 reflection rings,
        agreeing within 1 %, each well above the noise (contrast over 10)."""
        rings = {round(r["d_nm"], 6) for r in self.reflections}
        return (
            len(self.reflections) >= 6
            and len(rings) >= 2
            and self.spread < 0.01
            and self.contrast > 10
        )

    def as_dict(self) -> Dict[str, Any]:
        """JSON-able."""
        return {
            "pixel_size_nm": self.pixel_size_nm,
            "clear": self.clear,
            "spread": self.spread,
            "contrast": self.contrast,
            "reflections": [dict(r) for r in self.reflections],
            "ambiguity": self.ambiguity,
            "reference_score": self.reference_score,
            "window": self.window,
        }


def lattice_reflections(lattice: Lattice, g_max: float) -> Tuple[np.ndarray, np.ndarray]:
    """Distinct reflection radii ``|g|`` (nm^-1) up to ``g_max`` and their relative
    intensities (structure factor squared of the counted columns, weighted by their HAADF
    brightness when the lattice knows it; the largest is 1).

    Example:
        >>> from agents.logstar.lattice import graphene
        >>> g, w = lattice_reflections(graphene(), 10.0)
        >>> [round(float(1 / x), 4) for x in g[:2]], [round(float(v), 2) for v in w[:2]]
        ([0.213, 0.123], [0.25, 1.0])
    """
    cell = np.asarray(lattice.cell, dtype=float)
    recip = np.linalg.inv(cell).T  # rows a*, b* (nm^-1): a_i . b_j* = delta_ij
    basis = np.asarray(lattice.basis, dtype=float)
    weights = np.asarray(lattice.brightness or [1.0] * len(basis), dtype=float)
    n = int(np.ceil(g_max / np.min(np.linalg.norm(recip, axis=1)))) + 1
    h, k = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1))
    hk = np.column_stack([h.ravel(), k.ravel()])
    hk = hk[np.any(hk != 0, axis=1)]
    g = np.linalg.norm(hk @ recip, axis=1)
    phase = 2j * np.pi * (hk @ basis.T)
    f2 = np.abs(np.exp(phase) @ weights) ** 2
    keep = (g <= g_max) & (f2 > _WEAK * f2.max())
    radii, intensity = g[keep], f2[keep]
    order = np.argsort(radii)
    radii, intensity = radii[order], intensity[order]
    rings: List[Tuple[float, float]] = []
    for r, i in zip(radii, intensity):
        if rings and abs(r - rings[-1][0]) < 1e-6 * r:
            rings[-1] = (rings[-1][0], max(rings[-1][1], i))
        else:
            rings.append((r, i))
    out = np.array(rings)
    return out[:, 0], out[:, 1] / out[:, 1].max()


def _taper(n: int, window: str) -> np.ndarray:
    return np.hanning(n) if window == "hann" else tukey(n, TUKEY_ALPHA)


def _power_spectrum(image: np.ndarray, pad: int, window: str = "hann") -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    img = img - img.mean()
    taper = np.outer(_taper(img.shape[0], window), _taper(img.shape[1], window))
    ft = np.fft.fftshift(np.fft.fft2(img * taper, s=(pad, pad)))
    return np.abs(ft) ** 2


def estimate_pixel_size(
    image: Any,
    lattice: Lattice,
    rings: int = 4,
    search: Tuple[float, float] = (0.01, 0.45),
    reference: Optional[float] = None,
    window: str = "hann",
) -> PixelSizeEstimate:
    """Estimate an atomic-resolution image's pixel size (nm/px) from its lattice reflections.

    Args:
        image: 2-D image (any units; at least 32 x 32).
        lattice: the projected lattice it shows (brightness-weighted when known).
        rings: how many of the strongest predicted reflection rings to match.
        search: the band of the power spectrum searched, cycles per pixel (reflections
            closer to the centre than ``search[0]`` drown in the image's slow variations).
        reference: a pixel size to judge too (the image's calibration): how well it
            explains the spots, relative to the estimate (``reference_score``).
        window: the taper before the transform: ``"hann"`` (the default), ``"tukey"``
            (flat, cosine edges over an eighth of each side), or ``"auto"``: Hann, and the
            Tukey window's reading when Hann's is not clear
            (:attr:`PixelSizeEstimate.clear`) or finds nothing. Why two: a Hann window
            keeps the spots' leakage lowest (its squared weights sum to 14 % of a field's
            pixels in 2-D) but weighs most of a small field next to nothing, which leaves a
            small field's reflections in the noise; a Tukey window weighs 70 % of it, at the
            price of more leakage around strong features: on clean synthetic lattices its
            side lobes pass for spots, and on the twin's nanoparticles (no lattice at all)
            it found a "clear" graphene. So a Tukey reading wants a second opinion: the
            agent takes one only when the atoms' spacing agrees
            (:mod:`~agents.logstar.checks`). On a 200 x 200 crop of the real graphene
            image Hann found two spots and read the pixel size x sqrt 3; the Tukey window
            reads it to 0.5 %.

    Returns:
        The :class:`PixelSizeEstimate` (its ``window`` says which taper gave it).

    Raises:
        ValueError: an image too small, or no scale puts the lattice's reflections inside the
            searched band.

    Example:
        >>> est = estimate_pixel_size(image, get_lattice("graphene"))   # doctest: +SKIP
        >>> round(est.pixel_size_nm, 5), est.spread < 0.01                # doctest: +SKIP
        (0.00781, True)
    """
    if window not in ("auto", "hann", "tukey"):
        raise ValueError(f"window must be 'auto', 'hann' or 'tukey', got {window!r}")
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 32:
        raise ValueError(f"need a 2-D image of at least 32 x 32 pixels, got {img.shape}")
    if not np.all(np.isfinite(img)):
        raise ValueError("the image holds NaN or infinite values")
    # hot pixels and X-ray spikes are white noise to a Fourier transform: on the real
    # graphene image 0.1 % of pixels at 50x the brightest atom hid every reflection
    img, _ = without_hot_pixels(img)
    if window != "auto":
        return _estimate(img, lattice, rings, search, reference, window)
    first: Optional[PixelSizeEstimate] = None
    error: Optional[ValueError] = None
    try:
        first = _estimate(img, lattice, rings, search, reference, "hann")
    except ValueError as exc:  # no spot, or no scale fits: the Tukey window may see them
        error = exc
    if first is not None and first.clear:
        return first
    try:
        second = _estimate(img, lattice, rings, search, reference, "tukey")
    except ValueError:
        second = None
    if second is not None and (first is None or second.clear):
        return second
    if first is not None:
        return first
    assert error is not None
    raise error


def _estimate(
    img: np.ndarray,
    lattice: Lattice,
    rings: int,
    search: Tuple[float, float],
    reference: Optional[float],
    window: str,
) -> PixelSizeEstimate:
    """:func:`estimate_pixel_size` with one taper, on a checked float image."""
    size = max(img.shape)
    pad = int(2 ** np.ceil(np.log2(2 * size)))  # 2x zero padding: finer radius sampling
    power = _power_spectrum(img, pad, window)
    centre = pad // 2
    yy, xx = np.indices(power.shape)
    radius = np.hypot(yy - centre, xx - centre) / pad  # cycles per pixel
    lo, hi = search

    # the innermost rings: the probe passes low spatial frequencies best, so those show
    recip = np.linalg.inv(np.asarray(lattice.cell, dtype=float)).T
    g, weight = lattice_reflections(lattice, g_max=6.0 * np.linalg.norm(recip, axis=1).max())
    g_use, w_use = g[: max(1, int(rings))], weight[: max(1, int(rings))]

    # whiten: each radius' power over its median, so a spot stands out the same whether it
    # sits on the steep low-frequency slope or on the flat noise floor
    bins = np.rint(radius * pad).astype(int)
    medians = np.zeros(bins.max() + 1)
    for b, values in _by_bin(bins, power):
        medians[b] = np.median(values)
    whitened = power / np.maximum(medians[bins], 1e-300)
    band = (radius >= lo) & (radius <= hi)
    # scan-line noise (rows of different gain, flyback) puts a streak of power along an
    # axis of the transform; drop an axis whose typical power is well above its radius'
    for axis in (0, 1):
        line = np.zeros_like(band)
        index = [slice(None), slice(None)]
        index[1 - axis] = slice(centre - 1, centre + 2)
        line[tuple(index)] = True
        if np.median(whitened[line & band]) > 3.0:
            band &= ~line
    peaks = (whitened == ndimage.maximum_filter(whitened, size=5)) & band & (whitened > _SPOT_LEVEL)
    rows, cols = np.nonzero(peaks)
    strength = np.log(whitened[rows, cols])
    top = np.argsort(-strength)[:_SPOTS]
    rows, cols, strength = rows[top], cols[top], strength[top]
    if len(rows) == 0:
        raise ValueError("the image's power spectrum shows no lattice reflection")
    spots = np.empty(len(rows))
    for i, (r, c) in enumerate(zip(rows, cols)):
        # whitening divides by a median that falls steeply near the centre, which pushes a
        # spot's whitened maximum outwards: locate it on the power itself
        r0, c0 = max(int(r) - 2, 1), max(int(c) - 2, 1)
        patch = power[r0 : int(r) + 3, c0 : int(c) + 3]
        dr, dc = np.unravel_index(int(np.argmax(patch)), patch.shape)
        r, c = min(r0 + dr, pad - 2), min(c0 + dc, pad - 2)
        dy, dx = _subpixel(power, int(r), int(c))
        spots[i] = np.hypot(r + dy - centre, c + dx - centre) / pad

    # every scale that keeps the used rings inside the band, 0.1 % apart. A scale earns the
    # strength of each spot it explains (on any reflection of the lattice) and loses that of
    # each spot it leaves unexplained, up to its outermost used ring: so a scale that maps
    # the lattice's rings onto *other* rings of the same lattice (x sqrt 2 on a square one)
    # pays for the reflections that then have no place.
    s_min, s_max = lo / g_use.min(), hi / g_use.max()
    if not s_min < s_max:
        raise ValueError(
            f"no pixel size puts {lattice.name}'s reflections inside {lo}-{hi} cycles/px; "
            "the image may be too small for this lattice"
        )
    median_strength = float(np.median(strength))

    def score_of(scales: np.ndarray) -> np.ndarray:
        predicted = scales[:, None, None] * g[None, :, None]  # (scale, reflection, 1)
        tolerance = np.maximum(0.012 * predicted, 0.75 / pad)
        hits = np.abs(spots[None, None, :] - predicted) < tolerance  # (scale, refl., spot)
        explained = hits.any(axis=1)
        judged = spots[None, :] <= 1.02 * scales[:, None] * g_use.max()
        total = (np.where(explained, 1.0, -1.0) * judged) @ strength
        # ... and a reflection the lattice predicts inside the explained range but the image
        # lacks costs its predicted intensity: the 45-degree, 1/sqrt 2 cell of a square
        # lattice explains every spot too, but predicts a ring inside the first one
        outermost = np.max(np.where(explained & judged, spots[None, :], 0.0), axis=1)
        inside = (predicted[:, :, 0] > lo) & (predicted[:, :, 0] < 0.98 * outermost[:, None])
        missing = inside & ~hits.any(axis=2)
        return total - (missing * weight[None, :]).sum(axis=1) * median_strength

    scales = np.exp(np.arange(np.log(s_min), np.log(s_max), 1e-3))
    score = score_of(scales)
    best = int(np.argmax(score))
    s0 = float(scales[best])
    # how well the best scale beats any other one more than 5 % away (the honeycomb whose
    # 100 ring is too weak to see explains its spots at x sqrt 3 nearly as well)
    far = np.abs(np.log(scales / s0)) > np.log(1.05)
    runner_up = float(score[far].max()) if far.any() else -np.inf
    ambiguity = max(0.0, runner_up / score[best]) if score[best] > 0 else 1.0
    reference_score = None
    if reference is not None:
        reference_score = float(score_of(np.array([float(reference)]))[0] / score[best])

    # refine: each spot on a predicted ring gives its own estimate; weigh them by strength
    found: List[Dict[str, float]] = []
    weights: List[float] = []
    for gr, wr in zip(g_use, w_use):
        near = np.abs(spots - gr * s0) < max(0.012 * gr * s0, 0.75 / pad)
        for k_px, st in zip(spots[near], strength[near]):
            found.append(
                {"d_nm": float(1.0 / gr), "k_px": float(k_px), "pixel_size_nm": float(k_px / gr)}
            )
            weights.append(float(wr * st))
    if not found:
        raise ValueError(f"no reflection of {lattice.name} found in the image")
    per = np.array([f["pixel_size_nm"] for f in found])
    w = np.array(weights)
    estimate = float(np.sum(per * w) / np.sum(w))
    spread = float(np.sqrt(np.sum(w * (per - estimate) ** 2) / np.sum(w)) / estimate)
    contrast = float(np.exp(np.median(strength[np.isin(spots, [f["k_px"] for f in found])])))
    return PixelSizeEstimate(
        pixel_size_nm=estimate,
        spread=spread,
        contrast=contrast,
        reflections=found,
        ambiguity=ambiguity,
        reference_score=reference_score,
        window=window,
    )


def _by_bin(bins: np.ndarray, values: np.ndarray) -> Any:
    """``(bin, values in it)`` for every non-empty bin."""
    order = np.argsort(bins.ravel(), kind="stable")
    sorted_bins, sorted_values = bins.ravel()[order], values.ravel()[order]
    edges = np.flatnonzero(np.diff(sorted_bins)) + 1
    for chunk_bins, chunk in zip(np.split(sorted_bins, edges), np.split(sorted_values, edges)):
        yield int(chunk_bins[0]), chunk


def _subpixel(power: np.ndarray, r: int, c: int) -> Tuple[float, float]:
    """Parabolic peak offset (rows, columns) around a maximum of the power spectrum."""
    out = []
    for dr, dc in ((1, 0), (0, 1)):
        lo = power[r - dr, c - dc] if r - dr >= 0 and c - dc >= 0 else power[r, c]
        hi = (
            power[r + dr, c + dc]
            if r + dr < power.shape[0] and c + dc < power.shape[1]
            else power[r, c]
        )
        curvature = lo - 2 * power[r, c] + hi
        out.append(float(np.clip(0.5 * (lo - hi) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0)
    return out[0], out[1]


def compare_calibration(
    estimate: Optional[PixelSizeEstimate], pixel_size_nm: float, lattice: Lattice
) -> Dict[str, Any]:
    """What the image's reflections say about a given pixel size, JSON-able:
    ``{"source": "given", "fft": ..., "fft_over_given": ..., ["warning": ...]}``.

    The calibration is contradicted only when the lattice is clear
    (:attr:`PixelSizeEstimate.clear`), the estimate differs by more than
    :data:`DISAGREEMENT`, and the given
    pixel size explains the image's spots clearly worse than the estimate (under half its
    score; make the estimate with ``reference=pixel_size_nm``): a small field whose weak
    reflections leave the scale ambiguous contradicts nothing.
    """
    info: Dict[str, Any] = {"source": "given", "fft": estimate.as_dict() if estimate else None}
    if estimate is None:
        return info
    ratio = estimate.pixel_size_nm / pixel_size_nm
    info["fft_over_given"] = ratio
    worse = estimate.reference_score is not None and estimate.reference_score < 0.5
    if abs(ratio - 1) > DISAGREEMENT and estimate.clear and worse:
        info["warning"] = (
            f"the image's calibration says {pixel_size_nm:.5g} nm/px, its lattice reflections "
            f"({lattice.name}) say {estimate.pixel_size_nm:.5g} nm/px: a wrong calibration or "
            "a wrong lattice; pixel_size_nm='fft' uses the latter"
        )
    return info
