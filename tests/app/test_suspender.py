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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with BridgeClient(f"tcp://127.0.0.1:{port}", timeout=0.5) as probe:
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
    yield from bps.mv(microscope.scan.width, 32, microscope.scan.height, 32)
    yield from bps.mv(microscope.scan.dwell_time, 2e-4)  # 0.2 s per image
    return (yield from bp.count([microscope.scan], num=20))


def grid_of_spectra(microscope):
    yield from bps.mv(microscope.scan.width, 32, microscope.scan.height, 32)
    yield from bps.mv(microscope.eels.exposure, 0.05)
    return (yield from spectrum_image(microscope.scan, microscope.eels_points, 8, 10, batch=8))


def run_through_outage(tmp_path, suspend: bool, plan=count_spectra):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
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
    [(count_spectra, 30), (count_images, 20), (grid_of_spectra, 80)],
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
