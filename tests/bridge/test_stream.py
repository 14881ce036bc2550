"""What is the stream transport's own: framing errors, oversized length prefixes, half-closed
and killed clients, a client that does not read, and choosing the transport.

Everything else (the protocol, the queue, abort, busy, stale requests, the fuzz, restarts)
runs over both transports in the other modules (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import pytest
import zmq

from dm_bridge import stream
from dm_bridge.aio import AsyncBridgeClient
from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.client import BridgeClient
from dm_bridge.errors import Aborted, BridgeConnectionError, BridgeTimeout
from dm_bridge.server import Server

from .test_concurrency import LONG_POINTS, acquiring, start, wait_for

pytestmark = pytest.mark.transport("stream")


def header(command: str = "hello", rid: object = 1, **fields: object) -> bytes:
    return json.dumps({"protocol": 1, "id": rid, "command": command, **fields}).encode()


@pytest.fixture
def slow_server() -> Iterator[Server]:
    backend = MinimalBackend(time_scale=1.0)
    backend.set_eels_parameters(exposure=0.05)
    server = Server(backend, port=0, transport="stream").start()
    try:
        yield server
    finally:
        server.stop()


_OPEN: list = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    try:
        yield
    finally:
        while _OPEN:
            _OPEN.pop().close()


def connect(server: Server) -> socket.socket:
    """A bare TCP connection to ``server`` (closed after the test)."""
    sock = socket.create_connection(stream.split_address(server.endpoint), 10)
    sock.settimeout(10)
    _OPEN.append(sock)
    return sock


def read_reply(sock: socket.socket) -> object:
    """The next reply's header, or ``None`` once the server has closed the connection."""
    data = b""
    while True:
        parts, _, _ = stream.parse(data, 0, 1 << 40)
        if parts is not None:
            assert parts[0] == b""
            return json.loads(parts[1])
        chunk = sock.recv(1 << 16)
        if not chunk:
            return None
        data += chunk


def test_a_message_is_its_part_count_its_lengths_and_its_parts(bridge_server):
    sock = connect(bridge_server)
    parts = [b"", header(rid=5)]
    pad = bytes(-len(parts[1]) % 8)
    sock.sendall(struct.pack("!3Q", 2, 0, len(parts[1])) + b"".join(parts) + pad)  # the page's
    reply = read_reply(sock)
    assert reply["ok"] is True
    assert reply["id"] == 5
    assert reply["result"]["server"]["transport"] == "stream"


@pytest.mark.parametrize(
    "part",
    [
        memoryview(np.arange(5, dtype=np.float32)),  # len 5, 20 bytes
        memoryview(np.arange(24, dtype=np.uint8).reshape(4, 6)),  # len 4 (rows), 24 bytes
        memoryview(np.arange(70_000, dtype=np.float64)),  # large: written uncopied
        np.arange(6, dtype=np.int16).reshape(2, 3),  # an array itself: len 2, 12 bytes
    ],
    ids=["float32-view", "2d-view", "large-float64-view", "int16-array"],
)
def test_pack_counts_bytes_not_items(part):
    """A part's length prefix is its size in bytes whatever its item size or shape (len()
    counts items, or rows, for such a memoryview: the reader would cut the message short)."""
    expected = memoryview(part).tobytes()
    buffers = stream.pack([b"", b"header", part])
    parts, end, _ = stream.parse(
        b"".join(bytes(memoryview(b).cast("B")) for b in buffers), 0, 1 << 30
    )
    assert parts is not None
    assert [bytes(p) for p in parts] == [b"", b"header", expected]
    assert end == 8 + 3 * 8 + 0 + 8 + len(expected) + (-len(expected) % 8)


