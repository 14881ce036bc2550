"""Fixtures: the fake ``DigitalMicrograph`` module on ``sys.modules``, and a backend on it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from dm_bridge.backends.digitalmicrograph import DigitalMicrographBackend

FAKE_DIR = Path(__file__).resolve().parents[2] / "dm_fake"
#: the fake's files, each after those it imports (the module itself last)
FAKE_MODULES = ("_dmscript", "_dmobjects", "_dminstrument", "DigitalMicrograph")


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, FAKE_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dm() -> Iterator[Any]:
    """A fresh fake DigitalMicrograph (new microscope state) importable as the real one."""
    saved = {name: sys.modules.get(name) for name in FAKE_MODULES}
    for name in FAKE_MODULES[:-1]:  # its parts first: it imports them by name
        _load(name)
    module = _load("DigitalMicrograph")
    try:
        yield module
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


@pytest.fixture
def backend(dm: Any) -> Iterator[DigitalMicrographBackend]:
    """The DM backend, importing the fake exactly as it imports DM inside GMS."""
    instance = DigitalMicrographBackend(signals={"HAADF": 0, "BF": 1})
    try:
        yield instance
    finally:
        instance.close()
