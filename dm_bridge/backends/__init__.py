"""Instruments behind the bridge, loaded by name and lazily.

Like Tiled's adapters, a backend's module is imported only when asked for, so starting the
server for DigitalMicrograph never imports the twin's scipy, and the twin never imports
``DigitalMicrograph``.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, Tuple

from .base import (
    Backend,
    EELSParameters,
    ImageAcquisition,
    Limits,
    ScanParameters,
    SpectrumAcquisition,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "EELSParameters",
    "ImageAcquisition",
    "Limits",
    "ScanParameters",
    "SpectrumAcquisition",
    "load_backend",
]

#: backend name -> (module, class); the module is imported on first use
BACKENDS: Dict[str, Tuple[str, str]] = {
    "minimal": ("dm_bridge.backends.minimal", "MinimalBackend"),
    "twin": ("dm_bridge.backends.twin", "TwinBackend"),
    "replay": ("dm_bridge.backends.replay", "ReplayBackend"),
    "dm": ("dm_bridge.backends.digitalmicrograph", "DigitalMicrographBackend"),
    "pyro": ("dm_bridge.backends.pyro", "PyroArrayServerBackend"),
}


def load_backend(name: str, **options: Any) -> Backend:
    """Create the backend called ``name`` with its options.

    Raises:
        ValueError: unknown name.
        ImportError: the backend's dependencies are missing (the message says which extra
            to install).
    """
    try:
        module_name, class_name = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}") from None
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    return cls(**options)
