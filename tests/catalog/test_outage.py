"""The kill test: the catalog server is SIGKILLed mid-run. The run completes without waiting,
and every document and event reaches the catalog: the embedded catalog's writer starts the
server again itself, and a catalog that stays down until the session ends (a remote one) gets
the run through import_spool."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
import pytest

from ophyd_stem.catalog import (
    CatalogWriter,
    EmbeddedServer,
    import_spool,
    open_catalog,
    stop_server,
)
from ophyd_stem.catalog._runs import verify_run
from ophyd_stem.catalog.spool import spooled_runs

pytestmark = pytest.mark.slow

CHILD = Path(__file__).with_name("_outage_child.py")


@pytest.fixture(scope="module")
def outage_settings(tmp_path_factory, new_settings):
    return new_settings(tmp_path_factory.mktemp("outage"))


@pytest.fixture
def settings(outage_settings):
    """Detectors write under the outage catalog's assets directory."""
    return outage_settings


@pytest.fixture(scope="module")
def running_server(outage_settings):
    """Returns the data directory's server, starting it if it is down (after a kill)."""
    started = []

    def running() -> EmbeddedServer:
        server = EmbeddedServer.find(outage_settings)
        if server is None:
            server = EmbeddedServer.start(outage_settings, stop_at_exit=False)
            started.append(server)
        return server

    yield running
    for server in started:  # stops the live one, reaps the killed ones
        server.stop()
    stop_server(outage_settings)  # one the writer started


def wait_until(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def check_catalog(settings, uid, documents_expected, spectra, read_hdf5):
    catalog = open_catalog(settings=settings)
    try:
        run = catalog[uid]
        stop = run.metadata["stop"]
        n = stop["num_events"]["primary"]
        verify_run(catalog, uid, stop)  # every event once: seq_num 1..n, arrays of n rows
        np.testing.assert_array_equal(run["primary"]["eels-spectrum"].read(), spectra)
        replayed = list(run.documents())
        events = [doc for name, doc in replayed if name == "event"]
        assert [e["seq_num"] for e in events] == list(range(1, n + 1))
        (resource,) = [
            d for name, d in replayed if name == "stream_resource" and d["data_key"] == "det"
        ]
        frames = read_hdf5(resource["uri"], resource["parameters"]["dataset"])
        images = np.asarray(run["primary"]["det"].read())
        np.testing.assert_array_equal(images.reshape(frames.shape), frames)
        assert frames.shape[0] == n
    finally:
        catalog.context.close()
    assert spooled_runs(settings.spool_dir) == []


def test_killed_catalog_mid_run_loses_nothing(
    RE, devices, outage_settings, running_server, writers, read_hdf5
):
    det, eels = devices
    server = running_server()
    writer = CatalogWriter.to_embedded(outage_settings, retry_delay=(0.2, 1.0))
    writers.append(writer)
    RE.subscribe(writer)
    point = {"n": 0}

    def per_shot(detectors):
        point["n"] += 1
        if point["n"] == 3:
            # Kill it once it holds part of the run (start, descriptor, first points).
            wait_until(lambda: writer.status().written >= 4)
            os.kill(server.pid, signal.SIGKILL)
        yield from bps.trigger_and_read(detectors)

    (uid,) = RE(bp.count([det, eels], num=6, per_shot=per_shot), sample="kill test")

    # The run completed; the catalog died with documents still to write (the stop, at least).
    status = writer.status()
    assert RE.state == "idle"
    assert status.received == len(RE.documents)
    assert status.written < status.received
    assert uid in status.spooled_runs

    # The writer starts the embedded server again by itself and rewrites the run.
    assert writer.flush(timeout=180), writer.status()
    assert writer.status().written == len(RE.documents)
    restarted = EmbeddedServer.find(outage_settings)
    assert restarted is not None
    assert restarted.pid != server.pid
    check_catalog(outage_settings, uid, len(RE.documents), np.stack(eels.produced), read_hdf5)


def test_catalog_down_until_the_session_ends_then_import_spool(
    outage_settings, running_server, tmp_path, read_hdf5
):
    running_server()
    result = tmp_path / "result.npz"
    child = subprocess.run(
        [sys.executable, str(CHILD), str(outage_settings.data_dir), str(result)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stdout[-2000:] + child.stderr[-4000:]
    produced = np.load(result)
    info = json.loads(str(produced["info"]))

    # The session ended with the run in the spool, complete, and not all of it written.
    (spooled,) = spooled_runs(outage_settings.spool_dir)
    assert spooled.run_uid == info["uid"]
    assert spooled.complete
    assert spooled.documents == info["documents"] == info["received"]
    assert spooled.written < spooled.documents

    running_server()  # the catalog is back, the session is gone: import the spool
    report = import_spool(outage_settings)
    assert report.imported == [info["uid"]], str(report)
    assert not report.failed
    assert not report.incomplete
    assert not report.in_use
    check_catalog(outage_settings, info["uid"], info["documents"], produced["spectra"], read_hdf5)

    # Stopping forgets the server; what it wrote stays.
    server = EmbeddedServer.find(outage_settings)
    server.stop()
    assert EmbeddedServer.find(outage_settings) is None
    assert not (outage_settings.server_dir / "server.json").exists()
    assert outage_settings.catalog_db.exists()


def test_a_closing_writer_never_starts_its_embedded_server_again(tmp_path, new_settings):
    # at a queueserver process's end its writer is closed, then its server stopped: a writer
    # thread still connecting (its warm-up) must not start a server that outlives the process
    settings = new_settings(tmp_path / "closing")
    writer = CatalogWriter.to_embedded(settings)
    try:
        assert writer.close(timeout=30.0)
    finally:
        assert stop_server(settings)
    with pytest.raises(Exception, match="closing"):
        writer._uri()  # what the thread asks for when it (re)connects
    assert EmbeddedServer.find(settings) is None  # nothing started again


def test_every_server_this_process_started_is_stopped_with_it(tmp_path, new_settings, monkeypatch):
    # a health check that timed out on a busy machine makes the next start spawn a second
    # server for the same data directory: the process's end must stop both, not only the
    # handle its session kept (test_listing_the_profiles_plans_... found one left running)
    from ophyd_stem.app.session_base import _stop_servers_started_here

    settings = new_settings(tmp_path / "twice")
    first = EmbeddedServer.start(settings)
    with monkeypatch.context() as patch:
        patch.setattr(EmbeddedServer, "find", classmethod(lambda cls, settings=None: None))
        second = EmbeddedServer.start(settings)
    try:
        assert first.pid != second.pid
        assert {s.pid for s in EmbeddedServer.started_here(settings)} == {first.pid, second.pid}
        _stop_servers_started_here(first)
        assert EmbeddedServer.started_here(settings) == []
        assert EmbeddedServer.find(settings) is None
    finally:
        first.stop()
        second.stop()
