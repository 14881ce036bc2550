"""Shared fixtures. Tests read real microscope data from ../shared/data (never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bluesky import RunEngine
from event_model import DocumentNames, schema_validators

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Embedded catalog servers outlive the command that starts them (they are reused); in tests
# they stop after five idle minutes at the latest, whatever happens to the test session.
os.environ.setdefault("OPHYD_STEM_CATALOG_IDLE", "300")


@pytest.fixture(scope="session", autouse=True)
def _no_catalog_server_left(tmp_path_factory):
    """At the end of the session, stop every embedded catalog server of a temporary data
    directory (a test that forgot to, or a command run by a test that was killed)."""
    yield
    from ophyd_stem.catalog import CatalogSettings, stop_server

    for state in tmp_path_factory.getbasetemp().glob("**/server/server.json"):
        stop_server(CatalogSettings(state.parent.parent), timeout=5.0)


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


@pytest.fixture(scope="session")
def dask_client():
    """A ``distributed.Client`` on a real 2-worker ``LocalCluster`` (processes, one thread
    each: ``agents.compute.local_cluster``), shared by the tests that fan work out; closed at
    the end."""
    from distributed import Client

    from agents.compute import local_cluster

    cluster = local_cluster(2)
    client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
