"""Failures the writer must survive without losing or doubling data, and import_spool."""

from __future__ import annotations

import os

import bluesky.plans as bp
import httpx
import numpy as np
import pytest

from ophyd_stem.catalog import RunInProgress, import_spool, open_catalog
from ophyd_stem.catalog._runs import default_writer_factory, verify_run
from ophyd_stem.catalog.spool import RunSpool, spooled_runs

pytestmark = pytest.mark.slow


@pytest.fixture
def catalog(shared_server):
    client = open_catalog(shared_server.uri, shared_server.api_key)
    yield client
    client.context.close()


class FailingWriter:
    """The writer under test, raising ``error`` where ``should_fail(name, doc)`` says,
    optionally after the catalog took the document (a reply lost on the way back)."""

    def __init__(self, inner, should_fail, error, write_first):
        self.inner, self.should_fail, self.error, self.write_first = (
            inner, should_fail, error, write_first,
        )  # fmt: skip

    @property
    def pending(self):
        return self.inner.pending

    def flush(self):
        return self.inner.flush()

    def __call__(self, name, doc):
        if self.should_fail(name, doc):
            if self.write_first:
                self.inner(name, doc)
                self.inner.flush()
            raise self.error
        self.inner(name, doc)


def failing_factory(should_fail, error, write_first):
    made = []

    def factory(client):
        writer = FailingWriter(default_writer_factory(client), should_fail, error, write_first)
        made.append(writer)
        return writer

    factory.made = made
    return factory


def test_a_reply_lost_mid_run_is_rewritten_without_doubles(
    RE, devices, shared_server, settings, make_writer, catalog
):
    det, eels = devices
    failed = []

    def once_at_second_event(name, doc):
        if name == "event" and doc["seq_num"] == 2 and not failed:
            failed.append(doc["uid"])
            return True
        return False

    factory = failing_factory(once_at_second_event, httpx.ReadError("reply lost"), write_first=True)
    writer = make_writer(shared_server.uri, shared_server.api_key, settings, writer_factory=factory)
    RE.subscribe(writer)
    (uid,) = RE(bp.count([det, eels], num=4), sample="lost reply")
    assert writer.flush(timeout=60), writer.status()

    status = writer.status()
    assert failed
    assert len(factory.made) == 2
    assert "reply lost" in status.last_error
    assert status.written == status.received == len(RE.documents)
    run = catalog[uid]
    verify_run(catalog, uid, run.metadata["stop"])  # seq_num 1..4, each once
    np.testing.assert_array_equal(run["primary"]["eels-spectrum"].read(), np.stack(eels.produced))
    assert run["primary"][det.name].shape[0] == 4


def test_a_run_the_catalog_keeps_refusing_is_held_then_imported(
    RE, devices, shared_server, settings, make_writer, catalog
):
    det, eels = devices
    factory = failing_factory(lambda name, doc: name == "event", ValueError("bad document"), False)
    writer = make_writer(shared_server.uri, shared_server.api_key, settings, writer_factory=factory)
    RE.subscribe(writer)
    (uid,) = RE(bp.count([det, eels], num=3), sample="refused")

    assert not writer.flush(timeout=60)  # returns once the run is given up on
    status = writer.status()
    assert status.queued == 0
    assert status.held == status.received - status.written > 0
    assert uid in status.spooled_runs
    assert "bad document" in status.last_error
    writer.close()
    (spooled,) = [run for run in spooled_runs(settings.spool_dir) if run.run_uid == uid]
    assert spooled.complete
    assert spooled.documents == len(RE.documents)

    report = import_spool(settings, shared_server.uri, shared_server.api_key)
    assert uid in report.imported
    assert report.ok
    assert not report.failed
    run = catalog[uid]
    verify_run(catalog, uid, run.metadata["stop"])
    np.testing.assert_array_equal(run["primary"]["eels-spectrum"].read(), np.stack(eels.produced))
    assert uid not in [run.run_uid for run in spooled_runs(settings.spool_dir)]


def test_import_leaves_a_live_run_alone_and_writes_an_unfinished_one(
    RE, devices, shared_server, settings, catalog
):
    """A session killed after its third point left an unfinished run in the spool."""
    det, eels = devices
    (uid,) = RE(bp.count([det, eels], num=5), sample="killed session")
    third_event = [i for i, (name, _) in enumerate(RE.documents) if name == "event"][2]
    spool = RunSpool(settings.spool_dir, uid)
    for name, doc in RE.documents[: third_event + 1]:
        spool.append(name, doc)

    # While a session holds the run's spool, import leaves it alone.
    report = import_spool(settings, shared_server.uri, shared_server.api_key)
    assert uid in report.in_use
    assert uid not in report.imported
    spool.close()  # the session is gone

    report = import_spool(settings, shared_server.uri, shared_server.api_key)
    assert uid in report.imported
    assert uid in report.incomplete
    run = catalog[uid]
    assert "stop" not in run.metadata or not run.metadata["stop"]
    with pytest.warns(RunInProgress, match="no stop document"):  # and never will have
        spectra = run["primary"]["eels-spectrum"]
    np.testing.assert_array_equal(spectra.read(), np.stack(eels.produced[:3]))
    assert uid not in [run.run_uid for run in spooled_runs(settings.spool_dir)]


