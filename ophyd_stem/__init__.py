"""ophyd-stem: a STEM with an EELS spectrometer as Ophyd devices, over the DM bridge.

>>> from ophyd_stem import Microscope
>>> from ophyd_stem.sim import twin_microscope
"""

from ._bridge import AsyncBridge, BridgeHandle, BridgeParameterBackend
from ._eels import EELSCamera, EELSPoints
from ._microscope import Microscope, assets_path_provider
from ._records import Record, Table
from ._scan_engine import ScanEngine
from ._stem import STEM, Beam, BeamAxis
from ._version import __version__

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
]
