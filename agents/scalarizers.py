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
undefined), are left undefined: that spectrum's number is NaN, which the agents skip. So is
a number the spectrum cannot give: a ratio of peaks at or below zero, the position of a peak
in a flat band, an edge whose pre-edge window is mostly at or below zero (no power-law
background: no beam, or a dark reference over-subtracted; see :mod:`agents.core_loss`).

Where things are: this module names the scalarizers (specs, the registry);
:mod:`agents.band_scalars` holds the band and peak ones, :mod:`agents.core_loss` the edge
ones, :mod:`agents.spectrum_checks` what they all check first. Everything stays importable
from here.

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
from typing import Any, Callable, Dict, Tuple, Union

import numpy as np

from .band_scalars import band_intensity, peak_height_ratio, peak_position
from .core_loss import edge_jump_ratio, edge_signal
from .despike import despike
from .spectrum_checks import GOOD_AROUND, MAX_DEAD_RUN, band_slice, fill_dead_channels

__all__ = [
    "GOOD_AROUND",
    "MAX_DEAD_RUN",
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
