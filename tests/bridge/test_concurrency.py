"""One instrument, many clients: correct replies, a bounded queue, abort, status while busy."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from dm_bridge.aio import AsyncBridgeClient
from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.client import BridgeClient
from dm_bridge.errors import Aborted, BridgeTimeout, Busy
from dm_bridge.server import Server

#: 100 points x 50 ms: a 5-second acquisition when the backend runs in real time
LONG_POINTS = np.column_stack([np.linspace(1, 50, 100), np.full(100, 7.0)])


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``condition`` until it is truthy; fail the test (not hang) if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


def acquiring(client: BridgeClient) -> Any:
    """The status, if the long acquisition is running (not its client's first, short call)."""
    status = client.status()
    return status if status["current_command"] == "acquire_spectra_at_points" else None


@pytest.fixture
def slow_server(request) -> Iterator[Server]:
    """A real-time minimal instrument (``time_scale=1``) with exposure 50 ms per spectrum."""
    queue_limit = getattr(request, "param", 8)
    backend = MinimalBackend(time_scale=1.0)
    backend.set_eels_parameters(exposure=0.05)
    server = Server(backend, port=0, queue_limit=queue_limit).start()
    try:
        yield server
    finally:
        server.stop()


def start(pool: ThreadPoolExecutor, endpoint: str, method: str, *args: Any, **kwargs: Any):
    """Run one call on its own client in a worker thread; returns the future."""

    def run():
        with BridgeClient(endpoint, timeout=30) as client:
            return getattr(client, method)(*args, **kwargs)

    return pool.submit(run)


def test_many_clients_at_once_each_get_their_own_answer(bridge_server):
    def work(k: int):
        rng = np.random.default_rng(k)
        with BridgeClient(bridge_server.endpoint) as client:
            for _ in range(15):
                points = rng.uniform(0, 500, size=(int(rng.integers(1, 6)), 2))
                acq = client.acquire_spectra_at_points(points)
                np.testing.assert_array_equal(acq.positions, points)
                # The minimal backend's zero-loss peak height encodes the beam position.
                peak = acq.spectra.max(axis=1)
                want = (1000.0 + 10.0 * points[:, 0] + points[:, 1]).astype(np.float32)
                np.testing.assert_allclose(peak, want, rtol=1e-3)
        return k

    with ThreadPoolExecutor(6) as pool:
        assert sorted(pool.map(work, range(6))) == list(range(6))


def test_one_client_shared_by_threads_keeps_replies_apart(bridge_client):
    def work(k: int):
        points = np.array([[k + 0.25, 2 * k + 0.5]])
        for _ in range(20):
            assert bridge_client.acquire_spectra_at_points(points).positions.tolist() == [
                [k + 0.25, 2 * k + 0.5]
            ]
        return k

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(work, range(4))) == list(range(4))


async def test_async_calls_in_flight_together_get_their_own_replies(bridge_server):
    client = AsyncBridgeClient(bridge_server.endpoint)
    try:
        # Six at once: within the queue bound (8 waiting), so none is answered "busy".
        points = [np.array([[k, k / 2]], dtype=float) for k in range(6)]
        results = await asyncio.gather(*(client.acquire_spectra_at_points(p) for p in points))
        for p, acq in zip(points, results):
            np.testing.assert_array_equal(acq.positions, p)
    finally:
        client.close()


def test_status_answers_and_abort_interrupts_a_long_acquisition(slow_server):
    endpoint = slow_server.endpoint
    with ThreadPoolExecutor(2) as pool, BridgeClient(endpoint, timeout=5) as operator:
        running = start(pool, endpoint, "acquire_spectra_at_points", LONG_POINTS)
        status = wait_for(lambda: acquiring(operator), "the acquisition to start")
        assert status["state"] == "busy"
        assert operator.hello()["backend"] == "minimal"  # answered during the acquisition
        operator.abort()
        with pytest.raises(Aborted):
            running.result(timeout=10)
        assert not running.cancelled()
        idle = operator.status()
        assert idle["state"] == "idle"
        assert "aborted" in idle["last_error"]
        # The next acquisition is not aborted: the server clears the flag first.
        assert operator.set_beam_position(1.0, 1.0) == (1.0, 1.0)


@pytest.mark.parametrize("slow_server", [1], indirect=True)
def test_a_full_queue_answers_busy_and_abort_drops_the_queue(slow_server):
    endpoint = slow_server.endpoint
    with ThreadPoolExecutor(3) as pool, BridgeClient(endpoint, timeout=5) as operator:
        running = start(pool, endpoint, "acquire_spectra_at_points", LONG_POINTS)
        wait_for(lambda: acquiring(operator), "the acquisition to start")
        queued = start(pool, endpoint, "set_beam_position", 9.0, 9.0)
        wait_for(lambda: operator.status()["queue"] == 1, "a queued command")
        with pytest.raises(Busy, match="limit 1"):
            operator.get_beam_position()
        operator.abort()
        with pytest.raises(Aborted):
            running.result(timeout=10)
        with pytest.raises(Aborted, match="dropped from the queue"):
            queued.result(timeout=10)
        assert operator.get_beam_position() != (9.0, 9.0)  # the dropped command never ran
        assert operator.status()["queue"] == 0


