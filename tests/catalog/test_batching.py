"""The writer batches by count and by time: a run is in the catalog while it is still open,
an event page is written as one page, and a busy catalog never builds a backlog of requests.
These also pin the private corner of bluesky-tiled-plugins that BatchingRunWriter uses."""

from __future__ import annotations

import time
import warnings

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import numpy as np
import pytest
from ophyd_async.core import init_devices

from ophyd_stem import Table
from ophyd_stem.catalog import RunInProgress, open_catalog
from ophyd_stem.catalog._batching import BatchingRunWriter
from ophyd_stem.catalog._runs import per_document_writer_factory

pytestmark = pytest.mark.slow


@pytest.fixture
def catalog(shared_server):
    client = open_catalog(shared_server.uri, shared_server.api_key)
    yield client
    client.context.close()


def rows_in_catalog(catalog, uid, stream="primary", key="eels-spectrum"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunInProgress)  # yes, it is still being written
        try:
            return catalog[uid][stream][key].shape[0]
        except KeyError:
            return 0


def open_run_uid(RE):
    return next(doc["uid"] for name, doc in reversed(RE.documents) if name == "start")


def wait_until(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


class CountingFactory:
    """Makes the writer under test and counts the write requests it sends to the catalog."""

    def __init__(self, make=BatchingRunWriter):
        self.make = make
        self.writes = 0

    def __call__(self, client):
        def count(request):
            if request.method in ("POST", "PUT", "PATCH"):
                self.writes += 1

        hooks = client.context.http_client.event_hooks
        if count not in hooks["request"]:
            hooks["request"] = [*hooks["request"], count]
        return self.make(client)


def test_an_open_run_is_in_the_catalog_before_its_stop(
    RE, devices, shared_server, settings, make_writer, catalog
):
    """Time-based: three events, far fewer than a batch, are written while the run is open."""
    _det, eels = devices
    writer = make_writer(
        shared_server.uri, shared_server.api_key, settings, batch_size=500, batch_seconds=0.3
    )
    RE.subscribe(writer)
    seen = {}

    @bpp.run_decorator(md={"sample": "open run"})
    def plan():
        for _ in range(3):
            yield from bps.trigger_and_read([eels])
        uid = open_run_uid(RE)
        wait_until(lambda: rows_in_catalog(catalog, uid) == 3)
        wait_until(lambda: writer.status().written_events == 3)  # and confirmed
        seen["stopped"] = bool(catalog[uid].metadata.get("stop"))

    (uid,) = RE(plan())
    assert seen == {"stopped": False}
    assert writer.flush(timeout=60)
    np.testing.assert_array_equal(
        catalog[uid]["primary"]["eels-spectrum"].read(), np.stack(eels.produced)
    )


def test_a_full_batch_is_written_without_waiting_for_the_clock(
    RE, devices, shared_server, settings, make_writer, catalog
):
    """Count-based: with a clock that never fires, every 4 events go as soon as they are 4."""
    _det, eels = devices
    writer = make_writer(
        shared_server.uri, shared_server.api_key, settings, batch_size=4, batch_seconds=3600
    )
    RE.subscribe(writer)

    @bpp.run_decorator()
    def plan():
        for _ in range(9):
            yield from bps.trigger_and_read([eels])
        uid = open_run_uid(RE)
        wait_until(lambda: rows_in_catalog(catalog, uid) == 8)
        wait_until(lambda: writer.status().written_events == 8)
        time.sleep(0.5)
        # the ninth waits for a fuller batch (or the stop)
        assert writer.status().written_events == 8
        assert rows_in_catalog(catalog, uid) == 8

    (uid,) = RE(plan())
    assert writer.flush(timeout=60)
    assert rows_in_catalog(catalog, uid) == 9


def test_an_event_page_stays_one_page(RE, shared_server, settings, make_writer, catalog):
    """A page of 120 rows is a handful of requests, not 120 (TiledWriter with batch_size=1),
    and reads back row for row."""
    with init_devices():
        atoms = Table("atoms")
    rows = np.arange(120, dtype=np.float64)

    def plan():
        @bpp.run_decorator()
        def inner():
            atoms.load(x=rows, y=2 * rows)
            yield from bps.collect(atoms)

        return (yield from inner())

    counts = {}
    for label, make in (("batching", BatchingRunWriter), ("per document", None)):
        factory = CountingFactory(make or per_document_writer_factory)
        writer = make_writer(
            shared_server.uri,
            shared_server.api_key,
            settings,
            writer_factory=factory,
            batch_size=1 if make is None else 500,
        )
        token = RE.subscribe(writer)
        (uid,) = RE(plan())
        assert writer.flush(timeout=120)
        RE.unsubscribe(token)
        writer.close()
        counts[label] = factory.writes
        np.testing.assert_array_equal(catalog[uid]["atoms"]["atoms-y"].read(), 2 * rows)
    assert counts["batching"] <= 8
    assert counts["per document"] >= 120


def test_a_run_read_while_it_is_written_says_so_and_reads_consistently(
    RE, devices, shared_server, settings, make_writer, catalog
):
    """Never silent: opening a stream of an open run warns; never a 500: an array described
    at N rows reads N rows after it has grown (a plain client asked for the whole array and
    the server, finding more, answered 500); run.wait() then gives the whole run."""
    _det, eels = devices
    writer = make_writer(
        shared_server.uri, shared_server.api_key, settings, batch_size=2, batch_seconds=3600
    )
    RE.subscribe(writer)
    seen = {}

    @bpp.run_decorator(md={"num_points": 6})
    def plan():
        uid = open_run_uid(RE)
        wait_until(lambda: uid in catalog)  # its start document: no stream yet
        with pytest.raises(KeyError, match="no stream 'primary' yet: it is still being"):
            catalog[uid]["primary"]  # bluesky-tiled-plugins alone: a bare KeyError
        for _ in range(2):
            yield from bps.trigger_and_read([eels])
        wait_until(lambda: rows_in_catalog(catalog, uid) == 2)
        run = catalog[uid]
        with pytest.warns(RunInProgress, match="no stop document yet.*6 points"):
            spectra = run["primary"]["eels-spectrum"]
        for _ in range(4):
            yield from bps.trigger_and_read([eels])
        wait_until(lambda: rows_in_catalog(catalog, uid) == 6)
        seen["described at 2"] = spectra.read().shape[0]
        seen["run"] = run

    RE(plan())
    assert seen["described at 2"] == 2
    run = seen["run"].wait(timeout=60)
    assert run.metadata["stop"]["exit_status"] == "success"
    with pytest.raises(KeyError, match="has no stream 'baseline'; its streams: primary"):
        run["baseline"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunInProgress)  # finished: no warning any more
        np.testing.assert_array_equal(
            run["primary"]["eels-spectrum"].read(), np.stack(eels.produced)
        )


def test_a_run_read_by_the_snapshot_clients_while_it_is_written(
    RE, devices, shared_server, settings, make_writer, catalog
):
    """``ophyd-stem show``'s light clients on an open run: opening a stream warns, every
    column of the stream holds the same events (a consistent snapshot, never a 500), and
    run.wait() then reads the whole run."""
    from agents.run_streams import streams_from_tiled

    _det, eels = devices
    writer = make_writer(
        shared_server.uri, shared_server.api_key, settings, batch_size=2, batch_seconds=3600
    )
    RE.subscribe(writer)
    light = open_catalog(shared_server.uri, shared_server.api_key, snapshot=True)
    seen = {}

    @bpp.run_decorator(md={"num_points": 6})
    def plan():
        uid = open_run_uid(RE)
        wait_until(lambda: uid in catalog)  # its start document: no stream yet
        with pytest.raises(KeyError, match="no stream 'primary' yet: it is still being"):
            light[uid]["primary"]
        for _ in range(2):
            yield from bps.trigger_and_read([eels])
        wait_until(lambda: rows_in_catalog(catalog, uid) == 2)
        run = light[uid]
        with pytest.warns(RunInProgress, match="no stop document yet.*6 points"):
            primary = run["primary"]
        for _ in range(4):
            yield from bps.trigger_and_read([eels])
        wait_until(lambda: rows_in_catalog(catalog, uid) == 6)
        seen["spectra"] = primary["eels-spectrum"].read()
        seen["times"] = primary["time"].read()  # a column of the event table
        seen["run"] = run

    try:
        RE(plan())
        assert seen["spectra"].shape[0] == seen["times"].shape[0] >= 2
        np.testing.assert_array_equal(
            seen["spectra"], np.stack(eels.produced)[: len(seen["spectra"])]
        )
        run = seen["run"].wait(timeout=60)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RunInProgress)  # finished: no warning any more
            _start, stop, streams = streams_from_tiled(run)
        assert stop["exit_status"] == "success"
        np.testing.assert_array_equal(
            streams["primary"].columns["eels-spectrum"], np.stack(eels.produced)
        )
        assert len(streams["primary"]) == 6
    finally:
        light.context.close()
