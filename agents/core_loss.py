"""Core-loss edge scalarizers: the edge above its power-law background (Egerton).

- :func:`edge_signal`: the counts above the extrapolated background over the post-edge
  window (counts x eV): what an elemental map shows;
- :func:`edge_jump_ratio`: the post-edge counts over that background (1 = no edge).

The background ``A * E**-r`` is fitted to the pre-edge window as a straight line in log-log,
by least squares. A channel at or below zero has no logarithm and is left out of the fit: a
dead channel reading 0, a dark-subtracted channel in the noise, an empty channel of a
low-dose spectrum. When more than half the pre-edge window is at or below zero (no beam,
a dark reference over-subtracted, far too few counts), there is no background to fit: that
spectrum's value is NaN (the agents do not learn from it), said in a warning on the
``agents.scalarizers`` logger.

Each takes one spectrum or a stack ``(..., n_channels)``; the checks they share are
:mod:`agents.spectrum_checks`; :mod:`agents.scalarizers` names them with specs
(``edge:420:450:455:475``, ``jump:...``).
"""

from __future__ import annotations

import logging
from typing import Any, Tuple

import numpy as np

from .spectrum_checks import (
    Band,
    _check_axis,
    _check_band,
    _check_spectrum,
    _scalar_or_array,
    band_slice,
)

log = logging.getLogger("agents.scalarizers")

__all__ = ["edge_jump_ratio", "edge_signal"]


def _power_law_background(
    spec: np.ndarray, axis: np.ndarray, pre_edge: Band, post_edge: Band
) -> Tuple[slice, np.ndarray]:
    """Egerton's background: ``A * E**-r`` fitted to the pre-edge window (a straight line in
    log-log, least squares over its channels above zero), extrapolated under the post-edge
    window.

    Returns the post-edge channels and the background there, ``(..., n_post)``; NaN for a
    spectrum whose pre-edge window is more than half at or below zero (no background).
    """
    pre = band_slice(axis, *_check_band(pre_edge, axis, "pre-edge window"))
    post = band_slice(axis, *_check_band(post_edge, axis, "post-edge window"))
    if pre.stop - pre.start < 2:
        raise ValueError("the pre-edge window needs at least 2 channels for a power-law fit")
    if axis[pre.stop - 1] >= axis[post.start]:
        raise ValueError("the pre-edge window must end below the post-edge window")
    if axis[pre.start] <= 0:
        raise ValueError("a power-law background needs positive energies in the pre-edge window")
    log_e = np.log(axis[pre])
    counts = spec[..., pre]
    positive = counts > 0
    # a channel at or below zero is left out of the fit. Clipped to a tiny floor before the
    # log, as it was, one dead channel reading 0 dragged the fit by decades: on the real
    # LSMO/SrTiO3 line scan the Mn map came out on the SrTiO3 side. (Not weighted by the
    # counts: weights from the noisy counts themselves bias the background up, the jump down)
    weights = positive.astype(np.float64)
    log_c = np.log(np.where(positive, counts, 1.0))
    fitted = 2 * positive.sum(axis=-1) > positive.shape[-1]
    total = np.where(fitted, weights.sum(axis=-1), 1.0)
    mean_e = (weights * log_e).sum(axis=-1) / total
    mean_c = (weights * log_c).sum(axis=-1) / total
    de = log_e - mean_e[..., None]
    spread = np.where(fitted, (weights * de * de).sum(axis=-1), 1.0)
    slope = (weights * de * (log_c - mean_c[..., None])).sum(axis=-1) / spread
    intercept = mean_c - slope * mean_e
    with np.errstate(over="ignore"):
        background = np.exp(intercept[..., None] + slope[..., None] * np.log(axis[post]))
    background = np.where(fitted[..., None], background, np.nan)
    _say_unfitted(int(np.size(fitted) - np.count_nonzero(fitted)), int(np.size(fitted)), pre_edge)
    return post, background


#: the pre-edge window last said to have no background (not said again for every spectrum)
_last_unfitted: Any = None


def _say_unfitted(missing: int, total: int, pre_edge: Band) -> None:
    global _last_unfitted
    if not missing:
        return
    window = tuple(float(v) for v in pre_edge)
    level = logging.DEBUG if window == _last_unfitted else logging.WARNING
    _last_unfitted = window
    log.log(
        level,
        "%d of %d spectra have counts at or below zero in more than half the pre-edge window "
        "%g-%g eV (no beam, a dark reference over-subtracted, or too few counts): no power-law "
        "background to subtract, their edge value is NaN and not learned from (said once "
        "while the same window has none)",
        missing,
        total,
        *window,
    )


def edge_jump_ratio(spectrum: Any, energy_axis: Any, pre_edge: Band, post_edge: Band) -> Any:
    """Core-loss edge jump ratio: post-edge counts over the extrapolated background.

    Egerton's recipe: fit a power law ``A * E**-r`` to the pre-edge window (a straight line in
    log-log, least squares), extrapolate it under the post-edge window, and divide the counts
    there by the background: ``sum(counts) / sum(A * E**-r)`` over the post-edge channels.
    A ratio of 1 means no edge. Pre-edge channels at or below zero are left out of the fit;
    a spectrum without a background (see the module's notes) or without counts after the
    edge gets ``nan``.

    Args:
        pre_edge: ``(start, stop)`` eV of the background window, below the edge onset.
        post_edge: ``(start, stop)`` eV of the window above the edge onset.

    Example:
        >>> e = np.linspace(300, 600, 601)
        >>> s = 1e9 * e**-3.0 * np.where(e >= 450, 2.0, 1.0)
        >>> round(edge_jump_ratio(s, e, (350, 440), (460, 500)), 6)
        2.0
    """
    axis = _check_axis(energy_axis)
    spec = _check_spectrum(spectrum, axis)
    post, background = _power_law_background(spec, axis, pre_edge, post_edge)
    after = spec[..., post].sum(axis=-1)
    # no counts after the edge: no ratio (a negative one would say "less than no edge")
    ratio = np.where(after > 0, after / background.sum(axis=-1), np.nan)
    return _scalar_or_array(ratio)


def edge_signal(spectrum: Any, energy_axis: Any, pre_edge: Band, post_edge: Band) -> Any:
    """Core-loss edge signal: counts above the extrapolated power-law background (counts x eV).

    The quantity of an elemental map: the background ``A * E**-r`` is fitted to the pre-edge
    window and extrapolated (as in :func:`edge_jump_ratio`); what lies above it is integrated
    over the post-edge window, channel by channel times the channel width. Zero means no edge;
    unlike the jump ratio it grows with the amount of the element under the beam, so "90 %
    of the strongest signal" means 90 % of the element, not of element plus background.

    Example:
        >>> e = np.linspace(300, 600, 601)             # 0.5 eV channels
        >>> s = 1e9 * e**-3.0 + np.where(e >= 450, 10.0, 0.0)
        >>> round(edge_signal(s, e, (350, 440), (460, 500)), 6)   # 10 counts x 40.5 eV
        405.0
    """
    axis = _check_axis(energy_axis)
    spec = _check_spectrum(spectrum, axis)
    post, background = _power_law_background(spec, axis, pre_edge, post_edge)
    widths = np.gradient(axis)[post]
    signal = ((spec[..., post] - background) * widths).sum(axis=-1)
    return _scalar_or_array(signal)
