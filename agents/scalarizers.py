"""Scalarizers: one EELS spectrum (and its energy axis) in, one number out.

An adaptive plan can only optimise a scalar, so the microscopist says what "interesting" means
with a scalarizer: the intensity in a plasmon band, the ratio of two peaks, where a peak sits,
the jump of a core-loss edge. Each one here is a small named function of
``(spectrum, energy_axis)``; every one also takes a *stack* of spectra ``(..., n_channels)``
and returns one value per spectrum.

Energies are in eV. The energy axis is 1-D, strictly increasing, one value per channel (the
bridge's ``energy_axis(eels_parameters)``). Bands are ``(start, stop)`` in eV and must lie
inside the axis: a band outside it is a mistake in the experiment set-up, so it raises a
``ValueError`` that names both ranges instead of quietly returning zero.

The command line and the console name a scalarizer with a short spec, ``name:arg:arg...``:

======================================  ==================================================
``band:20:30``                          intensity integrated over 20-30 eV
``ratio:20:30:40:50``                   peak height in 20-30 eV / peak height in 40-50 eV
``peak:12:18`` (``peak:12:18:centroid``)  peak position in 12-18 eV (parabolic or centroid)
``jump:400:450:460:500``                edge jump ratio, pre-edge 400-450, post-edge 460-500
``edge:400:450:460:500``                edge signal above the power-law background, 460-500
``despike:<any spec>``                  the same, read after cosmic-ray spikes are removed
======================================  ==================================================

Raw spectra carry cosmic-ray spikes; ``despike:`` in front of any spec runs
:func:`agents.despike.despike` (a Hampel filter) on each spectrum first. The spec, and so the
run's record of its scalarizer, then says the values were despiked.

A camera's dead channel (NaN or inf, on its own) would make every spectrum's number
undefined; an isolated run of at most :data:`MAX_DEAD_RUN` such channels, with at least
:data:`GOOD_AROUND` good channels on each side, is filled by linear interpolation along the
energy axis first (:func:`fill_dead_channels`; how many, in a warning on the
``agents.scalarizers`` logger). Longer runs, or dead channels close together (a band mostly
undefined), are left undefined: that spectrum's number is NaN, which the agents skip.

Writing your own: any function ``f(spectrum, energy_axis) -> float`` works where a scalarizer
is expected; register a factory to make it available by name::

    >>> def max_counts(low, high):
    ...     def scalarize(spectrum, energy):
    ...         return np.asarray(spectrum)[..., band_slice(energy, low, high)].max(axis=-1)
    ...     return scalarize
    >>> register_scalarizer("max", max_counts)
    >>> f = get_scalarizer("max:20:30")
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Dict, Tuple, Union

import numpy as np

from .despike import despike

log = logging.getLogger("agents.scalarizers")

#: at most this many undefined channels in a row are filled (a dead channel or two)
MAX_DEAD_RUN = 2
#: ... and only with this many defined channels on each side (no band mostly undefined)
GOOD_AROUND = 3
__all__ = [
    "SCALARIZERS",
    "Scalarizer",
    "band_intensity",
    "band_slice",
    "edge_jump_ratio",
    "edge_signal",
    "fill_dead_channels",
    "get_scalarizer",
    "peak_height_ratio",
    "peak_position",
    "register_scalarizer",
]

#: ``f(spectrum, energy_axis) -> float`` (or one value per spectrum for a stack)
Scalarizer = Callable[[Any, Any], Union[float, np.ndarray]]

Band = Tuple[float, float]


# ------------------------------------------------------------------ validation helpers


def _check_axis(energy_axis: Any) -> np.ndarray:
    axis = np.asarray(energy_axis, dtype=np.float64)
    if axis.ndim != 1 or axis.size < 2:
        raise ValueError(f"energy axis must be 1-D with at least 2 channels, got {axis.shape}")
    if not np.all(np.isfinite(axis)) or not np.all(np.diff(axis) > 0):
        raise ValueError("energy axis must be finite and strictly increasing (eV per channel)")
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


# ------------------------------------------------------------------ the scalarizers


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

    A denominator peak at or below zero has no meaningful ratio: that spectrum gets ``nan``
    (an agent refuses non-finite values, so the plan reports it rather than learning from it).

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
        ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
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
    if method == "centroid":
        weights = counts - counts.min(axis=-1, keepdims=True)
        total = weights.sum(axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            centre = np.where(total > 0, (weights * energies).sum(axis=-1) / total, np.nan)
        return _scalar_or_array(centre)
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
    return _scalar_or_array(centre)


def _power_law_background(
    spec: np.ndarray, axis: np.ndarray, pre_edge: Band, post_edge: Band
) -> Tuple[slice, np.ndarray]:
    """Egerton's background: ``A * E**-r`` fitted to the pre-edge window (a straight line in
    log-log, least squares), extrapolated under the post-edge window.

    Returns the post-edge channels and the background there, ``(..., n_post)``.
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
    floor = 1e-12 * max(float(np.max(np.abs(counts))), 1e-300)
    log_c = np.log(np.maximum(counts, floor))
    # vectorised least squares of log_c = log_a - r * log_e for every spectrum of the stack
    de = log_e - log_e.mean()
    slope = ((log_c - log_c.mean(axis=-1, keepdims=True)) * de).sum(axis=-1) / (de @ de)
    intercept = log_c.mean(axis=-1) - slope * log_e.mean()
    background = np.exp(intercept[..., None] + slope[..., None] * np.log(axis[post]))
    return post, background