def test_pack_refuses_memory_that_is_not_one_block():
    strided = memoryview(np.arange(10, dtype=np.float32))[::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        stream.pack([b"", strided])


@pytest.mark.parametrize("count", [0, stream.MAX_PARTS + 1, 2**31])
def test_a_bad_part_count_is_refused_and_the_connection_closed(bridge_server, count):
    sock = connect(bridge_server)
    sock.sendall(struct.pack("!Q", count) + bytes(64))
    refusal = read_reply(sock)
    assert refusal["error"]["kind"] == "bad_request"
    assert refusal["id"] is None
    assert "parts" in refusal["error"]["message"]
    assert read_reply(sock) is None  # closed
    with BridgeClient(bridge_server.endpoint) as dm:  # and everyone else is still served
        assert dm.get_beam_position() == (255.5, 255.5)


def test_an_oversized_length_prefix_is_refused_before_the_body_is_sent(bridge_server):
    sock = connect(bridge_server)
    sock.sendall(struct.pack("!3Q", 2, 0, 2**40))  # 1 TiB declared, nothing sent
    refusal = read_reply(sock)
    assert refusal["error"]["kind"] == "too_large"
    assert refusal["id"] is None
    limit = 2 * bridge_server.max_request_bytes + 2**20
    assert str(2**40) in refusal["error"]["message"]
    assert str(limit) in refusal["error"]["message"]
    assert read_reply(sock) is None


def test_the_hard_cap_counts_the_parts_with_their_padding(bridge_server):
    cap = 2 * bridge_server.max_request_bytes + 2**20
    sizes = [0, cap - 8, 1, 1]  # cap - 6 bytes, padded to cap + 8
    sock = connect(bridge_server)
    sock.sendall(struct.pack("!5Q", 4, *sizes))
    refusal = read_reply(sock)
    assert refusal["error"]["kind"] == "too_large"
    assert str(cap + 8) in refusal["error"]["message"]


def test_a_zeromq_client_on_a_stream_port_is_told_why(bridge_server):
    # What a ZeroMQ peer sends first (its greeting's signature) gets a refusal that says so.
    sock = connect(bridge_server)
    sock.sendall(b"\xff" + bytes(8) + b"\x7f")
    refusal = read_reply(sock)
    assert refusal["error"]["kind"] == "bad_request"
    assert "ZeroMQ" in refusal["error"]["message"]
    assert read_reply(sock) is None
    # A real ZeroMQ client cannot read that reply, but the server counts (and logs, at
    # most once a minute per kind) the refusal, and keeps serving.
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        dealer.connect(bridge_server.endpoint.replace("stream://", "tcp://"))
        dealer.send_multipart([b"", header()])
        wait_for(lambda: bridge_server._handshakes.total >= 2, "the second refusal")
    finally:
        dealer.close()
    with BridgeClient(bridge_server.endpoint) as dm:
        assert dm.hello()["server"]["transport"] == "stream"


def test_a_stream_client_on_a_zeromq_port_is_told_why():
    # What a ZeroMQ peer sends first: its greeting's signature (a real ZeroMQ server may
    # also reset the connection on reading ours first, and then the call times out).
    listener = socket.create_server(("127.0.0.1", 0))
    _OPEN.append(listener)

    def greet() -> None:
        peer, _ = listener.accept()
        _OPEN.append(peer)
        peer.sendall(b"\xff" + bytes(8) + b"\x7f")

    thread = threading.Thread(target=greet, daemon=True)
    thread.start()
    address = f"stream://127.0.0.1:{listener.getsockname()[1]}"
    with BridgeClient(address, timeout=5) as dm, pytest.raises(BridgeConnectionError) as err:
        dm.hello()
    assert "ZeroMQ" in str(err.value)
    thread.join(5)


def test_a_half_closed_client_is_gone_and_its_queued_work_dropped(slow_server):
    endpoint = slow_server.endpoint
    with ThreadPoolExecutor(1) as pool, BridgeClient(endpoint, timeout=5) as operator:
        running = start(pool, endpoint, "acquire_spectra_at_points", LONG_POINTS)
        wait_for(lambda: acquiring(operator), "the acquisition to start")
        sock = connect(slow_server)
        request = header("acquire_spectrum", rid="queued")
        for buffer in stream.pack([b"", request]):
            sock.sendall(buffer)
        wait_for(lambda: operator.status()["queue"] == 1, "the request to be queued")
        sock.shutdown(socket.SHUT_WR)  # "nothing more to send": on this transport, gone
        status = wait_for(
            lambda: (s := operator.status())["queue"] == 0 and s, "the queue to be dropped"
        )
        assert status["dropped_disconnected"] == 1
        assert read_reply(sock) is None  # no reply: the server closed the connection
        operator.abort()
        with pytest.raises(Aborted):
            running.result(timeout=10)


def test_a_client_killed_mid_request_leaves_the_server_serving(bridge_server):
    # A process that sends half of a request (its length prefix promises 1 MB) and dies.
    script = (
        "import socket, struct, sys, time\n"
        "host, port = sys.argv[1], int(sys.argv[2])\n"
        "s = socket.create_connection((host, port))\n"
        "s.sendall(struct.pack('!4Q', 3, 0, 60, 1000000) + bytes(64) + bytes(500000))\n"
        "print('sent', flush=True)\n"
        "time.sleep(60)\n"
    )
    host, port = stream.split_address(bridge_server.endpoint)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, host, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "sent"
        wait_for(lambda: len(bridge_server._peers) == 1, "the half-sent request to arrive")
        proc.kill()
        proc.wait(10)
        wait_for(lambda: not bridge_server._peers, "the dead client's connection to close")
        with BridgeClient(bridge_server.endpoint) as dm:
            assert dm.status()["state"] == "idle"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()


def test_a_client_that_does_not_read_holds_back_only_itself():
    backend = MinimalBackend()
    backend.set_scan_parameters(width=512, height=512)  # 1 MiB per image reply
    with Server(backend, port=0, transport="stream", queue_limit=64) as server:
        hog = connect(server)
        for k in range(32):  # 32 MiB of replies it never reads
            for buffer in stream.pack([b"", header("acquire_image", rid=k)]):
                hog.sendall(buffer)
        wait_for(lambda: server._peers and server._peers[0].out, "replies waiting to go out")
        with BridgeClient(server.endpoint, timeout=10) as dm:
            assert dm.get_beam_position() == (255.5, 255.5)
        first = read_reply(hog)
        assert first["ok"] is True
        assert first["id"] == 0
        hog.close()


async def test_the_async_client_speaks_stream_and_sees_a_server_close(bridge_server):
    async with AsyncBridgeClient(bridge_server.endpoint) as dm:
        assert await dm.set_beam_position(3.0, 4.0) == (3.0, 4.0)
        assert (await dm.hello())["server"]["transport"] == "stream"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "microscope.lab"])
