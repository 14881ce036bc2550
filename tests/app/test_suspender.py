"""When the bridge stops answering mid-run the RunEngine suspends, and resumes when it is back.

A real bridge process on loopback is killed in the middle of a count and started again on
the same port, after longer than the client's timeout (a shorter outage is absorbed by
ZeroMQ itself, which holds the request until the server is back); the run finishes with
every point and no error. Without the suspender the same outage fails the run.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import pytest
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop
from bluesky.suspenders import SuspendBoolLow

from dm_bridge.aio import AsyncBridgeClient
from dm_bridge.client import BridgeClient
from ophyd_stem import Microscope
from ophyd_stem.watchdog import BridgeWatchdog
from plans import spectrum_image

CLIENT_TIMEOUT = 2.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_bridge(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dm_bridge.cli",
            "serve",
            "--backend",
            "minimal",
            "--port",
            str(port),
            # acquisitions take their instrument time, so every plan is still running
            # when the bridge goes away
            "--time-scale",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with BridgeClient(f"stream://127.0.0.1:{port}", timeout=0.5) as probe:
        for _ in range(100):
            try:
                probe.hello(timeout=0.5)
                return process
            except Exception:
                time.sleep(0.1)
    process.kill()
    raise RuntimeError("the bridge did not start")


def count_spectra(microscope):
    return bp.count([microscope.eels], num=30, delay=0.1)


def count_images(microscope):
    # The bridge's own default field (512², 2 µs: 0.52 s per image), which a restarted
    # bridge comes back with; a field set before the outage would be lost with the process
    # (see test_a_failed_scan_fails_its_trigger_at_once).
    return (yield from bp.count([microscope.scan], num=8))


def grid_of_spectra(microscope):
    yield from bps.mv(microscope.scan.width, 32, microscope.scan.height, 32)
    yield from bps.mv(microscope.eels.exposure, 0.05)
    return (yield from spectrum_image(microscope.scan, microscope.eels_points, 8, 10, batch=8))


def run_through_outage(tmp_path, suspend: bool, plan=count_spectra):
    port = free_port()
    address = f"stream://127.0.0.1:{port}"
    processes = [start_bridge(port)]
    RE = RunEngine({})
    documents = []
    RE.subscribe(lambda name, doc: documents.append((name, doc)))
    microscope = Microscope(AsyncBridgeClient(address, timeout=CLIENT_TIMEOUT), assets_dir=tmp_path)
    call_in_bluesky_event_loop(microscope.connect())
    watchdog = BridgeWatchdog(lambda: BridgeClient(address), period=0.1, timeout=0.5)
    seen = []
    watchdog.subscribe(lambda value, **kw: seen.append(value))
    if suspend:
        RE.install_suspender(SuspendBoolLow(watchdog, sleep=0.5))

    def outage():
        time.sleep(1.0)
        processes[0].kill()
        processes[0].wait()
        time.sleep(CLIENT_TIMEOUT + 2.0)
        processes.append(start_bridge(port))

    thread = threading.Thread(target=outage)
    thread.start()
    try:
        RE(plan(microscope))
    finally:
        thread.join()
        watchdog.stop()
        microscope.client.close()
        for p in processes:
            p.kill()
            p.wait()
    return documents, seen


@pytest.mark.parametrize(
    ("plan", "expected"),
    [(count_spectra, 30), (count_images, 8), (grid_of_spectra, 80)],
    ids=["spectra", "survey images", "multi-point grid"],
)
def test_runs_survive_a_bridge_restart(tmp_path, plan, expected):
    documents, seen = run_through_outage(tmp_path, suspend=True, plan=plan)
    stop = next(d for n, d in documents if n == "stop")
    assert stop["exit_status"] == "success"
    assert stop["num_events"]["primary"] == expected
    primary = {d["uid"] for n, d in documents if n == "descriptor" and d["name"] == "primary"}
    seq = [d["seq_num"] for n, d in documents if n == "event" and d["descriptor"] in primary]
    for n, d in documents:
        if n == "event_page" and d["descriptor"] in primary:
            seq += d["seq_num"]
    # Every point exactly once, in order: nothing lost, nothing doubled by the replay.
    assert sorted(seq) == list(range(1, expected + 1))
    assert len(seq) == expected
    # The watchdog saw the bridge go away and come back: the run was suspended, not failed.
    # (Not "the last value was True": on a loaded machine a poll after the run may time out.)
    assert seen[0] is True
    assert False in seen
    assert True in seen[seen.index(False) :]


def test_without_the_suspender_the_same_outage_fails_the_run(tmp_path):
    with pytest.raises(Exception, match=r"timeout|did not answer|Timeout"):
        run_through_outage(tmp_path, suspend=False)


def test_the_watchdog_survives_a_failing_subscriber_and_keeps_saying_down():
    """A suspender can fail to trip when the RunEngine is busy; the watchdog must live on and
    ask again while the bridge stays down, then report its return."""
    answers = iter([True, False, False, False, True, True])

    class Client:
        def status(self, timeout=None):
            if not next(answers):
                raise TimeoutError("no reply")

        def close(self):
            pass

    watchdog = BridgeWatchdog(Client, period=0.01, timeout=0.01)
    calls = []

    def flaky(value, **kw):
        calls.append(value)
        if len(calls) == 2:  # the first "down" fails, as bluesky's can under load
            raise RuntimeError("Could not create the suspender event")

    watchdog.subscribe(flaky)
    deadline = time.monotonic() + 5
    while True not in calls[2:] and time.monotonic() < deadline:
        time.sleep(0.01)
    watchdog.stop()
    assert calls[0] is True
    assert calls[1:4] == [False, False, False]  # asked again after the failure
    assert True in calls[4:]
    assert "Could not create the suspender event" in watchdog.last_subscriber_error


def test_a_failed_scan_fails_its_trigger_at_once(tmp_path):
    """A bridge restarted with other scan settings returns an image of another size: the
    scan engine refuses it (the run's file holds another shape) and the trigger fails with
    that reason straight away, not after the detector's 30 s timeout."""
    port = free_port()
    process = start_bridge(port)
    RE = RunEngine({})
    microscope = Microscope(AsyncBridgeClient(f"stream://127.0.0.1:{port}"), assets_dir=tmp_path)
    call_in_bluesky_event_loop(microscope.connect())
    client = BridgeClient(f"stream://127.0.0.1:{port}")

    def plan():
        yield from bps.mv(microscope.scan.width, 32, microscope.scan.height, 32)
        yield from bps.stage(microscope.scan, wait=True)  # the run's file is made for 32²
        client.set_scan_parameters(width=64, height=64)  # behind the devices' back
        yield from bps.trigger(microscope.scan, wait=True)

    try:
        started = time.monotonic()
        with pytest.raises(Exception, match=r"prepared for \(32, 32\)"):
            RE(plan())
        assert time.monotonic() - started < 10
    finally:
        client.close()
        microscope.client.close()
        process.kill()
        process.wait()