def test_recent_runs_says_which_runs_wait_in_the_spool(
    RE, devices, shared_server, settings, catalog
):
    """A run only the spool holds is listed as spooled with its count, never as running?;
    while a session holds its spool it is running; once imported, its exit status."""
    from ophyd_stem.catalog import recent_runs

    _det, eels = devices
    (uid,) = RE(bp.count([eels], num=2), sample="spooled only")
    spool = RunSpool(settings.spool_dir, uid)
    for name, doc in RE.documents:
        spool.append(name, doc)

    def state():
        (run,) = [r for r in recent_runs(catalog, 50, settings=settings) if r.uid == uid]
        return run

    run = state()
    assert run.state == f"running ({len(RE.documents)} documents waiting)"
    assert not run.in_catalog
    spool.close()
    run = state()
    assert run.state == f"spooled ({len(RE.documents)} documents waiting)"
    assert (run.sample, run.plan_name) == ("spooled only", "count")

    import_spool(settings, shared_server.uri, shared_server.api_key)
    run = state()
    assert (run.state, run.in_catalog, run.num_events) == ("success", True, 2)


def latent_layout(old):
    """A run as latent_eels records its decisions: today, one number per latent coordinate
    (``decision-z0``, ``decision-z1``); before 0ac4a45 (``old``), one 2-element array
    (``decision-z``)."""
    import bluesky.preprocessors as bpp

    from ophyd_stem import Record
    from plans.stubs import record

    decisions = Record("decision", units={"x": "px", "y": "px"})

    @bpp.run_decorator(md={"plan_name": "latent_eels"})
    def inner():
        for step in (1, 2):
            z = np.array([0.5, -0.25 * step])
            latent = {"z": z} if old else {"z0": z[0], "z1": z[1]}
            yield from record(decisions, "decisions", step=step, x=3.0 * step, y=4.0, **latent)

    return inner()


def spool_documents(settings, documents, age=0.0):
    (uid,) = {doc["uid"] for name, doc in documents if name == "start"}
    spool = RunSpool(settings.spool_dir, uid)
    for name, doc in documents:
        spool.append(name, doc)
    spool.close()
    if age:  # older than the runs spooled after it: imported first
        import os

        stamp = spool.path.stat().st_mtime - age
        os.utime(spool.path, (stamp, stamp))
    return uid, spool.path


@pytest.mark.parametrize("route", ["embedded", "shared server"])
def test_small_arrays_per_event_are_imported_and_a_broken_file_is_named(
    RE, devices, shared_server, settings, catalog, route
):
    """A run recording a small array per event (latent_eels' old ``decision-z``, an agent's
    maps over a 10-position line scan) went to the event table under TiledWriter's default
    (arrays of up to 16 values), which a catalog on SQLite has no column type for: it stayed
    in the spool. Every array now goes to the array storage. A spool file that is not a run
    is named with its path, kept, and holds up no other run."""
    _det, eels = devices
    RE(latent_layout(old=True))
    old, _ = spool_documents(settings, RE.documents, age=90.0)
    RE.documents.clear()
    broken = RunSpool(settings.spool_dir, "not-a-run")
    broken.append("descriptor", {"uid": "d", "run_start": "not-a-run", "data_keys": {}})
    broken.close()
    broken_bytes = broken.path.read_bytes()
    os.utime(broken.path, (broken.path.stat().st_mtime - 60.0,) * 2)
    (good,) = RE(bp.count([eels], num=2), sample="after a broken file")
    spool_documents(settings, RE.documents, age=30.0)
    RE.documents.clear()
    (today,) = RE(latent_layout(old=False))
    spool_documents(settings, RE.documents)

    try:
        if route == "embedded":
            report = import_spool(settings)
        else:
            report = import_spool(settings, shared_server.uri, shared_server.api_key)
    finally:
        kept = broken.path.read_bytes() if broken.path.exists() else b""
        broken.path.unlink(missing_ok=True)  # the spool is shared by the module's tests
    assert report.imported == [old, good, today]  # the runs after it were not held up
    np.testing.assert_array_equal(
        catalog[old]["decisions"]["decision-z"].read(), [[0.5, -0.25], [0.5, -0.5]]
    )
    assert catalog[good]["primary"]["eels-spectrum"].shape == (2, 256)
    decisions = catalog[today]["decisions"].read()
    np.testing.assert_array_equal(decisions["decision-z1"], [-0.25, -0.5])
    assert list(report.failed) == ["not-a-run"]
    why = report.failed["not-a-run"]
    assert str(broken.path) in why
    assert "does not begin with a start document" in why
    assert why in str(report)
    assert kept == broken_bytes  # nothing lost


def test_a_catalog_that_stops_answering_stops_the_import_and_keeps_every_run(tmp_path):
    """Unlike a run the catalog refuses, a catalog gone away is nobody's run's fault: the
    import stops at once with the error, and every spool file stays."""
    from ophyd_stem.catalog import CatalogSettings

    settings = CatalogSettings(tmp_path / "data").ensure_dirs()
    paths = []
    for uid in ("run-one", "run-two"):
        spool = RunSpool(settings.spool_dir, uid)
        spool.append("start", {"uid": uid, "time": 0.0, "scan_id": 1})
        spool.append("stop", {"uid": f"{uid}-stop", "run_start": uid, "exit_status": "success"})
        spool.close()
        paths.append(spool.path)

    def refuse(*args, **kwargs):
        raise httpx.ConnectError("connection refused")

    from types import SimpleNamespace

    class Gone:
        """A catalog client whose server has gone away."""

        def __init__(self):
            self.item = {"links": {"self": "http://127.0.0.1:9/api/v1/metadata/"}}
            self.context = SimpleNamespace(http_client=SimpleNamespace(get=refuse))

        __getitem__ = refuse

    with pytest.raises(httpx.ConnectError):
        import_spool(settings, client=Gone())
    assert all(path.exists() for path in paths)