@pytest.mark.parametrize("slow_server", [0], indirect=True)
def test_queue_limit_zero_means_busy_whenever_the_instrument_is(slow_server):
    with ThreadPoolExecutor(1) as pool, BridgeClient(slow_server.endpoint) as operator:
        assert operator.get_beam_position()  # idle: accepted
        running = start(pool, slow_server.endpoint, "acquire_spectra_at_points", LONG_POINTS)
        wait_for(lambda: acquiring(operator), "the acquisition to start")
        with pytest.raises(Busy):
            operator.get_beam_position()
        operator.abort()
        with pytest.raises(Aborted):
            running.result(timeout=10)


def test_a_request_that_outwaits_its_timeout_in_the_queue_is_not_executed(slow_server, caplog):
    short = LONG_POINTS[:30]  # 1.5 s: long enough to queue behind, even on a loaded machine
    with ThreadPoolExecutor(1) as pool, BridgeClient(slow_server.endpoint) as operator:
        running = start(pool, slow_server.endpoint, "acquire_spectra_at_points", short)
        wait_for(lambda: acquiring(operator), "the acquisition to start")
        with pytest.raises(BridgeTimeout):
            operator.set_beam_position(20.0, 20.0, timeout=0.1)
        running.result(timeout=10)
        wait_for(lambda: operator.status()["queue"] == 0, "the queue to drain")
        assert operator.get_beam_position() == tuple(short[-1])  # not (20, 20)


def test_stop_aborts_the_running_command_and_answers_the_queue():
    backend = MinimalBackend(time_scale=1.0)
    backend.set_eels_parameters(exposure=0.05)
    server = Server(backend, port=0).start()
    endpoint = server.endpoint
    with ThreadPoolExecutor(2) as pool, BridgeClient(endpoint, timeout=5) as operator:
        running = start(pool, endpoint, "acquire_spectra_at_points", LONG_POINTS)
        wait_for(lambda: acquiring(operator), "the acquisition to start")
        queued = start(pool, endpoint, "get_beam_position")
        wait_for(lambda: operator.status()["queue"] == 1, "a queued command")
        stopper = threading.Thread(target=server.stop)
        stopper.start()
        with pytest.raises(Aborted):
            running.result(timeout=10)
        with pytest.raises(Aborted, match="server stopping"):
            queued.result(timeout=10)
        stopper.join(10)
        assert not stopper.is_alive()


def test_queued_work_of_clients_that_disconnect_is_dropped(slow_server, connect_raw):
    """Clients that queue acquisitions and die leave nothing behind for the next client."""
    endpoint = slow_server.endpoint
    with ThreadPoolExecutor(1) as pool, BridgeClient(endpoint, timeout=5) as operator:
        running = start(pool, endpoint, "acquire_spectra_at_points", LONG_POINTS)
        wait_for(lambda: acquiring(operator), "the acquisition to start")
        doomed = [connect_raw(endpoint) for _ in range(3)]
        for k, peer in enumerate(doomed):
            request = {
                "protocol": 1,
                "id": k,
                "command": "acquire_spectra_at_points",
                "args": {"points": LONG_POINTS.tolist()},
            }
            peer.send([b"", json.dumps(request).encode()])
        wait_for(lambda: operator.status()["queue"] == 3, "three queued acquisitions")
        for peer in doomed:
            peer.close()  # killed: their connections close
        status = wait_for(
            lambda: (s := operator.status())["queue"] == 0 and s, "the queue to be dropped"
        )
        assert status["dropped_disconnected"] == 3
        assert status["current_command"] == "acquire_spectra_at_points"  # it keeps running
        operator.abort()
        with pytest.raises(Aborted):
            running.result(timeout=10)
        assert operator.get_beam_position()  # the next client's call runs at once


def test_abort_really_aborts_a_twin_image_being_simulated():
    twin_module = pytest.importorskip("dm_bridge.backends.twin")
    twin = twin_module.TwinBackend("graphene")
    twin.set_scan_parameters(width=512, height=512, dwell_time=1e-6)
    release, entered = threading.Event(), threading.Event()
    original = twin.sample.haadf

    def slow_haadf(frame, sigma):  # a simulation that takes until the test says so
        entered.set()
        release.wait(30)
        return original(frame, sigma)

    twin.sample.haadf = slow_haadf
    server = Server(twin, port=0).start()
    with ThreadPoolExecutor(1) as pool, BridgeClient(server.endpoint, timeout=5) as operator:
        image = start(pool, server.endpoint, "acquire_image")
        assert entered.wait(10)
        assert operator.status()["current_command"] == "acquire_image"
        operator.abort()
        with pytest.raises(Aborted):
            image.result(timeout=10)  # answered while the simulation still runs
        assert not release.is_set()
        release.set()
        twin.sample.haadf = original
        assert operator.acquire_image(timeout=120).images["HAADF"].shape == (512, 512)
    server.stop()


def test_the_socket_changes_hands_many_times_without_losing_a_reply():
    """Commands about as long as the standby thread's take-over delay, with status asked
    meanwhile from another client: the socket goes back and forth between the threads
    hundreds of times, and every request is answered."""
    backend = MinimalBackend(time_scale=1.0)
    server = Server(backend, port=0).start()
    stop = threading.Event()
    statuses = []

    def watch():
        with BridgeClient(server.endpoint, timeout=10) as watcher:
            while not stop.is_set():
                statuses.append(watcher.status()["state"])

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with BridgeClient(server.endpoint, timeout=10) as dm:
            for k in range(150):
                dm.set_eels_parameters(exposure=0.004 + 0.0001 * (k % 120))  # 4-16 ms
                assert dm.acquire_spectrum().spectra.shape == (2048,)
    finally:
        stop.set()
        watcher.join(30)
        server.stop()
    assert "busy" in statuses  # some were answered by the standby thread
