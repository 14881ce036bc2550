"""Scalarizers of bands and peaks: one EELS spectrum (and its energy axis) in, one number out.

- :func:`band_intensity`: the intensity integrated over a band (a plasmon, an edge's white
  lines), counts x eV;
- :func:`peak_height_ratio`: the highest counts in one band over those in another;
- :func:`peak_position`: where a peak sits, eV, to a fraction of a channel.

Each takes one spectrum ``(n_channels,)`` or a stack ``(..., n_channels)`` (a line scan, a
spectrum image) and returns one value per spectrum; the checks they share (axis, bands, dead
channels) are :mod:`agents.spectrum_checks`. :mod:`agents.scalarizers` names them with specs
(``band:20:30``...).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .spectrum_checks import (
    Band,
    _check_axis,
    _check_band,
    _check_spectrum,
    _scalar_or_array,
    band_slice,
)

__all__ = ["band_intensity", "peak_height_ratio", "peak_position"]


def band_intensity(spectrum: Any, energy_axis: Any, start: float, stop: float) -> Any:
    """Intensity integrated over an energy band (counts x eV).

    The spectrum is taken as piecewise linear between channels and integrated exactly from
    ``start`` to ``stop``, so partial channels at the band edges count in proportion and the
    result does not jump when the band moves by less than a channel.

    Args:
        spectrum: counts, ``(n_channels,)`` or a stack ``(..., n_channels)``.
        energy_axis: channel energies in eV, ``(n_channels,)``.
        start, stop: band limits in eV, inside the axis.

    Returns:
        A float for one spectrum, an array of shape ``spectrum.shape[:-1]`` for a stack.

    Example:
        >>> e = np.linspace(0, 100, 1001)
        >>> band_intensity(np.ones_like(e), e, 20, 30)
        10.0
    """
    axis = _check_axis(energy_axis)
    spec = _check_spectrum(spectrum, axis)
    start, stop = _check_band((start, stop), axis)
    start, stop = max(start, axis[0]), min(stop, axis[-1])
    inside = (axis > start) & (axis < stop)
    knots = np.concatenate([[start], axis[inside], [stop]])
    # linear interpolation at the band ends, vectorised over the stack
    values = np.concatenate(
        [
            _interp_last(spec, axis, start)[..., None],
            spec[..., inside],
            _interp_last(spec, axis, stop)[..., None],
        ],
        axis=-1,
    )
    widths = np.diff(knots)
    total = np.sum(0.5 * (values[..., 1:] + values[..., :-1]) * widths, axis=-1)
    return _scalar_or_array(total)


def _interp_last(spec: np.ndarray, axis: np.ndarray, energy: float) -> np.ndarray:
    """Linear interpolation of every spectrum of a stack at one energy."""
    i = int(np.clip(np.searchsorted(axis, energy) - 1, 0, axis.size - 2))
    t = (energy - axis[i]) / (axis[i + 1] - axis[i])
    return (1.0 - t) * spec[..., i] + t * spec[..., i + 1]


def peak_height_ratio(spectrum: Any, energy_axis: Any, numerator: Band, denominator: Band) -> Any:
    """Ratio of the highest counts in two bands: ``max(numerator band) / max(denominator band)``.

    A peak at or below zero, in either band, has no meaningful ratio: that spectrum gets
    ``nan`` (an agent refuses non-finite values, so the plan reports it rather than learning
    from it). Counts at or below zero are not a peak: a dark reference over-subtracted, or no
    beam; a negative numerator over a positive denominator would turn the ratio's sign round.

    Example:
        >>> e = np.linspace(0, 100, 101)
        >>> s = np.where((e > 20) & (e < 30), 6.0, 1.0) + np.where(e > 60, 2.0, 0.0)
        >>> peak_height_ratio(s, e, (20, 30), (60, 70))
        2.0
    """
    axis = _check_axis(energy_axis)
    spec = _check_spectrum(spectrum, axis)
    top = spec[..., band_slice(axis, *_check_band(numerator, axis, "numerator band"))]
    bottom = spec[..., band_slice(axis, *_check_band(denominator, axis, "denominator band"))]
    num, den = top.max(axis=-1), bottom.max(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((den > 0) & (num > 0), num / np.where(den > 0, den, 1.0), np.nan)
    return _scalar_or_array(ratio)


def peak_position(
    spectrum: Any, energy_axis: Any, start: float, stop: float, method: str = "parabolic"
) -> Any:
    """Energy (eV) of the peak inside a band, to a fraction of a channel.

    Args:
        method: ``"parabolic"`` fits a parabola through the highest channel and its two
            neighbours (exact for a locally quadratic peak, good for sharp peaks);
            ``"centroid"`` is the intensity-weighted mean energy of the band above its lowest
            value (robust for broad, noisy peaks, but pulled by asymmetric tails).

    A band with no peak (every channel equal: no counts, a camera clipped across the whole
    band) has no position: that spectrum gets ``nan``, not the band's first channel.

    Example:
        >>> e = np.linspace(0, 40, 401)
        >>> s = np.exp(-0.5 * ((e - 15.03) / 1.5) ** 2)
        >>> round(peak_position(s, e, 10, 20), 2)
        15.03
    """
    axis = _check_axis(energy_axis)
    spec = _check_spectrum(spectrum, axis)
    band = band_slice(axis, start, stop)
    energies, counts = axis[band], spec[..., band]
    flat = counts.max(axis=-1) <= counts.min(axis=-1)
    if method == "centroid":
        weights = counts - counts.min(axis=-1, keepdims=True)
        total = weights.sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            centre = np.where(total > 0, (weights * energies).sum(axis=-1) / total, np.nan)
        return _scalar_or_array(np.where(flat, np.nan, centre))
    if method != "parabolic":
        raise ValueError(f"peak position method must be 'parabolic' or 'centroid', got {method!r}")
    if energies.size < 3:
        raise ValueError("a parabolic peak position needs at least 3 channels in the band")
    i = np.clip(np.argmax(counts, axis=-1), 1, energies.size - 2)
    left = np.take_along_axis(counts, (i - 1)[..., None], axis=-1)[..., 0]
    mid = np.take_along_axis(counts, i[..., None], axis=-1)[..., 0]
    right = np.take_along_axis(counts, (i + 1)[..., None], axis=-1)[..., 0]
    curvature = left - 2.0 * mid + right
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0)
    shift = np.clip(shift, -0.5, 0.5)
    # the axis may be non-uniform: interpolate the fractional index onto it
    centre = np.interp(i + shift, np.arange(energies.size), energies)
    return _scalar_or_array(np.where(flat, np.nan, centre))
