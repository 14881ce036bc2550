from __future__ import annotations

import importlib.util

import pytest
from bluesky import RunEngine
from event_model import DocumentNames, schema_validators


@pytest.fixture
def RE():
    """A real RunEngine whose every document is validated against event-model's schemas."""
    engine = RunEngine({})
    engine.documents = []

    def validate(name, doc):
        schema_validators[DocumentNames(name)].validate(doc)
        engine.documents.append((name, doc))

    engine.subscribe(validate)
    yield engine
    if engine.state != "idle":
        engine.halt()


def bridge_modes() -> list:
    """Bridge modes to test devices over: in-process always; a real loopback bridge (in a
    thread and in a subprocess) once the server exists."""
    modes = ["local"]
    ready = all(importlib.util.find_spec(m) for m in ("dm_bridge.server", "dm_bridge.client"))
    if ready:
        modes += ["thread", "subprocess"]
    return modes


def backend_name() -> str:
    """The twin when it is there, else the minimal backend."""
    return "twin" if importlib.util.find_spec("dm_bridge.backends.twin") else "minimal"
