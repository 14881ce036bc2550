"""Cosmic-ray spikes out of EELS spectra, before a scalarizer reads them.

A raw spectrum (a replayed spectrum image, a camera read without its own X-ray removal)
carries cosmic-ray and stray X-ray hits: one to three channels far above their neighbours,
at random energies. One spike in a band turns a dull place into the "best" one, and an agent
that maximises a scalar goes looking for spikes instead of the feature.

:func:`despike` is a Hampel filter: a channel is a spike when it lies more than
``threshold`` robust standard deviations *above* the median of the ``width`` channels around
it (the robust standard deviation is 1.4826 x their median absolute deviation); a spike is
replaced by that median. Only upward excursions count (a cosmic ray adds counts). Why this
rule and not a plain median filter: the deviation is measured against the neighbourhood's own
spread, so on a core-loss edge, where the spectrum itself changes fast, the bar rises with
it. On the shared real recordings (the LSMO/SrTiO3 line scan and the SrTiO3 spectrum, 1 eV
and 0.25 eV per channel) the defaults leave the Ti L2,3, O K, Mn L2,3 and La M4,5 edges
untouched, including the Ti L3 t2g peak one channel wide (``tests/agents/dkl/
test_despike.py`` checks it), and remove injected one-to-three-channel spikes.

Use it through a scalarizer spec (``despike:band:20:30``, see :mod:`agents.scalarizers`), so
the run records that its values were despiked, or call it directly.
"""

from __future__ import annotations

from typing import Any, Tuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["DEFAULT_THRESHOLD", "DEFAULT_WIDTH", "despike", "find_spikes"]

#: channels in the neighbourhood (odd): spikes up to ``width // 2`` channels wide are found
DEFAULT_WIDTH = 7
#: robust standard deviations above the neighbourhood's median that make a spike
DEFAULT_THRESHOLD = 6.0
#: 1 / Phi^-1(3/4): the median absolute deviation of a normal sample x this = its sigma
_MAD_TO_SIGMA = 1.4826


def _neighbourhood(spec: np.ndarray, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Median and robust standard deviation of the ``width`` channels around each channel.

    Spectra of whole numbers are counts: their spread is at least Poisson's,
    ``sqrt(max(median, 1))``. At a count or two per channel most neighbourhoods hold equal
    values, their median absolute deviation is 0, and every channel above the median was a
    "spike": 778 of 5,120 channels of the real line scan at ~1 count per channel.
    """
    half = width // 2
    windows = sliding_window_view(spec, width, axis=-1)
    median = np.median(windows, axis=-1)
    mad = np.median(np.abs(windows - median[..., None]), axis=-1)
    # the first and last channels are judged against the nearest whole window: a mirrored
    # window would make the first channel of a falling power law look like a peak
    ends = [(0, 0)] * (spec.ndim - 1) + [(half, half)]
    median, mad = np.pad(median, ends, mode="edge"), np.pad(mad, ends, mode="edge")
    # a perfectly flat neighbourhood has no spread: any count above it is an outlier, but
    # float round-off is not
    floor = 1e-9 * np.maximum(np.abs(median), 1e-300)
    if np.array_equal(spec, np.round(spec)):  # counts (NaN is not a whole number)
        floor = np.maximum(floor, np.sqrt(np.maximum(median, 1.0)))
    return median, np.maximum(_MAD_TO_SIGMA * mad, floor)


def _check(spectrum: Any, width: int, threshold: float) -> np.ndarray:
    spec = np.asarray(spectrum, dtype=np.float64)
    if spec.ndim == 0 or spec.shape[-1] < 3:
        raise ValueError(f"a spectrum needs at least 3 channels, got shape {spec.shape}")
    if int(width) != width or width < 3 or width % 2 == 0:
        raise ValueError(f"width must be an odd number of channels >= 3, got {width}")
    if width > spec.shape[-1]:
        raise ValueError(f"width {width} exceeds the {spec.shape[-1]} channels of the spectrum")
    if not (np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a number > 0 (robust sigmas), got {threshold}")
    return spec


def find_spikes(
    spectrum: Any, width: int = DEFAULT_WIDTH, threshold: float = DEFAULT_THRESHOLD
) -> np.ndarray:
    """Boolean mask of the spike channels of a spectrum or a stack ``(..., channels)``.

    Example:
        >>> s = np.ones(50); s[20] = 30.0
        >>> np.flatnonzero(find_spikes(s)).tolist()
        [20]
    """
    spec = _check(spectrum, width, threshold)
    median, sigma = _neighbourhood(spec, int(width))
    return (spec - median) > threshold * sigma


def despike(
    spectrum: Any, width: int = DEFAULT_WIDTH, threshold: float = DEFAULT_THRESHOLD
) -> np.ndarray:
    """The spectrum (or stack) with its spikes replaced by their neighbourhood's median.

    Args:
        spectrum: counts, ``(channels,)`` or ``(..., channels)``.
        width: odd number of channels in each neighbourhood; spikes up to ``width // 2``
            channels wide are removed.
        threshold: how many robust standard deviations above the neighbourhood's median
            make a spike (larger: fewer channels touched).

    Returns:
        A float64 copy; channels that are not spikes keep their values exactly.

    Example:
        >>> s = np.full(40, 10.0); s[12:14] += 50.0       # a two-channel spike
        >>> float(despike(s).max())
        10.0
    """
    spec = _check(spectrum, width, threshold)
    median, sigma = _neighbourhood(spec, int(width))
    spikes = (spec - median) > threshold * sigma
    return np.where(spikes, median, spec)
