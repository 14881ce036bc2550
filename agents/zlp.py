"""Zero-loss alignment: put every spectrum's zero-loss peak at 0 eV.

The first seed paper leaves "EELS alignment" to future work. On a real spectrometer the
energy scale jitters from spectrum to spectrum (high-tension ripple, stray fields) and walks
slowly (the high tension and the prism warm up), by tenths of an eV or more: enough to
smear a plasmon map or move a "peak position" scalar by more than the effect looked for.
In a low-loss spectrum the zero-loss peak (ZLP) is the built-in reference: locate it in each
spectrum to a fraction of a channel, and shift the spectrum so that it sits at 0 eV.

- :func:`locate_zero_loss`: the ZLP centre of each spectrum, eV: the brightest channel near
  0 eV, refined by a parabola through the logarithm of the three channels around it (exact
  for a Gaussian peak), or by the centroid of the channels above half maximum.
- :func:`shift_spectra`: spectra moved along the energy axis by a sub-channel amount
  (linear interpolation; counts outside the axis are dropped, and the channels that have
  no data are filled with the edge value).
- :class:`ZeroLossAligner`: both in one call, the alignment recorded (positions, shifts),
  and the spectrometer's slow walk followed batch by batch (:meth:`ZeroLossAligner.walk`).

The energy *axis* is re-centred in software (each spectrum shifted onto the nominal axis),
not the spectrometer's energy offset: the raw spectra stay in the run as measured, with the
ZLP position of each, so the alignment can be undone or redone.

All energies in eV; spectra are ``(..., channels)`` with one energy axis.

Example:
    >>> import numpy as np
    >>> from agents.zlp import ZeroLossAligner
    >>> axis = np.linspace(-5, 15, 201)                       # eV, 0.1 eV channels
    >>> peaks = np.array([[0.23], [-0.12]])                   # where each ZLP landed, eV
    >>> spectra = 1e4 * np.exp(-0.5 * ((axis - peaks) / 0.3) ** 2)
    >>> aligner = ZeroLossAligner()
    >>> aligned, zlp = aligner.align(spectra, axis)           # zlp: eV per spectrum
    >>> zlp.round(3).tolist(), round(aligner.walk(zlp), 3)   # and the batch's median, eV
    ([0.23, -0.12], 0.055)
    >>> axis[aligned.argmax(axis=1)].tolist()                 # both peaks now at 0 eV
    [0.0, 0.0]
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .spectrum_checks import MAX_DEAD_RUN, fill_dead_channels

log = logging.getLogger("agents.zlp")

__all__ = ["METHODS", "ZeroLossAligner", "is_low_loss", "locate_zero_loss", "shift_spectra"]

METHODS = ("log-parabola", "centroid")


def _axis(energy_axis: Any) -> np.ndarray:
    axis = np.asarray(energy_axis, dtype=np.float64)
    if axis.ndim != 1 or axis.size < 5 or not np.all(np.diff(axis) > 0):
        raise ValueError("energy axis must be 1-D, at least 5 channels, strictly increasing eV")
    return axis


def _without_dead_channels(flat: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Isolated NaN/inf channels filled from their neighbours (as the scalarizers do): one
    dead channel on the zero-loss peak made the whole spectrum's position NaN, and the
    spectrum was left unaligned."""
    if np.all(np.isfinite(flat)):
        return flat
    filled, n = fill_dead_channels(flat, axis)
    if n:
        log.warning(
            "zero-loss alignment: filled %d isolated dead channel(s) (NaN/inf, runs of at most "
            "%d) by interpolation between their neighbours before locating the peak",
            n,
            MAX_DEAD_RUN,
        )
    return filled


def is_low_loss(energy_axis: Any, margin: float = 1.0) -> bool:
    """True when the axis holds the zero-loss peak: 0 eV at least ``margin`` eV inside it."""
    axis = np.asarray(energy_axis, dtype=np.float64)
    return bool(axis.size and axis[0] <= -margin and axis[-1] >= margin)


