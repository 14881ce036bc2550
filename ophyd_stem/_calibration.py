"""Calibrations as runs record them, for readers: numpy only (a report or an export of a
run needs neither Bluesky nor the devices).

The one reader of the recorded EELS calibration: :mod:`agents.runs`, which unpacks runs for
the agents, reads it here too (the one import of ``ophyd_stem`` that the agents' layer rule
allows, docs/decisions/0015-one-calibration-reader.md), so keep this module numpy only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["energy_axis_from_configuration"]


def energy_axis_from_configuration(configuration: Mapping[str, Any]) -> np.ndarray | None:
    """The energy axis (eV per channel) from a run's EELS configuration values.

    Args:
        configuration: data keys to values, e.g. a descriptor's
            ``configuration["eels_points"]["data"]``: ``eels-energy_offset`` (eV),
            ``eels-dispersion`` (eV/channel), ``eels-binning``, ``eels-channels``: the axis is
            ``offset + i * dispersion * binning``. An older run's ``eels-energy_axis`` array
            is returned as it is.

    Returns:
        The axis, or None when the configuration lacks the calibration.

    Example:
        >>> energy_axis_from_configuration({"eels-energy_offset": -5.0,
        ...     "eels-dispersion": 0.25, "eels-binning": 2, "eels-channels": 3})
        array([-5. , -4.5, -4. ])
    """
    if configuration.get("eels-energy_axis") is not None:
        return np.asarray(configuration["eels-energy_axis"], dtype=np.float64)
    try:
        offset = float(configuration["eels-energy_offset"])
        binning = max(int(configuration.get("eels-binning", 1)), 1)
        width = float(configuration["eels-dispersion"]) * binning
        channels = int(configuration["eels-channels"])
    except (KeyError, TypeError, ValueError):
        return None
    return offset + width * np.arange(channels, dtype=np.float64)
