"""The writer against a real Tiled server subprocess and a real RunEngine: data lands, can be
searched and replayed, and the RunEngine never waits on the catalog."""

from __future__ import annotations

import json
import threading

import bluesky.plans as bp
import numpy as np
import pytest
from bluesky_tiled_plugins.queries import ScanID
from ophyd_async.core import init_devices
from ophyd_async.sim import SimMotor
from tiled.queries import FullText, Key

from ophyd_stem.catalog import get_run, open_catalog, recent_runs
from ophyd_stem.catalog._runs import default_writer_factory
from ophyd_stem.catalog.spool import spooled_runs

pytestmark = pytest.mark.slow


@pytest.fixture
def catalog(shared_server):
    client = open_catalog(shared_server.uri, shared_server.api_key)
    yield client
    client.context.close()


@pytest.fixture
def writer(shared_server, settings, make_writer):
    writer = make_writer(shared_server.uri, shared_server.api_key, settings)
    return writer


@pytest.fixture
def motor(RE):
    with init_devices():
        stage_x = SimMotor()
    return stage_x


def _json(value):
    """A document as it looks after a trip through JSON (arrays as lists, tuples as lists)."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist()))


def assert_run_matches(run, documents, det, spectra_made, read_hdf5):
    """Images equal the detector's HDF5 frames, spectra equal what the spectrometer made."""
    resources = {doc["data_key"]: doc for name, doc in documents if name == "stream_resource"}
    stop = next(doc for name, doc in documents if name == "stop")
    n = stop["num_events"]["primary"]
    frames = read_hdf5(resources[det.name]["uri"], resources[det.name]["parameters"]["dataset"])
    images = run["primary"][det.name].read()
    assert images.shape[0] == n == frames.shape[0]
    np.testing.assert_array_equal(np.asarray(images).reshape(frames.shape), frames)
    spectra = run["primary"]["eels-spectrum"].read()
    np.testing.assert_array_equal(spectra, np.stack(spectra_made))
    assert run.metadata["stop"]["exit_status"] == "success"


def test_count_and_scan_land_in_the_catalog(RE, devices, motor, writer, catalog, read_hdf5):
    det, eels = devices
    RE.subscribe(writer)
    (count_uid,) = RE(bp.count([det, eels], num=4), sample="gold", operator="pytest")
    count_docs = list(RE.documents)
    RE.documents.clear()
    (scan_uid,) = RE(bp.scan([det, eels], motor, -1.0, 1.0, 5), sample="gold")
    scan_docs = list(RE.documents)
    assert writer.flush(timeout=60)

    status = writer.status()
    assert status.received == len(count_docs) + len(scan_docs)
    assert status.written == status.received
    assert status.queued == 0
    assert status.last_error is None
    assert spooled_runs(writer.settings.spool_dir) == []  # written runs leave no spool

    run = catalog[count_uid]
    assert run.metadata["start"]["operator"] == "pytest"
    assert_run_matches(run, count_docs, det, eels.produced[:4], read_hdf5)
    run = catalog[scan_uid]
    assert_run_matches(run, scan_docs, det, eels.produced[4:], read_hdf5)
    positions = run["primary"][motor.name].read()
    np.testing.assert_allclose(positions, np.linspace(-1.0, 1.0, 5))


def test_search_by_sample_scan_id_and_text(RE, devices, writer, catalog):
    _det, eels = devices
    RE.subscribe(writer)
    (gold,) = RE(bp.count([eels], num=1), sample="gold-on-carbon")
    (boron,) = RE(bp.count([eels], num=1), sample="boron nitride flake")
    assert writer.flush(timeout=60)
    boron_scan_id = catalog[boron].metadata["start"]["scan_id"]

    assert list(catalog.search(Key("sample") == "gold-on-carbon")) == [gold]
    assert list(catalog.search(Key("sample") == "boron nitride flake")) == [boron]
    assert boron in list(catalog.search(ScanID(boron_scan_id)))
    assert gold not in list(catalog.search(ScanID(boron_scan_id)))
    assert list(catalog.search(FullText("nitride"))) == [boron]


def test_documents_replay_the_run(RE, devices, writer, catalog):
    det, eels = devices
    RE.subscribe(writer)
    (uid,) = RE(bp.count([det, eels], num=3), sample="replay")
    original = _json(RE.documents)
    assert writer.flush(timeout=60)

    replayed = _json(list(catalog[uid].documents()))
    by_name = lambda docs, name: [doc for n, doc in docs if n == name]  # noqa: E731
    assert by_name(replayed, "start") == by_name(original, "start")
    assert by_name(replayed, "stop") == by_name(original, "stop")
    (desc_o,), (desc_r,) = by_name(original, "descriptor"), by_name(replayed, "descriptor")
    assert desc_r["uid"] == desc_o["uid"]
    assert desc_r["name"] == desc_o["name"]
    assert desc_r["data_keys"].keys() == desc_o["data_keys"].keys()
    assert desc_r["configuration"] == desc_o["configuration"]
    # Events: same points, same times, same inline data (the spectra), in order.
    events = lambda docs: [(e["seq_num"], e["time"], e["data"]) for e in by_name(docs, "event")]  # noqa: E731
    assert events(replayed) == events(original)
    # External data: the same files and datasets, covering the same frames per data key.
    files = lambda docs: {  # noqa: E731
        r["data_key"]: (r["uri"], r["parameters"]["dataset"])
        for r in by_name(docs, "stream_resource")
    }
    assert files(replayed) == files(original)

    def frames(docs):
        key_of = {r["uid"]: r["data_key"] for r in by_name(docs, "stream_resource")}
        covered: dict = {}
        for datum in by_name(docs, "stream_datum"):
            start, stop = datum["indices"]["start"], datum["indices"]["stop"]
            covered.setdefault(key_of[datum["stream_resource"]], set()).update(range(start, stop))
        return covered

    assert (
        frames(replayed) == frames(original) == {det.name: {0, 1, 2}, f"{det.name}-sum": {0, 1, 2}}
    )


