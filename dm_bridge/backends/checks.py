"""The checks of what a client asks a backend for, against the instrument's limits: scan and
EELS parameters (names, types, ranges, allowed values) and beam positions inside the scan
field. Once, for every backend: :class:`LimitChecks` is a base class of
:class:`dm_bridge.backends.base.Backend`, whose public methods call these before any
instrument call.

Conventions (ARCHITECTURE.md, "Coordinates and units"): beam positions in pixels of the
current scan field, ``x`` = column, ``y`` = row, ``(0, 0)`` the centre of the top-left pixel,
valid field ``-0.5 <= x <= width - 0.5`` (likewise ``y``); energies in eV, times in seconds,
lengths in nm.

Standard library and numpy only, Python 3.8 syntax: this module runs inside DigitalMicrograph.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import Any, Dict, Mapping, Tuple

import numpy as np

from ..errors import BadRequest, OutOfRange
from ..types import EELSParameters, Limits, ScanParameters

__all__ = ["LimitChecks"]


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise BadRequest(f"{name} must be an integer, got {value!r}")
    if isinstance(value, (float, np.floating)) and (
        not math.isfinite(value) or value != int(value)
    ):
        raise BadRequest(f"{name} must be an integer, got {value!r}")
    return int(value)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise BadRequest(f"{name} must be a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an integer beyond float64 (10**400)
        raise OutOfRange(f"{name} is far outside any limit") from None
    if not math.isfinite(value):
        raise BadRequest(f"{name} must be finite, got {value!r}")
    return value


def _in_range(name: str, value: float, lo: float, hi: float, unit: str = "") -> None:
    if not lo <= value <= hi:
        raise OutOfRange(
            f"{name} = {value:g}{unit} is outside the allowed range [{lo:g}, {hi:g}]{unit}"
        )


def _take_floats(
    changes: Mapping[str, Any],
    clean: Dict[str, Any],
    ranges: Tuple[Tuple[str, Tuple[float, float], str], ...],
) -> None:
    """Check each ``(name, (lo, hi), unit)`` present in ``changes``, in this order (the first
    bad one is the error reported), and put its value in ``clean``."""
    for name, (lo, hi), unit in ranges:
        if name in changes:
            value = _as_float(name, changes[name])
            _in_range(name, value, lo, hi, unit)
            clean[name] = value


class LimitChecks:
    """Checks of requested settings and positions (a base class of
    :class:`~dm_bridge.backends.base.Backend`, not used alone): the attributes below are the
    backend's."""

    limits: Limits
    _scan: ScanParameters
    _eels: EELSParameters

    def validate_scan_parameters(self, changes: Mapping[str, Any]) -> ScanParameters:
        """Merge ``changes`` into the current scan parameters, checking each one."""
        names = {f.name for f in fields(ScanParameters)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise BadRequest(f"unknown scan parameter(s) {unknown}; known: {sorted(names)}")
        lim = self.limits
        clean: Dict[str, Any] = {}
        for name in ("width", "height"):
            if name in changes:
                v = _as_int(name, changes[name])
                _in_range(name, v, lim.image_size[0], lim.image_size[1], " px")
                clean[name] = v
        _take_floats(
            changes,
            clean,
            (
                ("dwell_time", lim.dwell_time, " s"),
                ("rotation", lim.rotation, " deg"),
                ("field_of_view", lim.field_of_view, " nm"),
            ),
        )
        if "signals" in changes:
            sig = changes["signals"]
            if isinstance(sig, str):
                sig = [sig]
            if not isinstance(sig, (list, tuple)) or not sig:
                raise BadRequest("signals must be a non-empty list of detector names")
            for s in sig:
                if not isinstance(s, str):
                    raise BadRequest(f"signal names must be strings, got {s!r}")
                if s not in lim.signals:
                    raise OutOfRange(
                        f"signal {s!r} is not available; available: {list(lim.signals)}"
                    )
            if len(set(sig)) != len(sig):
                raise BadRequest(f"signals must not repeat: {list(sig)}")
            clean["signals"] = tuple(sig)
        return replace(self._scan, **clean)

    def check_position(self, x: Any, y: Any) -> Tuple[float, float]:
        """Validate a beam position against the current scan field."""
        if type(x) is not float or x - x != 0.0:  # (finite floats, the usual, need nothing)
            x = _as_float("x", x)
        if type(y) is not float or y - y != 0.0:
            y = _as_float("y", y)
        w, h = self._scan.width, self._scan.height
        if not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5):
            raise OutOfRange(
                f"beam position ({x:g}, {y:g}) is outside the scan field: "
                f"x in [-0.5, {w - 0.5:g}], y in [-0.5, {h - 0.5:g}] pixels"
            )
        return x, y

    def check_points(self, points: Any) -> np.ndarray:
        """Validate an ``(N, 2)`` array of ``(x, y)`` beam positions."""
        try:
            pts = np.asarray(points, dtype=np.float64)
        except (TypeError, ValueError):
            raise BadRequest("points must be an (N, 2) array of numbers") from None
        if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
            raise BadRequest(f"points must have shape (N, 2) with N >= 1, got {pts.shape}")
        if pts.shape[0] > self.limits.max_points:
            raise OutOfRange(
                f"{pts.shape[0]} points requested; at most {self.limits.max_points} per call"
            )
        if not np.all(np.isfinite(pts)):
            raise BadRequest("points must be finite")
        w, h = self._scan.width, self._scan.height
        outside = (
            (pts[:, 0] < -0.5) | (pts[:, 0] > w - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] > h - 0.5)
        )
        if outside.any():
            i = int(np.argmax(outside))
            raise OutOfRange(
                f"point {i} = ({pts[i, 0]:g}, {pts[i, 1]:g}) is outside the scan field "
                f"{w}x{h} pixels "
                f"({int(outside.sum())} of {len(pts)} points outside)"
            )
        return pts

    def validate_eels_parameters(self, changes: Mapping[str, Any]) -> EELSParameters:
        names = {f.name for f in fields(EELSParameters)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise BadRequest(f"unknown EELS parameter(s) {unknown}; known: {sorted(names)}")
        lim = self.limits
        clean: Dict[str, Any] = {}
        _take_floats(
            changes,
            clean,
            (
                ("exposure", (lim.min_exposure, lim.max_exposure), " s"),
                ("energy_offset", lim.energy_offset, " eV"),
                ("dispersion", lim.dispersion, " eV/channel"),
            ),
        )
        binning = self._eels.binning
        if "binning" in changes:
            binning = _as_int("binning", changes["binning"])
            if binning not in lim.binnings:
                raise OutOfRange(
                    f"binning {binning} is not available; choose one of {list(lim.binnings)}"
                )
            clean["binning"] = binning
        max_channels = lim.sensor_channels // binning
        if "channels" in changes:
            v = _as_int("channels", changes["channels"])
            _in_range("channels", v, 1, max_channels)
            clean["channels"] = v
        elif "binning" in changes:
            # A new binning with no explicit channel count reads out the whole sensor.
            clean["channels"] = max_channels
        return replace(self._eels, **clean)
