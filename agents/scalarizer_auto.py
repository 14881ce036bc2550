"""The ``auto`` scalarizer: what a spectrum is worth, chosen from the first spectra seen.

An agent's default must work on whatever spectrometer window the instrument (or a
recording) has. ``band:20:30`` (the plasmon band, the agents' historic default) means
nothing to a core-loss window such as 395-906 eV, where it raised an error at the first
spectrum. ``auto`` looks at the energy axis and the first spectra it is given, and becomes:

* ``band:20:30`` when the window covers 20-30 eV (low loss: the plasmon band, as before);
* else ``edge:...`` around the strongest core-loss edge of the first spectra: the onset
  where the counts rise furthest above the power-law background extrapolated from below it
  (Egerton's background, as :func:`agents.scalarizers.edge_signal` fits it); its value is
  the edge's signal above that background, i.e. an elemental map of that edge;
* else (no edge stands out of the noise) ``band:<window>``, the counts of the whole window.

The choice is made once, logged (``agents.scalarizer_auto``, INFO) and kept: every later
spectrum is worth the same thing. :attr:`AutoScalarizer.resolved` is the spec it chose, so
a run can record it; replaying the same spectra chooses the same.

    >>> import numpy as np
    >>> e = np.linspace(395.0, 906.0, 512)
    >>> s = 1e9 * e**-3.0 * np.where(e >= 532.0, 1.6, 1.0)       # an O K-like edge
    >>> f = get_scalarizer("auto")
    >>> value = f(s, e)
    >>> f.resolved.startswith("edge:") and 510 < strongest_edge(s, e) < 545
    True
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np

from .despike import despike
from .scalarizers import get_scalarizer, register_scalarizer

__all__ = [
    "LOW_LOSS_BAND",
    "AutoScalarizer",
    "plasmon_band",
    "scalarizer_from_spec",
    "strongest_edge",
]

log = logging.getLogger("agents.scalarizer_auto")

#: eV: the band ``auto`` chooses when the window covers it (the plasmon region)
LOW_LOSS_BAND = (20.0, 30.0)
#: an edge must lift the counts this much above the background, on average over its
#: post-edge window (0.05: 5 %), and stand this many noise widths out ...
_MIN_RELATIVE_JUMP = 0.05
_MIN_SNR = 8.0
#: eV of each window around an onset (at least 5 channels, at most a tenth of the window)
_WINDOW_EV = 30.0
#: eV of the short windows whose step finds the onset
_STEP_EV = 5.0
#: least eV above zero for a power-law background (the zero-loss peak is not an edge)
_CORE_LOSS_FROM = 50.0


def plasmon_band(first_ev: float, last_ev: float) -> Optional[str]:
    """``"band:20:30"`` (:data:`LOW_LOSS_BAND`) when a spectrometer window from ``first_ev``
    to ``last_ev`` (eV, either way round) covers it, else None: ``auto``'s first rule, also
    applied before a run where the window is known."""
    low, high = LOW_LOSS_BAND
    if min(first_ev, last_ev) <= low and max(first_ev, last_ev) >= high:
        return f"band:{low:g}:{high:g}"
    return None


def _windows(axis: np.ndarray) -> tuple[float, float]:
    """(width, gap) in eV of the pre- and post-edge windows for this axis."""
    step = float(np.median(np.diff(axis)))
    span = float(axis[-1] - axis[0])
    width = float(np.clip(_WINDOW_EV, 5 * step, max(span / 10, 5 * step)))
    gap = max(2 * step, 1.0)
    return width, gap


def strongest_edge(spectra: Any, energy_axis: Any) -> Optional[float]:
    """The onset energy (eV) of the strongest core-loss edge in the spectra's mean, or None.

    An edge is a step up: at its onset the counts rise, where the background (a power law
    ``A * E**-r``, its exponent fitted to the whole window in log-log) only falls. For each
    channel the mean counts of a short window (about 5 eV) just above it are compared with
    those just below, over what the power law alone would give; the onset is the largest
    such step that stands :data:`_MIN_SNR` robust spreads of all the steps out of them and
    lifts the counts by at least :data:`_MIN_RELATIVE_JUMP`, then the first step of its group
    (no other within 30 eV below it: L3 before L2, M5 before M4). (A fit of the background to a
    window below each onset was tried first: on a white line's falling tail it
    extrapolates a background that drops too fast and finds an "edge" in the tail.) Spikes
    are removed and dead channels (NaN) interpolated first; energies below 50 eV (the
    zero-loss peak, plasmons) are never an onset.

    Args:
        spectra: counts, one spectrum ``(channels,)`` or a stack ``(..., channels)``.
        energy_axis: eV per channel, increasing.
    """
    axis = np.asarray(energy_axis, dtype=float)
    counts = np.asarray(spectra, dtype=float).reshape(-1, axis.size)
    with np.errstate(all="ignore"):
        mean = np.nanmean(np.where(np.isfinite(counts), counts, np.nan), axis=0)
    good = np.isfinite(mean)
    if good.sum() < 20 or axis.size < 20:
        return None
    mean = despike(np.interp(axis, axis[good], mean[good]))
    positive = (axis > _CORE_LOSS_FROM) & (mean > 0)
    if positive.sum() < 20:
        return None
    slope = np.polyfit(np.log(axis[positive]), np.log(mean[positive]), 1)[0]
    step = float(np.median(np.diff(axis)))
    n = max(3, round(_STEP_EV / step))  # channels in each short window
    total = np.concatenate([[0.0], np.cumsum(mean)])
    centre = np.arange(n, axis.size - n)  # the first channel above each candidate onset
    below = (total[centre] - total[centre - n]) / n
    above = (total[centre + n] - total[centre]) / n
    expected = (axis[centre + n // 2] / axis[centre - 1 - n // 2]) ** slope
    with np.errstate(all="ignore"):
        rise = np.where(below > 0, above / (below * expected) - 1.0, np.nan)
    usable = np.isfinite(rise) & (axis[centre] > max(axis[0], _CORE_LOSS_FROM))
    if usable.sum() < 10:
        return None
    rise, onsets = rise[usable], axis[centre][usable]
    spread = 1.4826 * float(np.median(np.abs(rise - np.median(rise))))
    significant = rise >= max(_MIN_RELATIVE_JUMP, _MIN_SNR * spread)
    if not significant.any():
        return None
    onset = float(onsets[int(np.argmax(rise))])
    # Edges come in groups (L3 and L2, M5 and M4, a white line and its continuum): the group
    # starts at its first step, and a window below that holds background alone.
    while True:
        earlier = significant & (onsets < onset) & (onsets >= onset - _WINDOW_EV)
        if not earlier.any():
            return onset
        onset = float(onsets[earlier][0])


class AutoScalarizer:
    """The ``auto`` scalarizer (see the module): on its first call it chooses a scalarizer
    for the energy axis and the spectra it is given, then applies that one, always."""

    units = "counts"

    def __init__(self, despiked: bool = False) -> None:
        #: cosmic-ray spikes are removed from each spectrum first (:func:`agents.despike.despike`)
        self.despiked = despiked
        #: the spec a run records: "auto" (the same spectra choose the same again)
        self.__name__ = "despike:auto" if despiked else "auto"
        #: the spec chosen (None until the first call)
        self.resolved: Optional[str] = None
        self._inner: Any = None

    def choose(self, spectra: Any, energy_axis: Any) -> str:
        """The spec for these spectra and axis (see the module for the rules)."""
        return self._choice(spectra, energy_axis)[0]

    @staticmethod
    def _choice(spectra: Any, energy_axis: Any) -> tuple[str, str]:
        """The spec, and which rule chose it (for the log)."""
        axis = np.asarray(energy_axis, dtype=float)
        if axis.ndim != 1 or axis.size < 2:
            raise ValueError(f"energy axis must be 1-D with at least 2 channels, got {axis.shape}")
        band = plasmon_band(axis[0], axis[-1])
        if band is not None:
            return band, "the window covers the plasmon band"
        onset = strongest_edge(spectra, axis)
        if onset is not None:
            width, gap = _windows(axis)
            return (
                f"edge:{onset - gap - width:.4g}:{onset - gap:.4g}:"
                f"{onset + gap:.4g}:{onset + gap + width:.4g}",
                "the strongest edge of the first spectra",
            )
        return (
            f"band:{axis[0]:.6g}:{axis[-1]:.6g}",
            "no edge stands out of the noise: the whole window's counts",
        )

    def __call__(self, spectrum: Any, energy_axis: Any) -> Any:
        if self.despiked:
            spectrum = despike(spectrum)
        if self._inner is None:
            spec, why = self._choice(spectrum, energy_axis)
            axis = np.asarray(energy_axis, dtype=float)
            log.info(
                "scalarizer auto: %s for the window %.4g-%.4g eV (%s)",
                spec,
                axis[0],
                axis[-1],
                why,
            )
            self._inner = get_scalarizer(spec)
            self.resolved = f"despike:{spec}" if self.despiked else spec
        return self._inner(spectrum, energy_axis)


def scalarizer_from_spec(spec: str) -> Any:
    """:func:`agents.scalarizers.get_scalarizer`, but ``auto`` and ``despike:auto`` as an
    :class:`AutoScalarizer` itself (whose :attr:`~AutoScalarizer.resolved` then says what
    it chose; ``get_scalarizer("despike:auto")`` wraps it in a function that does not)."""
    if spec.strip() in ("auto", "despike:auto"):
        return AutoScalarizer(despiked=spec.strip() == "despike:auto")
    return get_scalarizer(spec)


def _auto(*fields: Any) -> AutoScalarizer:
    if fields:
        raise ValueError(f"auto takes no fields, got {list(fields)}")
    return AutoScalarizer()


register_scalarizer("auto", _auto)
