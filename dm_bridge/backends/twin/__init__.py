"""The digital twin: a simulated STEM-EELS instrument whose samples have known truth.

Four samples from the project's papers (graphene with Si dopants, SrTiO3 [001], a GaAs
nanowire with its Au cap, Au/Ag particles on lacey carbon), HAADF images with shot and
scan noise, drift and beam damage, position-dependent EELS with plural scattering, the real
instrument's timing, and ground truth kept apart (``get_truth``). See ``docs/twin.md``.

Example:
    >>> from dm_bridge.backends.twin import TwinBackend
    >>> twin = TwinBackend("srtio3", seed=3)
    >>> twin.acquire_image().images["HAADF"].dtype
    dtype('float32')
"""

from __future__ import annotations

from .backend import TwinBackend
from .geometry import DriftModel, ScanFrame
from .imaging import NoiseModel, noise_model_for_level
from .samples import SAMPLES, Sample, make_sample
from .timing import TimingModel

__all__ = [
    "SAMPLES",
    "DriftModel",
    "NoiseModel",
    "Sample",
    "ScanFrame",
    "TimingModel",
    "TwinBackend",
    "make_sample",
    "noise_model_for_level",
]
