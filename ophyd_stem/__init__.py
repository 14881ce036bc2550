"""ophyd-stem: a STEM with an EELS spectrometer as Ophyd devices, over the DM bridge.

>>> from ophyd_stem import Microscope
>>> from ophyd_stem.sim import twin_microscope

The devices are imported when first used (``ophyd_stem.Microscope`` imports bluesky and
ophyd-async), so that ``ophyd_stem.catalog`` and the ``ophyd-stem`` command start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from ._bridge import AsyncBridge, BridgeHandle, BridgeParameterBackend
    from ._calibration import energy_axis_from_configuration
    from ._eels import EELSCamera, EELSPoints
    from ._microscope import Microscope, assets_path_provider
    from ._records import Record, Table
    from ._scan_engine import ScanEngine
    from ._stem import STEM, Beam, BeamAxis

#: public name -> the private module that defines it
_WHERE = {
    "AsyncBridge": "._bridge",
    "BridgeHandle": "._bridge",
    "BridgeParameterBackend": "._bridge",
    "EELSCamera": "._eels",
    "EELSPoints": "._eels",
    "energy_axis_from_configuration": "._calibration",
    "Microscope": "._microscope",
    "assets_path_provider": "._microscope",
    "Record": "._records",
    "Table": "._records",
    "ScanEngine": "._scan_engine",
    "STEM": "._stem",
    "Beam": "._stem",
    "BeamAxis": "._stem",
}

__all__ = [
    "STEM",
    "AsyncBridge",
    "Beam",
    "BeamAxis",
    "BridgeHandle",
    "BridgeParameterBackend",
    "EELSCamera",
    "EELSPoints",
    "Microscope",
    "Record",
    "ScanEngine",
    "Table",
    "__version__",
    "assets_path_provider",
    "energy_axis_from_configuration",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ophyd_stem' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