def test_the_run_engine_never_waits_for_the_catalog(
    RE, devices, settings, shared_server, make_writer, catalog
):
    """A stalled catalog writer: the run finishes while not one document has been written."""
    det, eels = devices
    release = threading.Event()

    def stalled_factory(client):
        tiled_writer = default_writer_factory(client)

        def write(name, doc):
            release.wait()  # the catalog is stuck until the test lets it go
            tiled_writer(name, doc)

        return write

    writer = make_writer(
        shared_server.uri, shared_server.api_key, settings, writer_factory=stalled_factory
    )
    RE.subscribe(writer)
    (uid,) = RE(bp.count([det, eels], num=5), sample="stalled")
    # The RunEngine is done; the writer has not finished a single document.
    status = writer.status()
    assert RE.state == "idle"
    assert status.received == len(RE.documents)
    assert status.written == 0
    assert status.queued == status.received
    assert uid in status.spooled_runs
    release.set()
    assert writer.flush(timeout=60)
    assert writer.status().written == len(RE.documents)
    np.testing.assert_array_equal(
        catalog[uid]["primary"]["eels-spectrum"].read(), np.stack(eels.produced)
    )


def test_recent_runs_and_get_run(RE, devices, writer, catalog):
    _det, eels = devices
    RE.subscribe(writer)
    uids = [RE(bp.count([eels], num=n), sample=f"s{n}")[0] for n in (1, 2)]
    assert writer.flush(timeout=60)

    summaries = recent_runs(catalog, 2)
    assert [s.uid for s in summaries] == uids[::-1]  # newest first
    assert [s.sample for s in summaries] == ["s2", "s1"]
    assert [s.num_events for s in summaries] == [2, 1]
    assert all(s.plan_name == "count" and s.exit_status == "success" for s in summaries)

    scan_id = summaries[0].scan_id
    assert get_run(catalog, uids[0][:8]).metadata["start"]["uid"] == uids[0]
    assert get_run(catalog, str(scan_id)).metadata["start"]["uid"] == uids[1]
    assert get_run(catalog, -1).metadata["start"]["uid"] == uids[1]
    with pytest.raises(KeyError, match="no run with uid"):
        get_run(catalog, "fffffffff")
    with pytest.raises(KeyError, match="scan_id"):
        get_run(catalog, 10_000)


def test_batched_writing_lands_the_same_data(
    RE, devices, shared_server, settings, make_writer, catalog, read_hdf5
):
    """batch_size > 1: fewer requests; the run is confirmed once its stop document is written."""
    det, eels = devices
    writer = make_writer(shared_server.uri, shared_server.api_key, settings, batch_size=3)
    RE.subscribe(writer)
    (uid,) = RE(bp.count([det, eels], num=7), sample="batched")
    assert writer.flush(timeout=60)
    assert writer.status().written == len(RE.documents)
    assert_run_matches(catalog[uid], RE.documents, det, eels.produced, read_hdf5)
    with pytest.raises(ValueError, match="batch_size"):
        make_writer(shared_server.uri, shared_server.api_key, settings, batch_size=0)


EXIT_RIGHT_AFTER_A_RUN = """
import sys
import bluesky.plans as bp
from bluesky import RunEngine
from ophyd.sim import det
from ophyd_stem.catalog import CatalogSettings, CatalogWriter

uri, key, data_dir = sys.argv[1:4]
writer = CatalogWriter(uri, key, settings=CatalogSettings(data_dir))
RE = RunEngine()
RE.subscribe(writer)
RE(bp.count([det]))  # a session's earlier run: the writer is connected
assert writer.flush(60)
(uid,) = RE(bp.count([det], num=3))
print(uid)
# and the session ends at once, as `ophyd-stem console -- -c '...'` or `exit` does
"""


def test_a_session_that_exits_right_after_a_run_still_stores_it(shared_server, settings):
    """The writer flushed at exit after concurrent.futures had stopped its executors, so
    the last documents failed ('cannot schedule new futures after interpreter shutdown')
    and the run stayed in the spool: it is flushed before they stop."""
    import subprocess
    import sys

    child = subprocess.run(
        [sys.executable, "-c", EXIT_RIGHT_AFTER_A_RUN, shared_server.uri,
         shared_server.api_key, str(settings.data_dir)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-3000:]
    uid = child.stdout.strip().splitlines()[-1]
    assert "cannot schedule new futures" not in child.stderr, child.stderr[-3000:]
    assert uid not in {run.run_uid for run in spooled_runs(settings.spool_dir)}
    catalog = open_catalog(shared_server.uri, shared_server.api_key)
    try:
        run = catalog[uid]
        assert run.metadata["stop"]["exit_status"] == "success"
        assert run.metadata["stop"]["num_events"] == {"primary": 3}
    finally:
        catalog.context.close()
