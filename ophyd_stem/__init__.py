"""ophyd-stem: a STEM with an EELS spectrometer as Ophyd devices, over the DM bridge."""

from ._version import __version__

__all__ = ["__version__"]
