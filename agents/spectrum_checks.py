"""What every scalarizer checks first: the energy axis, the spectrum, the bands, and the
camera's dead channels.

Energies are in eV. The energy axis is 1-D, strictly increasing, one value per channel (the
bridge's ``energy_axis(eels_parameters)``). Bands are ``(start, stop)`` in eV and must lie
inside the axis: a band outside it is a mistake in the experiment set-up, so it raises a
``ValueError`` that names both ranges instead of quietly returning zero.

A camera's dead channel (NaN or inf, on its own) would make every spectrum's number
undefined; an isolated run of at most :data:`MAX_DEAD_RUN` such channels, with at least
:data:`GOOD_AROUND` good channels on each side, is filled by linear interpolation along the
energy axis first (:func:`fill_dead_channels`; how many, in a warning on the
``agents.scalarizers`` logger). Longer runs, or dead channels close together (a band mostly
undefined), are left undefined: that spectrum's number is NaN, which the agents skip.

The scalarizers themselves are :mod:`agents.band_scalars` (bands, peaks) and
:mod:`agents.core_loss` (edges over a power-law background); :mod:`agents.scalarizers`
names them with specs.
"""

from __future__ import annotations

import logging
from typing import Any, Tuple, Union

import numpy as np

# the scalarizers' logger: what is said about spectra is said where a user looks for it
log = logging.getLogger("agents.scalarizers")

__all__ = ["GOOD_AROUND", "MAX_DEAD_RUN", "Band", "band_slice", "fill_dead_channels"]

#: at most this many undefined channels in a row are filled (a dead channel or two)
MAX_DEAD_RUN = 2
#: ... and only with this many defined channels on each side (no band mostly undefined)
GOOD_AROUND = 3

Band = Tuple[float, float]


def _check_axis(energy_axis: Any) -> np.ndarray:
    axis = np.asarray(energy_axis, dtype=np.float64)
    if axis.ndim != 1 or axis.size < 2:
        raise ValueError(f"energy axis must be 1-D with at least 2 channels, got {axis.shape}")
    if not np.all(np.isfinite(axis)) or not np.all(np.diff(axis) > 0):
        raise ValueError(
            "energy axis must be finite and strictly increasing (eV per channel)"
            + (
                "; it decreases: give the channels in increasing energy "
                "(spectrum[..., ::-1] with axis[::-1])"
                if np.all(np.isfinite(axis)) and np.all(np.diff(axis) < 0)
                else ""
            )
        )
    return axis


def _check_spectrum(spectrum: Any, axis: np.ndarray) -> np.ndarray:
    spec = np.asarray(spectrum, dtype=np.float64)
    if spec.ndim == 0 or spec.shape[-1] != axis.size:
        raise ValueError(
            f"spectrum has {spec.shape[-1] if spec.ndim else 0} channels on its last axis "
            f"but the energy axis has {axis.size}"
        )
    if not np.all(np.isfinite(spec)):
        dead = frozenset(np.flatnonzero((~np.isfinite(spec.reshape(-1, spec.shape[-1]))).any(0)))
        spec, filled = fill_dead_channels(spec, axis)
        if filled:
            # a camera's dead channel is dead in every spectrum of a run: said once for the
            # channels it is in, not once per spectrum (a line per point of a DKL run)
            global _last_dead
            level = logging.DEBUG if dead == _last_dead else logging.WARNING
            _last_dead = dead
            log.log(
                level,
                "filled %d isolated dead channel(s) (NaN/inf; channel(s) %s) by interpolation "
                "between their neighbours; longer or crowded runs are left undefined (said once "
                "while the same channels are dead)",
                filled,
                ", ".join(str(c) for c in sorted(dead)[:8]) + (" ..." if len(dead) > 8 else ""),
            )
    return spec


#: the channels last said to be dead (the warning is not repeated for the same ones)
_last_dead: frozenset = frozenset()


def fill_dead_channels(spectrum: Any, energy_axis: Any) -> Tuple[np.ndarray, int]:
    """Isolated undefined channels (NaN/inf) filled by linear interpolation along the axis.

    A run of at most :data:`MAX_DEAD_RUN` undefined channels with :data:`GOOD_AROUND`
    defined ones on each side is filled; anything else (a run at the axis' end, a longer
    run, dead channels close together) stays undefined.

    Args:
        spectrum: counts, ``(n_channels,)`` or a stack ``(..., n_channels)``.
        energy_axis: channel energies in eV, ``(n_channels,)``.

    Returns:
        ``(a float64 copy with the channels filled, how many were filled)``.

    Example:
        >>> filled, n = fill_dead_channels([1.0, 2, 3, np.nan, 5, 6, 7], np.arange(7.0))
        >>> float(filled[3]), n
        (4.0, 1)
    """
    axis = np.asarray(energy_axis, dtype=np.float64)
    spec = np.array(spectrum, dtype=np.float64)
    rows = spec.reshape(-1, spec.shape[-1])
    filled = 0
    for row in rows:
        good = np.isfinite(row)
        if good.all() or good.sum() < 2:
            continue
        # the runs of undefined channels, as [start, stop) pairs
        edges = np.diff(np.concatenate([[0], (~good).astype(np.int8), [0]]))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        fill = np.zeros(row.size, dtype=bool)
        for a, b in zip(starts, stops):
            if b - a > MAX_DEAD_RUN or a < GOOD_AROUND or b + GOOD_AROUND > row.size:
                continue
            if good[a - GOOD_AROUND : a].all() and good[b : b + GOOD_AROUND].all():
                fill[a:b] = True
        if fill.any():
            row[fill] = np.interp(axis[fill], axis[good], row[good])
            filled += int(fill.sum())
    return spec, filled


def _check_band(band: Any, axis: np.ndarray, what: str = "band") -> Band:
    try:
        start, stop = (float(v) for v in band)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be (start, stop) in eV, got {band!r}") from None
    if not (np.isfinite(start) and np.isfinite(stop)) or start >= stop:
        raise ValueError(f"{what} must have start < stop (eV), got {start:g}-{stop:g} eV")
    # half a channel of slack: a band given as the axis' own end points must be accepted
    half = 0.5 * float(np.min(np.diff(axis)))
    if start < axis[0] - half or stop > axis[-1] + half:
        raise ValueError(
            f"{what} {start:g}-{stop:g} eV lies outside the energy axis {axis[0]:g}-{axis[-1]:g} eV"
        )
    return start, stop


def band_slice(energy_axis: Any, start: float, stop: float) -> slice:
    """The channels whose energies lie in ``[start, stop]`` eV, as a slice.

    Raises:
        ValueError: the band is empty, reversed, outside the axis or holds no channel.

    Example:
        >>> band_slice(np.arange(10.0), 2, 4)
        slice(2, 5, None)
    """
    axis = _check_axis(energy_axis)
    start, stop = _check_band((start, stop), axis)
    lo = int(np.searchsorted(axis, start, side="left"))
    hi = int(np.searchsorted(axis, stop, side="right"))
    if hi <= lo:
        raise ValueError(
            f"band {start:g}-{stop:g} eV holds no channel of the energy axis "
            f"(channel width {axis[1] - axis[0]:g} eV)"
        )
    return slice(lo, hi)


def _scalar_or_array(values: np.ndarray) -> Union[float, np.ndarray]:
    return float(values) if np.ndim(values) == 0 else values