def test_the_stream_transport_refuses_to_listen_off_loopback(host):
    with pytest.raises(ValueError, match="no authentication"):
        Server(MinimalBackend(), host=host, port=0, transport="stream")


def test_the_stream_transport_refuses_keys(tmp_path):
    from dm_bridge.keys import generate_keys

    keys = generate_keys(tmp_path / "keys", clients=1)
    with pytest.raises(ValueError, match="no authentication"):
        Server(
            MinimalBackend(),
            port=0,
            server_secret_key=keys["server_secret"],
            allowed_clients=keys["allowed_clients"],
            transport="stream",
        )
    with pytest.raises(ValueError, match="no CurveZMQ"):
        BridgeClient(
            "stream://127.0.0.1:5555",
            server_public_key=keys["server_public"],
            client_secret_key=keys["clients"][0]["secret"],
        )


def test_auto_serves_stream_on_loopback_and_zeromq_with_keys(tmp_path):
    from dm_bridge.keys import generate_keys

    keys = generate_keys(tmp_path / "keys", clients=1)
    plain = Server(MinimalBackend(), port=0, transport="auto")
    curve = Server(
        MinimalBackend(),
        port=0,
        server_secret_key=keys["server_secret"],
        allowed_clients=keys["allowed_clients"],
        transport="auto",
    )
    assert (plain.transport, curve.transport) == ("stream", "zmq")


def test_a_call_whose_connection_closes_ends_as_a_timeout_for_both_clients():
    # A server that reads each request and hangs up without replying (a crash): the call
    # ends as on ZeroMQ, in BridgeTimeout at its timeout, which the devices' suspension
    # on outages relies on; the client reconnects for the next call.
    listener = socket.create_server(("127.0.0.1", 0))
    _OPEN.append(listener)

    def hang_up() -> None:
        while True:
            try:
                peer, _ = listener.accept()
            except OSError:
                return
            with peer:
                peer.recv(1 << 16)

    threading.Thread(target=hang_up, daemon=True).start()
    address = f"stream://127.0.0.1:{listener.getsockname()[1]}"
    with BridgeClient(address) as dm, pytest.raises(BridgeTimeout, match="closed the connection"):
        dm.get_beam_position(timeout=0.3)

    async def run() -> None:
        async with AsyncBridgeClient(address) as dm:
            await dm.get_beam_position(timeout=0.3)

    with pytest.raises(BridgeTimeout, match="closed the connection"):
        asyncio.run(run())