def locate_zero_loss(
    spectra: Any, energy_axis: Any, search: float = 5.0, method: str = "log-parabola"
) -> np.ndarray:
    """The zero-loss peak's centre in each spectrum, eV (sub-channel).

    Args:
        spectra: ``(channels,)`` or ``(..., channels)`` counts.
        energy_axis: eV per channel.
        search: look for the peak within ``+-search`` eV of 0 (the ZLP is the brightest
            thing there; a bright plasmon further out is never taken for it).
        method: ``"log-parabola"`` or ``"centroid"``.

    Returns:
        ``(...)`` eV, one per spectrum (a float for one spectrum). NaN where the brightest
        channel of the window is its first or last and still rising outward (the axis's own
        end, or beyond ``+-search``): the peak lies outside what was searched, and its tail
        is not its centre. A saturated peak (a flat top of equal channels, the camera
        clipped) is placed at the middle of its flat top. An isolated dead channel (NaN/inf)
        is filled from its neighbours first (:func:`agents.spectrum_checks.fill_dead_channels`).

    Raises:
        ValueError: bad axis or method, 0 eV not on the axis, or a spectrum with no counts
            in the search window.
    """
    axis = _axis(energy_axis)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    spec = np.asarray(spectra, dtype=np.float64)
    if spec.shape[-1] != axis.size:
        raise ValueError(f"spectra have {spec.shape[-1]} channels, the axis {axis.size}")
    window = np.flatnonzero(np.abs(axis) <= search)
    if len(window) < 3:
        raise ValueError(
            f"0 eV +- {search} eV is not on the axis ({axis[0]:.2f} to {axis[-1]:.2f} eV): "
            "zero-loss alignment needs low-loss spectra"
        )
    flat = _without_dead_channels(spec.reshape(-1, axis.size), axis)
    part = flat[:, window]
    if np.any(part.max(axis=1) <= 0):
        raise ValueError("a spectrum has no counts near 0 eV: no zero-loss peak to align on")
    top = np.argmax(part, axis=1)
    peak = window[top]
    # the window's end channel and rising outward (or the axis ends there): not a peak
    first, last = window[0], window[-1]
    before = np.where(first > 0, flat[:, max(first - 1, 0)], np.inf)
    after = np.where(last < axis.size - 1, flat[:, min(last + 1, axis.size - 1)], np.inf)
    rows = np.arange(len(flat))
    outside = ((top == 0) & (before >= part[rows, 0])) | (
        (top == len(window) - 1) & (after >= part[rows, -1])
    )
    # a clipped (saturated) peak: several channels at the maximum; its centre is the middle
    plateau = _flat_top_centres(flat, peak, axis)
    peak = np.clip(peak, 1, axis.size - 2)
    step = axis[1] - axis[0]
    if method == "log-parabola":
        y = np.log(np.maximum(flat[rows[:, None], peak[:, None] + np.arange(-1, 2)], 1e-9))
        denom = y[:, 0] - 2 * y[:, 1] + y[:, 2]
        frac = np.where(denom < 0, 0.5 * (y[:, 0] - y[:, 2]) / np.where(denom < 0, denom, 1), 0)
        out = axis[peak] + np.clip(frac, -0.5, 0.5) * step
    else:
        out = np.empty(len(flat))
        for i, p in enumerate(peak):
            half = flat[i, p] / 2.0
            lo, hi = p, p
            while lo > 0 and flat[i, lo - 1] >= half:
                lo -= 1
            while hi < axis.size - 1 and flat[i, hi + 1] >= half:
                hi += 1
            w = flat[i, lo : hi + 1] - half
            out[i] = float(np.sum(w * axis[lo : hi + 1]) / np.sum(w)) if w.sum() > 0 else axis[p]
    out = np.where(np.isfinite(plateau), plateau, out)
    out = np.where(outside, np.nan, out)
    return out.reshape(spec.shape[:-1]) if spec.ndim > 1 else float(out[0])


