"""Fixtures for the bridge tests: a real server on a free loopback port, real clients, and a
raw socket for sending whatever bytes a test likes.

Every test here runs once per transport (``stream``: plain TCP, the default; ``zmq``:
ZeroMQ): :func:`bridge_transport` makes it the servers' default (also for ``dm-bridge
serve`` started by a test, through ``DM_BRIDGE_TRANSPORT``), and the clients follow the
endpoint's scheme. A test about one transport only is marked
``@pytest.mark.transport("zmq")`` (or ``"stream"``) and runs once.
"""

from __future__ import annotations

import json
import socket
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import pytest
import zmq

import dm_bridge.server_core
from dm_bridge import stream
from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.client import BridgeClient
from dm_bridge.server import Server


def pytest_configure(config: Any) -> None:
    # (here, not in setup.cfg: this conftest is read before the modules that use it)
    config.addinivalue_line(
        "markers", "transport(name): a bridge test of that transport only (see tests/bridge)"
    )


def pytest_collection_modifyitems(config: Any, items: List[Any]) -> None:
    # A test marked for one transport runs under that one only (not skipped: left out).
    kept = []
    for item in items:
        marker = item.get_closest_marker("transport")
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("bridge_transport") if callspec is not None else None
        if marker is None or param is None or marker.args[0] == param:
            kept.append(item)
        else:
            config.hook.pytest_deselected(items=[item])
    items[:] = kept


@pytest.fixture(scope="session", autouse=True, params=dm_bridge.server_core.TRANSPORTS)
def bridge_transport(request: Any) -> str:
    """The transport the servers of this test speak by default (session-scoped, so that
    pytest runs every test of one transport, then every test of the other)."""
    return request.param


@pytest.fixture(autouse=True)
def _default_transport(bridge_transport: str, monkeypatch: Any) -> None:
    # Per test, so that nothing outside tests/bridge runs with it.
    monkeypatch.setattr(dm_bridge.server_core, "DEFAULT_TRANSPORT", bridge_transport)
    monkeypatch.setenv("DM_BRIDGE_TRANSPORT", bridge_transport)


@pytest.fixture
def minimal_backend() -> MinimalBackend:
    """A minimal instrument that answers at once."""
    return MinimalBackend()


@pytest.fixture
def bridge_server(minimal_backend: MinimalBackend) -> Iterator[Server]:
    """A bridge serving ``minimal_backend`` from a background thread, on a free port."""
    server = Server(minimal_backend, port=0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bridge_client(bridge_server: Server) -> Iterator[BridgeClient]:
    """A blocking client of ``bridge_server``."""
    client = BridgeClient(bridge_server.endpoint, timeout=10.0)
    try:
        yield client
    finally:
        client.close()


class RawPeer:
    """A bare connection: a DEALER socket (``tcp://``) or a TCP socket that frames messages
    as the stream transport does (``stream://``); sends any parts, returns the reply's
    parsed header."""

    def __init__(self, endpoint: str) -> None:
        self.stream = endpoint.startswith("stream://")
        if self.stream:
            self.socket: Any = socket.create_connection(stream.split_address(endpoint), 10)
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buffer = b""
        else:
            self.socket = zmq.Context.instance().socket(zmq.DEALER)
            self.socket.setsockopt(zmq.LINGER, 0)
            self.socket.connect(endpoint)

    def send(self, frames: Sequence[bytes]) -> None:
        """Send ``frames`` as one message, exactly as given."""
        if self.stream:
            for buffer in stream.pack(list(frames)):
                self.socket.sendall(buffer)
        else:
            self.socket.send_multipart(frames)

    def exchange(
        self, parts: Sequence[bytes], delimiter: bool = True, timeout: float = 10.0
    ) -> Dict[str, Any]:
        """Send ``[b"", *parts]`` (or ``parts`` as they are) and return the reply header."""
        frames: List[bytes] = ([b""] if delimiter else []) + list(parts)
        self.send(frames)
        reply = self.receive(timeout)
        assert reply is not None, "the server did not answer"
        return reply

    def receive_frames(self, timeout: float = 10.0) -> Optional[List[bytes]]:
        """The next message's parts, or ``None`` if none came within ``timeout`` seconds
        (or the server closed a stream connection)."""
        if not self.stream:
            if not self.socket.poll(int(timeout * 1000)):
                return None
            return self.socket.recv_multipart()
        self.socket.settimeout(timeout)
        while True:
            parts, end, _ = stream.parse(self._buffer, 0, 1 << 40)
            if parts is not None:
                self._buffer = self._buffer[end:]
                return [bytes(p) for p in parts]
            try:
                chunk = self.socket.recv(1 << 20)
            except (socket.timeout, ConnectionError):
                return None
            if not chunk:
                return None
            self._buffer += chunk

    def receive(self, timeout: float = 10.0) -> Optional[Dict[str, Any]]:
        frames = self.receive_frames(timeout)
        if frames is None:
            return None
        assert frames[0] == b"", "replies start with the empty delimiter"
        header = json.loads(frames[1])
        header["_frames"] = frames[2:]
        return header

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def connect_raw() -> Iterator[Callable[[str], RawPeer]]:
    """Factory of raw DEALER peers (closed after the test)."""
    peers: List[RawPeer] = []

    def connect(endpoint: str) -> RawPeer:
        peers.append(RawPeer(endpoint))
        return peers[-1]

    try:
        yield connect
    finally:
        for peer in peers:
            peer.close()


@pytest.fixture
def raw_peer(bridge_server: Server, connect_raw: Callable[[str], RawPeer]) -> RawPeer:
    """A raw DEALER connected to ``bridge_server``."""
    return connect_raw(bridge_server.endpoint)
