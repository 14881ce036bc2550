"""Fixtures for the bridge tests: a real server on a free loopback port, real clients, and a
raw socket for sending whatever bytes a test likes."""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import pytest
import zmq

from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.client import BridgeClient
from dm_bridge.server import Server


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
    """A bare DEALER socket: sends any frames, returns the reply's parsed header."""

    def __init__(self, endpoint: str) -> None:
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)

    def exchange(
        self, parts: Sequence[bytes], delimiter: bool = True, timeout: float = 10.0
    ) -> Dict[str, Any]:
        """Send ``[b"", *parts]`` (or ``parts`` as they are) and return the reply header."""
        frames: List[bytes] = ([b""] if delimiter else []) + list(parts)
        self.socket.send_multipart(frames)
        reply = self.receive(timeout)
        assert reply is not None, "the server did not answer"
        return reply

    def receive(self, timeout: float = 10.0) -> Optional[Dict[str, Any]]:
        if not self.socket.poll(int(timeout * 1000)):
            return None
        frames = self.socket.recv_multipart()
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
