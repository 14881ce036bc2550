"""A client outlives its server: a call during the outage times out, the next one after a
restart on the same port works, with the same client object."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from dm_bridge.aio import AsyncBridgeClient
from dm_bridge.client import BridgeClient
from dm_bridge.errors import BridgeTimeout

DM_BRIDGE = Path(sys.executable).parent / "dm-bridge"


def serve(port: int = 0, *extra: str) -> Tuple[subprocess.Popen, str]:
    """Start ``dm-bridge serve --backend minimal`` and return it with its endpoint."""
    proc = subprocess.Popen(
        [str(DM_BRIDGE), "serve", "--backend", "minimal", "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = proc.stdout.readline()  # the server prints one line once it is bound
    match = re.search(r"at ((?:tcp|stream)://\S+)", line)
    if match is None:
        proc.kill()
        pytest.fail(f"dm-bridge serve did not start: {line!r} {proc.stderr.read()}")
    return proc, match.group(1)


@pytest.fixture
def servers() -> Iterator[List[subprocess.Popen]]:
    started: List[subprocess.Popen] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            proc.stdout.close()
            proc.stderr.close()


def test_the_client_recovers_after_the_server_is_killed_and_restarted(servers):
    first, endpoint = serve()
    servers.append(first)
    port = int(endpoint.rsplit(":", 1)[1])
    with BridgeClient(endpoint, timeout=10) as client:
        assert client.set_beam_position(12.5, 7.25) == (12.5, 7.25)
        first.send_signal(signal.SIGKILL)  # a crash, not a clean stop
        first.wait(10)
        with pytest.raises(BridgeTimeout, match="no connection"):
            client.get_beam_position(timeout=0.5)
        second, again = serve(port)
        servers.append(second)
        assert again == endpoint
        # A new server, a new instrument state: the default beam position, not 12.5, 7.25.
        assert client.get_beam_position() == (255.5, 255.5)
        assert client.hello()["backend"] == "minimal"


async def test_the_async_client_recovers_too(servers):
    first, endpoint = serve()
    servers.append(first)
    port = int(endpoint.rsplit(":", 1)[1])
    client = AsyncBridgeClient(endpoint, timeout=10)
    try:
        assert await client.set_beam_position(1.5, 2.5) == (1.5, 2.5)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        with pytest.raises(BridgeTimeout):
            await client.get_beam_position(timeout=0.5)
        second, _ = serve(port)
        servers.append(second)
        assert await client.get_beam_position() == (255.5, 255.5)
    finally:
        client.close()


def test_sigterm_stops_the_server_cleanly(servers):
    proc, endpoint = serve()
    servers.append(proc)
    with BridgeClient(endpoint) as client:
        assert client.status()["state"] == "idle"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert "stopped" in proc.stderr.read()