def _flat_top_centres(flat: np.ndarray, peak: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """eV of the middle of each spectrum's run of channels equal to its peak channel, where
    that run is 3 channels or more (a detector clipped at its full scale); NaN elsewhere.
    The parabola through a flat top puts the centre at the run's first channel."""
    out = np.full(len(flat), np.nan)
    for i, p in enumerate(peak):
        row, top = flat[i], flat[i, p]
        lo, hi = p, p
        while lo > 0 and row[lo - 1] == top:
            lo -= 1
        while hi < axis.size - 1 and row[hi + 1] == top:
            hi += 1
        if hi - lo >= 2:
            out[i] = 0.5 * (axis[lo] + axis[hi])
    return out


def shift_spectra(spectra: Any, energy_axis: Any, shift: Any) -> np.ndarray:
    """Spectra moved along the energy axis by ``shift`` eV each (negative: to lower energy).

    The spectrum's feature at ``E`` comes to ``E + shift``, on the same axis (linear
    interpolation between channels); channels left without data take the nearest edge value.
    """
    axis = _axis(energy_axis)
    spec = np.asarray(spectra, dtype=np.float64)
    if spec.ndim == 0 or spec.shape[-1] != axis.size:
        raise ValueError(f"spectra have {spec.shape[-1:]} channels, the axis {axis.size}")
    flat = spec.reshape(-1, axis.size)
    shifts = np.broadcast_to(np.asarray(shift, dtype=np.float64), (len(flat),))
    out = np.empty_like(flat)
    for i, (row, s) in enumerate(zip(flat, shifts)):
        out[i] = np.interp(axis - s, axis, row)
    return out.reshape(spec.shape).astype(np.asarray(spectra).dtype, copy=False)


class ZeroLossAligner:
    """Align low-loss spectra on their zero-loss peak, and follow the spectrometer's walk.

    Args:
        method: ``"log-parabola"`` (default) or ``"centroid"`` (see :func:`locate_zero_loss`).
        search: half-width of the window around 0 eV the peak is looked for in, eV.
        max_shift: a ZLP found further than this from 0 eV is not trusted: that spectrum is
            left as it is and flagged (a vacuum-free thick area, a saturated camera).

    Example:
        >>> import numpy as np
        >>> axis = np.linspace(-5, 15, 201)                   # eV
        >>> spectrum = 1e4 * np.exp(-0.5 * ((axis - 0.4) / 0.3) ** 2)
        >>> aligned, zlp = ZeroLossAligner().align(spectrum[None], axis)
        >>> zlp.round(3).tolist()
        [0.4]
    """

    name = "zero_loss"

    def __init__(
        self,
        method: str = "log-parabola",
        search: float = 5.0,
        max_shift: float = 3.0,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if search <= 0 or max_shift <= 0:
            raise ValueError("search and max_shift must be > 0 eV")
        self.method = method
        self.search = float(search)
        self.max_shift = float(max_shift)
        self.n_aligned = 0
        self.n_untrusted = 0

    def align(self, spectra: Any, energy_axis: Any) -> Tuple[np.ndarray, np.ndarray]:
        """``(aligned spectra, ZLP positions eV)``: each spectrum shifted by ``-ZLP``.

        Spectra whose ZLP lies further than ``max_shift`` from 0 eV are returned unshifted;
        their position is still reported (for the record).
        """
        aligned, zlp, _ = self.align_with_shifts(spectra, energy_axis)
        return aligned, zlp

    def align_with_shifts(
        self, spectra: Any, energy_axis: Any
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(aligned spectra, ZLP positions eV, shifts applied eV)``.

        A spectrum without counts near 0 eV (the beam blanked, a hole in the camera's
        readout) has no peak to align on: its position is NaN and it is left unshifted, so
        one empty spectrum never stops an acquisition. An isolated dead channel (NaN/inf) is
        filled from its neighbours first (a warning on the ``agents.zlp`` logger), in the
        aligned spectra too; the raw spectra stay as measured.
        """
        axis = _axis(energy_axis)
        spec = np.asarray(spectra)
        if spec.ndim == 0 or spec.shape[-1] != axis.size:
            raise ValueError(f"spectra have {spec.shape[-1:]} channels, the axis {axis.size}")
        flat = spec.reshape(-1, axis.size)
        if not np.all(np.isfinite(flat)):
            flat = _without_dead_channels(flat.astype(np.float64), axis)
        window = np.abs(axis) <= self.search
        if np.count_nonzero(window) < 3:  # not a low-loss axis: say so as locate_zero_loss does
            locate_zero_loss(flat[:1], axis, self.search, self.method)
        has_peak = flat[:, window].max(axis=1) > 0
        zlp = np.full(len(flat), np.nan)
        if has_peak.any():
            zlp[has_peak] = np.atleast_1d(
                locate_zero_loss(flat[has_peak], axis, self.search, self.method)
            )
        trusted = np.isfinite(zlp) & (np.abs(np.nan_to_num(zlp)) <= self.max_shift)
        shifts = np.where(trusted, -np.nan_to_num(zlp), 0.0)
        aligned = shift_spectra(flat, axis, shifts)
        self.n_aligned += int(trusted.sum())
        self.n_untrusted += int((~trusted).sum())
        return (
            aligned.reshape(spec.shape),
            zlp.reshape(spec.shape[:-1]),
            shifts.reshape(spec.shape[:-1]),
        )

    def walk(self, zlp: Any) -> Optional[float]:
        """The median ZLP position of a batch, eV: how far the energy scale has walked (None
        when no position in it is trusted). Recorded with each batch, so a slow drift of the
        high tension shows as a trend in the run."""
        z = np.asarray(zlp, dtype=np.float64)
        z = z[np.isfinite(z) & (np.abs(z) <= self.max_shift)]
        return float(np.median(z)) if len(z) else None

    def config(self) -> Dict[str, Any]:
        return {
            "method": self.method,
            "search": self.search,
            "max_shift": self.max_shift,
        }

    def report(self) -> Dict[str, Any]:
        return {
            "agent": self.name,
            "config": self.config(),
            "aligned": self.n_aligned,
            "untrusted": self.n_untrusted,
        }