def edge_jump_ratio(spectrum: Any, energy_axis: Any, pre_edge: Band, post_edge: Band) -> Any:
    """Core-loss edge jump ratio: post-edge counts over the extrapolated background.

    Egerton's recipe: fit a power law ``A * E**-r`` to the pre-edge window (a straight line in
    log-log, least squares), extrapolate it under the post-edge window, and divide the counts
    there by the background: ``sum(counts) / sum(A * E**-r)`` over the post-edge channels.
    A ratio of 1 means no edge. Pre-edge counts at or below zero (noise in a dark window) are
    clipped to a small positive floor before the logarithm.

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
    ratio = spec[..., post].sum(axis=-1) / background.sum(axis=-1)
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


# ------------------------------------------------------------------ registry

#: name -> factory(*numbers, [word]) returning ``f(spectrum, energy_axis)``
SCALARIZERS: Dict[str, Callable[..., Scalarizer]] = {}


def register_scalarizer(name: str, factory: Callable[..., Scalarizer]) -> None:
    """Make a scalarizer available by name to :func:`get_scalarizer` (and the command line).

    Args:
        name: the spec's first word, e.g. ``"band"``; letters, digits and ``_`` only.
        factory: called with the spec's remaining fields (numbers as floats, words as str);
            returns ``f(spectrum, energy_axis)``.
    """
    if not name.replace("_", "").isalnum():
        raise ValueError(f"scalarizer name must be letters, digits or '_', got {name!r}")
    SCALARIZERS[name] = factory


def _numbers(name: str, fields: Tuple[Any, ...], count: int) -> Tuple[float, ...]:
    if len(fields) != count or not all(isinstance(f, float) for f in fields):
        raise ValueError(f"{name} needs {count} energies in eV, got {list(fields)}")
    return tuple(fields)


def _label(func: Any, spec: str, units: str) -> Scalarizer:
    # a partial takes attributes: the spec becomes the name the run records, and the units
    # of its values go into the run's description of them ("" is dimensionless)
    func.__name__ = spec
    func.units = units
    return func


def _band(*fields: Any) -> Scalarizer:
    start, stop = _numbers("band", fields, 2)
    return _label(
        functools.partial(band_intensity, start=start, stop=stop),
        f"band:{start:g}:{stop:g}",
        "counts",
    )


def _ratio(*fields: Any) -> Scalarizer:
    a, b, c, d = _numbers("ratio", fields, 4)
    return _label(
        functools.partial(peak_height_ratio, numerator=(a, b), denominator=(c, d)),
        f"ratio:{a:g}:{b:g}:{c:g}:{d:g}",
        "",
    )


def _peak(*fields: Any) -> Scalarizer:
    method = "parabolic"
    if fields and isinstance(fields[-1], str):
        *rest, method = fields
        fields = tuple(rest)
        if method not in ("parabolic", "centroid"):
            raise ValueError(f"peak method must be 'parabolic' or 'centroid', got {method!r}")
    start, stop = _numbers("peak", fields, 2)
    suffix = "" if method == "parabolic" else f":{method}"
    return _label(
        functools.partial(peak_position, start=start, stop=stop, method=method),
        f"peak:{start:g}:{stop:g}{suffix}",
        "eV",
    )


def _jump(*fields: Any) -> Scalarizer:
    a, b, c, d = _numbers("jump", fields, 4)
    return _label(
        functools.partial(edge_jump_ratio, pre_edge=(a, b), post_edge=(c, d)),
        f"jump:{a:g}:{b:g}:{c:g}:{d:g}",
        "",
    )


def _edge(*fields: Any) -> Scalarizer:
    a, b, c, d = _numbers("edge", fields, 4)
    return _label(
        functools.partial(edge_signal, pre_edge=(a, b), post_edge=(c, d)),
        f"edge:{a:g}:{b:g}:{c:g}:{d:g}",
        "counts",
    )


_BUILT_IN = {"band": _band, "ratio": _ratio, "peak": _peak, "jump": _jump, "edge": _edge}
for _name, _factory in _BUILT_IN.items():
    register_scalarizer(_name, _factory)

#: the spec prefix that despikes each spectrum before the scalarizer reads it
DESPIKE = "despike"


def _despiked(inner: Scalarizer, name: str) -> Scalarizer:
    def scalarize(spectrum: Any, energy_axis: Any) -> Any:
        return inner(despike(spectrum), energy_axis)

    scalarize.__name__ = name
    if hasattr(inner, "units"):  # despiking changes no units
        scalarize.units = inner.units  # type: ignore[attr-defined]
    return scalarize


def _field(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def get_scalarizer(spec: Union[str, Scalarizer]) -> Scalarizer:
    """A scalarizer from a spec such as ``"band:20:30"``, or a callable passed through.

    The fields after the name are energies in eV (and, for ``peak``, an optional method).
    ``despike:`` in front of a spec removes cosmic-ray spikes from each spectrum first
    (:func:`agents.despike.despike`). The function returned carries the spec as its
    ``__name__`` and the units of its values as ``units`` (counts, eV, or "" for ratios), so
    runs can record both.

    Raises:
        ValueError: unknown name or wrong number of fields, with the known names listed.

    Example:
        >>> f = get_scalarizer("band:20:30")
        >>> f.__name__
        'band:20:30'
        >>> get_scalarizer("despike:jump:400:450:460:500").__name__
        'despike:jump:400:450:460:500'
    """
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"scalarizer spec must be a non-empty string, got {spec!r}")
    name, *fields = spec.strip().split(":")
    if name == DESPIKE:
        if not fields or fields[0] == DESPIKE:
            raise ValueError(
                f"scalarizer spec {spec!r}: give the scalarizer to despike, e.g. despike:band:20:30"
            )
        inner = get_scalarizer(":".join(fields))
        return _despiked(inner, f"{DESPIKE}:{inner.__name__}")
    try:
        factory = SCALARIZERS[name]
    except KeyError:
        known = ", ".join(sorted([*SCALARIZERS, DESPIKE]))
        raise ValueError(f"unknown scalarizer {name!r} in {spec!r}; known: {known}") from None
    try:
        return factory(*(_field(f) for f in fields))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"scalarizer spec {spec!r}: {exc}; examples: band:20:30, ratio:20:30:40:50, "
            "peak:12:18[:centroid], jump:400:450:460:500, edge:400:450:460:500, "
            "despike:band:20:30"
        ) from None
