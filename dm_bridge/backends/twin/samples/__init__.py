"""The twin's specimens, by name.

================  ===============================================================
name              what it is
================  ===============================================================
``graphene``      monolayer graphene with Si dopants, vacancies, holes (60 kV)
``srtio3``        SrTiO3 [001]: Sr, Ti–O and O columns (200 kV)
``nanowire``      GaAs nanowire with a Au catalyst cap and their interface
``nanoparticles`` Au spheres and Ag nanoplates on lacey carbon (DKL target)
================  ===============================================================
"""

from __future__ import annotations

from typing import Any, Dict, Type

import numpy as np

from .base import AtomicSample, Sample, SampleGrid
from .graphene import Graphene
from .nanoparticles import Nanoparticles
from .nanowire import Nanowire
from .srtio3 import SrTiO3

__all__ = [
    "SAMPLES",
    "AtomicSample",
    "Graphene",
    "Nanoparticles",
    "Nanowire",
    "Sample",
    "SampleGrid",
    "SrTiO3",
    "make_sample",
]

#: sample name -> class
SAMPLES: Dict[str, Type[Sample]] = {
    "graphene": Graphene,
    "srtio3": SrTiO3,
    "nanowire": Nanowire,
    "nanoparticles": Nanoparticles,
}


def make_sample(name: str, rng: np.random.Generator, **parameters: Any) -> Sample:
    """Build the sample called ``name`` with its parameters.

    Raises:
        ValueError: unknown name, unknown parameter, or a parameter out of range.

    Example:
        >>> s = make_sample("srtio3", np.random.default_rng(0), size=2.0)
        >>> s.name
        'srtio3'
    """
    try:
        cls = SAMPLES[name]
    except KeyError:
        raise ValueError(f"unknown sample {name!r}; choose one of {sorted(SAMPLES)}") from None
    try:
        return cls(rng, **parameters)
    except TypeError as exc:
        raise ValueError(f"bad parameters for sample {name!r}: {exc}") from None
