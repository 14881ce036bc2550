"""HAADF image formation: columns convolved with the probe, shot noise, scan noise.

The noise-free image is the fraction of incident electrons that reach the HAADF detector at
each pixel; the samples compute it (atoms as Gaussians of the probe's width, continuum
samples from mass-thickness). This module renders Gaussians fast and adds the detector's
noise:

* Poisson shot noise of ``dose × fraction`` electrons per pixel (dose = current × dwell / e),
* scan-line noise: each line gets its own gain and offset (flicker of the source and the
  detector, the streaks of real STEM images),
* Gaussian read noise of the detector electronics.

Counts are in detected electrons (detector gain 1), so the variance of a pixel equals its
mean when read and scan-line noise are off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

__all__ = ["NoiseModel", "add_image_noise", "noise_model_for_level", "render_gaussians"]

#: electrons per C atom peak (graphene) or reference feature at noise_level = 0 and 1
_DOSE_AT_0 = 1e4
# 4.5 decades: at 0.9 the lattice is barely detectable, as in the second paper's noise
# sweeps (3.5 left every method at F1 ~ 1 up to 0.9; docs/decisions/0007-twin-noise-scale.md)
_DECADES = 4.5


def render_gaussians(
    height: int,
    width: int,
    x: np.ndarray,
    y: np.ndarray,
    amplitude: np.ndarray,
    sigma: float,
) -> np.ndarray:
    """Sum of isotropic Gaussians ``amplitude · exp(-r² / 2σ²)`` on a pixel grid.

    Args:
        height, width: image size, pixels.
        x, y: centres in pixels (column, row), sub-pixel.
        amplitude: peak height of each Gaussian.
        sigma: width in pixels (the probe's).

    Each Gaussian is evaluated exactly on the pixels within 4σ (separable outer products,
    summed with one ``bincount``). When that is more work than the whole image (a probe many
    pixels wide), a few atoms are summed exactly as one matrix product of their row and
    column profiles; many atoms are splatted bilinearly and blurred instead.

    Example:
        >>> img = render_gaussians(9, 9, np.array([4.0]), np.array([4.0]), np.array([1.0]), 1.0)
        >>> float(img[4, 4]), float(img.sum()) > 6
        (1.0, True)
    """
    out = np.zeros(height * width, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    amplitude = np.asarray(amplitude, dtype=np.float64)
    reach = 4.0 * sigma + 1.0
    keep = (x > -reach) & (x < width - 1 + reach) & (y > -reach) & (y < height - 1 + reach)
    x, y, amplitude = x[keep], y[keep], amplitude[keep]
    if len(x) == 0:
        return out.reshape(height, width)
    half = math.ceil(4.0 * sigma)
    side = 2 * half + 1
    if len(x) * side * side > 4 * height * width:
        # A probe many pixels wide: a few atoms are summed exactly as one matrix product
        # of their row and column profiles; many are splatted and blurred.
        if len(x) <= 64 or side > min(height, width) / 5:
            gx = np.exp(-0.5 * ((np.arange(width)[None, :] - x[:, None]) / sigma) ** 2)
            gy = np.exp(-0.5 * ((np.arange(height)[None, :] - y[:, None]) / sigma) ** 2)
            return (gy * amplitude[:, None]).T @ gx
        return _render_by_filter(height, width, x, y, amplitude, sigma)
    # Work through the atoms in chunks so memory stays bounded (~2M weights at a time).
    chunk = max(1, 2_000_000 // (side * side))
    for i in range(0, len(x), chunk):
        _splat_exact(
            out,
            height,
            width,
            x[i : i + chunk],
            y[i : i + chunk],
            amplitude[i : i + chunk],
            sigma,
            half,
        )
    return out.reshape(height, width)


def _splat_exact(
    out: np.ndarray,
    height: int,
    width: int,
    x: np.ndarray,
    y: np.ndarray,
    amplitude: np.ndarray,
    sigma: float,
    half: int,
) -> None:
    x0 = np.floor(x).astype(np.int64) - half + 1
    y0 = np.floor(y).astype(np.int64) - half + 1
    offs = np.arange(2 * half)
    cols = x0[:, None] + offs[None, :]
    rows = y0[:, None] + offs[None, :]
    gx = np.exp(-0.5 * ((cols - x[:, None]) / sigma) ** 2)
    gy = np.exp(-0.5 * ((rows - y[:, None]) / sigma) ** 2) * amplitude[:, None]
    gx[(cols < 0) | (cols >= width)] = 0.0
    gy[(rows < 0) | (rows >= height)] = 0.0
    cols = np.clip(cols, 0, width - 1)
    rows = np.clip(rows, 0, height - 1)
    flat = (rows[:, :, None] * width + cols[:, None, :]).ravel()
    weights = (gy[:, :, None] * gx[:, None, :]).ravel()
    out += np.bincount(flat, weights=weights, minlength=height * width)


def _render_by_filter(
    height: int, width: int, x: np.ndarray, y: np.ndarray, amplitude: np.ndarray, sigma: float
) -> np.ndarray:
    """Bilinear splat and a Gaussian filter: for probes many pixels wide."""
    pad = math.ceil(4 * sigma)
    h, w = height + 2 * pad, width + 2 * pad
    grid = np.zeros((h, w))
    xs, ys = x + pad, y + pad
    ix, iy = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    fx, fy = xs - ix, ys - iy
    for dx, dy, wgt in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        cx, cy = ix + dx, iy + dy
        ok = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
        np.add.at(grid, (cy[ok], cx[ok]), amplitude[ok] * wgt[ok])
    # blur in Fourier space (the 4σ padding keeps the wrap-around out of the image); the
    # filter preserves the sum, and a unit-peak Gaussian holds 2πσ² of it
    ft = ndimage.fourier_gaussian(sfft.rfft2(grid, workers=-1), sigma, n=grid.shape[1])
    blurred = sfft.irfft2(ft, s=grid.shape, workers=-1) * (2.0 * math.pi * sigma**2)
    return blurred[pad : pad + height, pad : pad + width]


@dataclass(frozen=True)
class NoiseModel:
    """Detector noise of a HAADF image.

    Attributes:
        dose_scale: multiplies the physical electron dose (1 = physical; set by ``noise_level``).
        read_noise: Gaussian read noise per pixel, electrons.
        line_gain: relative standard deviation of each scan line's gain.
        line_offset: standard deviation of each scan line's offset, electrons.
    """

    dose_scale: float = 1.0
    read_noise: float = 0.3
    line_gain: float = 0.005
    line_offset: float = 0.1


def noise_model_for_level(
    noise_level: Optional[float], physical_reference_counts: float
) -> NoiseModel:
    """The detector model for a ``noise_level`` in [0, 1] (None: the physical defaults).

    ``noise_level`` sets the electrons collected at the sample's reference feature (a carbon
    atom in graphene, a Sr column in SrTiO3, ...) at the sample's default dwell time to
    ``1e4 · 10**(-4.5 · noise_level)`` (10000 at 0, 56 at 0.5, 0.9 at 0.9) and adds read and
    scan-line noise in proportion (``noise_level`` electrons read noise, 2 %·level line gain,
    0.5·level electrons line offset). It is monotone: every noise source grows with the level.

    Args:
        noise_level: 0 (essentially noiseless) … 1; None for the physical beam current.
        physical_reference_counts: electrons at the reference feature with the physical
            current and the sample's default dwell time.
    """
    if noise_level is None:
        return NoiseModel()
    level = float(noise_level)
    if not 0.0 <= level <= 1.0 or not math.isfinite(level):
        raise ValueError(f"noise_level must be in [0, 1], got {noise_level!r}")
    target = _DOSE_AT_0 * 10.0 ** (-_DECADES * level)
    return NoiseModel(
        dose_scale=target / max(physical_reference_counts, 1e-30),
        read_noise=1.0 * level,
        line_gain=0.02 * level,
        line_offset=0.5 * level,
    )


def add_image_noise(
    expected: np.ndarray, noise: NoiseModel, rng: np.random.Generator
) -> np.ndarray:
    """Detected electrons (float32) for ``expected`` electrons per pixel."""
    lam = np.maximum(expected, 0.0)
    if noise.line_gain > 0:
        gain = 1.0 + noise.line_gain * rng.standard_normal(lam.shape[0])
        lam = lam * np.maximum(gain, 0.0)[:, None]
    img = rng.poisson(lam).astype(np.float32)
    if noise.line_offset > 0:
        img += (noise.line_offset * rng.standard_normal(lam.shape[0])).astype(np.float32)[:, None]
    if noise.read_noise > 0:
        img += (noise.read_noise * rng.standard_normal(lam.shape, dtype=np.float32)).astype(
            np.float32
        )
    return img
