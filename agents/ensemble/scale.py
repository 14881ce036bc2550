"""Columns far larger than the members learned: bin the survey image before prediction.

The members learned columns on twin images whose lattice repeats every 9-14 px; they find
the real graphene image's columns (repeat 31 px) as well (F1 0.94), but given the same image
sampled 1.5 x or 2 x finer (repeat 44-57 px: a smaller pixel size, a larger magnification)
they saw 2,361-4,755 "atoms" in its 140 columns (F1 0.12), each column's texture taken for
several atoms, and the atom map's own checks passed them. So the agent reads the image's
dominant repeat from its power spectrum first and, when it is longer than
:data:`MAX_PERIOD` px and clear, bins the image by the smallest whole factor that brings it
under (the mean of each ``f x f`` block: the dose of a coarser scan), predicts there and
puts the atoms back on the image's own pixels. The factor and the repeat go in the agent's
report.

>>> yy, xx = np.mgrid[:256, :256]
>>> lattice = np.cos(2 * np.pi * xx / 50.0) + np.cos(2 * np.pi * yy / 50.0)  # repeat 50 px
>>> bin_factor(lattice)
(2, 51.2)
>>> binned(np.arange(16.0).reshape(4, 4), 2).tolist()
[[2.5, 4.5], [10.5, 12.5]]
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
from scipy import ndimage

from .prediction import Prediction

__all__ = ["MAX_PERIOD", "MIN_CLARITY", "bin_factor", "binned", "column_period", "unbinned"]

#: the longest repeat (px) the members are given: the real graphene image's 31 px is read
#: well (F1 0.94; binned by 2 to 15 px: 0.97), 44 px and more not at all
MAX_PERIOD = 36.0
#: a repeat counts when its power stands this many times above the spectrum's median over
#: the repeats searched (white noise: ~2; the real images: 4-2,000)
MIN_CLARITY = 4.0
#: the shortest repeat searched, px
MIN_PERIOD = 4.0


def column_period(image: Any) -> tuple[float | None, float]:
    """The image's dominant repeat (px) and how clearly it stands out of its spectrum.

    The highest peak of the power spectrum (Hann window, the slow background taken out) over
    repeats from :data:`MIN_PERIOD` px to a quarter of the field: ``(period, clarity)``,
    clarity being the peak over the median of the spectrum's ring maxima; ``(None, 0)``
    when the field is too small or flat.
    """
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    longest = min(h, w) / 4.0
    if longest <= MIN_PERIOD or not np.ptp(img) > 0:
        return None, 0.0
    img = img - ndimage.gaussian_filter(img, longest, mode="reflect")
    power = np.abs(np.fft.fft2(img * np.outer(np.hanning(h), np.hanning(w)))) ** 2
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    # rings one frequency step wide (the coarser axis's step), cycles per pixel
    step = 1.0 / min(h, w)
    ring = np.rint(np.hypot(fy, fx) / step).astype(np.intp)
    rings = ring.max() + 1
    peak = np.zeros(rings)
    np.maximum.at(peak, ring.ravel(), power.ravel())
    k = np.arange(rings) * step
    searched = (k >= 1.0 / longest) & (k <= 1.0 / MIN_PERIOD)
    if not searched.any():
        return None, 0.0
    values = np.where(searched, peak, 0.0)
    best = int(np.argmax(values))
    base = float(np.median(peak[searched]))
    clarity = float(values[best] / base) if base > 0 else 0.0
    return float(1.0 / k[best]), clarity


def bin_factor(image: Any, max_period: float = MAX_PERIOD) -> tuple[int, float | None]:
    """``(factor, period)``: by how much to bin ``image`` so its clear repeat is at most
    ``max_period`` px (1: leave it; also when no repeat stands out), and that repeat (px,
    None when none was read)."""
    period, clarity = column_period(image)
    if period is None or clarity < MIN_CLARITY:
        return 1, period if period is None else round(period, 1)
    factor = max(1, math.ceil(period / max_period - 1e-9))
    return factor, round(period, 1)


def binned(image: Any, factor: int) -> np.ndarray:
    """The mean of each ``factor x factor`` block (an edge that does not fill a block is
    padded with its last row/column)."""
    img = np.asarray(image, dtype=np.float64)
    if factor <= 1:
        return img
    h, w = img.shape
    ph, pw = -h % factor, -w % factor
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw)), mode="edge")
    return img.reshape(img.shape[0] // factor, factor, img.shape[1] // factor, factor).mean(
        axis=(1, 3)
    )


def unbinned(prediction: Prediction, factor: int, shape: tuple[int, int]) -> Prediction:
    """A prediction made on the binned image, on the image's own ``shape`` of pixels: maps
    repeated over each block, atoms at their block position's centre, areas in the image's
    pixels (probabilities, uncertainties and evidence as they were)."""
    if factor <= 1:
        return prediction
    h, w = shape

    def grown(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a, factor, axis=0), factor, axis=1)[:h, :w]

    atoms = np.asarray(prediction.atoms, dtype=np.float64) * factor + (factor - 1) / 2.0
    return replace(
        prediction,
        mean=grown(prediction.mean),
        variance=grown(prediction.variance),
        atoms=atoms.reshape(-1, 2),
        area=np.asarray(prediction.area, dtype=np.float64) * factor * factor,
    )
