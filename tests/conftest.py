"""Shared fixtures. Tests read real microscope data from ../shared/data (never copied)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bluesky import RunEngine
from event_model import DocumentNames, schema_validators

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real data sets; skips (with the reason) when it is not beside the repo."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def RE():
    """A real RunEngine whose every document is validated against event-model's schemas;
    the documents are kept in ``RE.documents`` as ``(name, doc)``."""
    engine = RunEngine({})
    engine.documents = []

    def validate(name, doc):
        schema_validators[DocumentNames(name)].validate(doc)
        engine.documents.append((name, doc))

    engine.subscribe(validate)
    yield engine
    if engine.state != "idle":
        engine.halt()
