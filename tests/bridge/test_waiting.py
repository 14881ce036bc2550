"""How both ends wait: the server's idle instrument thread in a receive with a timeout, the
clients in a receive of one monitor interval (``ZMQ_RCVTIMEO``) before they poll in slices.

Replies that take several slices, timeouts shorter than one slice, silence, and connection
events while the server is idle must all behave as before the receive-first waits.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Iterator

import numpy as np
import pytest
import zmq

from dm_bridge._client_core import MONITOR_INTERVAL, RECEIVE_SLICE_MS
from dm_bridge.aio import AsyncBridgeClient
from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.client import BridgeClient
from dm_bridge.errors import BridgeTimeout
from dm_bridge.server import Server


@pytest.fixture
def real_time_server() -> Iterator[Server]:
    """Spectra take 0.12 s each: three spectra outlast several receive slices."""
    backend = MinimalBackend(time_scale=1.0)
    backend.set_eels_parameters(exposure=0.12)
    server = Server(backend, port=0).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_reply_longer_than_a_slice_reaches_the_blocking_client(real_time_server):
    with BridgeClient(real_time_server.endpoint) as dm:
        acq = dm.acquire_spectra_at_points(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
        assert acq.spectra.shape[0] == 3
        assert dm.get_beam_position() == (5.0, 6.0)  # the channel is clean afterwards


def test_a_reply_longer_than_a_slice_reaches_the_async_client(real_time_server):
    async def run():
        async with AsyncBridgeClient(real_time_server.endpoint) as dm:
            acq = await dm.acquire_spectra_at_points(np.array([[1.0, 2.0], [3.0, 4.0]]))
            return acq.spectra.shape[0], await dm.get_beam_position()

    assert asyncio.run(run()) == (2, (3.0, 4.0))


def sent_by(client) -> list:
    """The (command, timeout) of each request ``client`` sends from now on."""
    core, sent = client._core, []
    request = core.request

    def spy(command, args, timeout):
        sent.append((command, timeout))
        return request(command, args, timeout)

    core.request = spy
    return sent


def test_a_first_spectrum_goes_at_once_its_wait_sized_for_the_longest_exposure(
    real_time_server,
):
    """A fresh client used to read the EELS settings (a queued get_eels_parameters) before
    its first spectrum, only to size the wait: hello's caps bound it (10 s exposure)."""
    cap = real_time_server.backend.limits.max_exposure
    with BridgeClient(real_time_server.endpoint) as dm:
        sent = sent_by(dm)
        dm.acquire_spectrum()
        assert [c for c, _ in sent] == ["hello", "acquire_spectrum"]
        assert sent[1][1] >= dm.timeout + 2 * cap  # long enough for any exposure allowed
        sent.clear()
        dm.acquire_spectrum()  # now the settings are known (from the reply)
        assert sent == [("acquire_spectrum", dm.timeout + 2 * 0.12)]


def test_a_first_long_acquisition_still_reads_its_settings_first(real_time_server):
    """Three points at the longest exposure (10 s) would mean over a minute of waiting on a
    hung server, and many points hours:
    the settings are read first, as before (also by the asyncio client)."""

    async def run():
        async with AsyncBridgeClient(real_time_server.endpoint) as dm:
            sent = sent_by(dm)
            await dm.acquire_spectra_at_points(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
            first = await dm.get_beam_position()
            return sent, first, dm.timeout

    sent, position, default = asyncio.run(run())
    assert [c for c, _ in sent] == [
        "hello",
        "get_eels_parameters",
        "acquire_spectra_at_points",
        "get_beam_position",
    ]
    assert sent[2][1] == pytest.approx(default + 2 * 3 * 0.12)
    assert position == (5.0, 6.0)


@pytest.mark.transport("zmq")
@pytest.mark.parametrize("timeout", [0.03, 0.25])  # shorter and longer than one slice
def test_silence_ends_in_bridge_timeout_for_both_clients(timeout):
    # a ROUTER that never answers
    router = zmq.Context.instance().socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        dm = BridgeClient(f"tcp://127.0.0.1:{port}")
        try:
            with pytest.raises(BridgeTimeout, match="no reply from"):
                dm.get_beam_position(timeout=timeout)
        finally:
            dm.close()

        async def run():
            async with AsyncBridgeClient(f"tcp://127.0.0.1:{port}") as dm:
                await dm.get_beam_position(timeout=timeout)

        with pytest.raises(BridgeTimeout, match="no reply from"):
            asyncio.run(run())
    finally:
        router.close(0)


@pytest.mark.transport("zmq")
def test_client_channels_receive_with_one_monitor_interval():
    dm = BridgeClient("tcp://127.0.0.1:9")
    channel = dm._take()
    try:
        assert channel.socket.getsockopt(zmq.RCVTIMEO) == RECEIVE_SLICE_MS
        assert int(MONITOR_INTERVAL * 1000) == RECEIVE_SLICE_MS
    finally:
        channel.close()
        dm.close()


def test_the_idle_server_answers_at_once_amid_connection_churn(bridge_server, caplog):
    # Connections open and close while the server is idle; their events wait in the monitor
    # until a drain. Requests in between are answered, and each disconnection is seen.
    caplog.set_level(logging.DEBUG, logger="dm_bridge.server")
    for i in range(20):
        with BridgeClient(bridge_server.endpoint) as dm:
            assert dm.set_beam_position(float(i), 1.0) == (float(i), 1.0)
    with BridgeClient(bridge_server.endpoint) as dm:
        assert dm.status()["state"] == "idle"
        assert dm.get_beam_position() == (19.0, 1.0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_server_stops_promptly_while_idle():
    server = Server(MinimalBackend(), port=0).start()
    thread = server._thread
    server.stop(timeout=5.0)
    assert not thread.is_alive()


def test_a_stopped_servers_port_can_be_bound_at_once():
    # Closing a socket of the shared context frees its port later, in libzmq's threads; a
    # server restarted on the same port (dm-bridge serve, the devices' restart test) needs
    # it free when stop() returns.
    first = Server(MinimalBackend(), port=0).start()
    port = int(first.endpoint.rsplit(":", 1)[1])
    for _ in range(5):
        with BridgeClient(first.endpoint) as dm:
            dm.get_beam_position()
            first.stop()
            first = Server(MinimalBackend(), port=port).start()  # no "address in use"
    first.stop()
