"""The server's memory for one request is bounded (docs/bridge-protocol.md §8): an acquisition
whose reply would exceed ``max_reply_bytes`` (1 GiB by default) is refused with ``too_large``
stating the limit before anything is acquired, and a reply within it is held once, beside a
working space that does not grow with the reply."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.client import BridgeClient
from dm_bridge.commands import run_command
from dm_bridge.errors import TooLarge
from dm_bridge.protocol import encode_reply
from dm_bridge.server import Server
from dm_bridge.server_core import DEFAULT_MAX_REPLY_BYTES

DM_BRIDGE = Path(sys.executable).parent / "dm-bridge"


def test_the_default_limit_refuses_a_full_field_spectrum_image_stating_the_limit():
    """512 x 512 x 2048 channels (2 GiB; the issue's 2.4 GB peak): refused at once."""
    assert DEFAULT_MAX_REPLY_BYTES == 1 << 30
    backend = MinimalBackend()
    with Server(backend, port=0) as server, BridgeClient(server.endpoint) as dm:
        assert dm.hello()["server"]["max_reply_bytes"] == 1 << 30
        dm.set_eels_parameters(channels=2048)
        with pytest.raises(TooLarge, match="1073741824 bytes") as info:
            dm.acquire_spectrum_image(512, 512)
        assert "at most 254 rows per call" in str(info.value)
        assert backend.instrument_time_total == 0.0  # nothing acquired


def test_every_acquisition_is_checked_against_the_reply_limit(connect_raw):
    backend = MinimalBackend()
    server = Server(backend, port=0, max_reply_bytes=1 << 20).start()
    try:
        peer = connect_raw(server.endpoint)

        def kind(command, rid, **args):
            h = {"protocol": 1, "id": rid, "command": command, "args": args}
            reply = peer.exchange([json.dumps(h).encode()])
            return "ok" if reply["ok"] else reply["error"]["kind"]

        two = ["HAADF", "BF"]
        assert kind("set_scan_parameters", 1, width=1024, height=512, signals=two) == "ok"
        assert kind("acquire_image", 2) == "too_large"  # 2 x 2 MiB of float32
        assert kind("set_scan_parameters", 3, signals=["HAADF"], width=256) == "ok"
        assert kind("acquire_image", 4) == "ok"  # 0.5 MiB
        assert kind("set_eels_parameters", 5, channels=2048) == "ok"
        assert kind("acquire_spectra_at_points", 6, points=[[1.0, 1.0]] * 200) == "too_large"
        assert kind("acquire_spectra_at_points", 7, points=[[1.0, 1.0]] * 100) == "ok"
        assert kind("acquire_spectrum", 8) == "ok"
        assert backend.instrument_time_total > 0
    finally:
        server.stop()


@pytest.mark.transport("stream")  # (the option, not the transport: once is enough)
def test_dm_bridge_serve_takes_the_limit_from_max_reply_mb():
    args = [str(DM_BRIDGE), "serve", "--backend", "minimal", "--port", "0"]
    proc = subprocess.Popen(
        [*args, "--max-reply-mb", "0.5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        endpoint = re.search(r"at ((?:tcp|stream)://\S+)", proc.stdout.readline()).group(1)
        with BridgeClient(endpoint) as dm:
            assert dm.hello()["server"]["max_reply_bytes"] == 2**19
            dm.set_scan_parameters(width=512, height=256)  # 512 KiB of float32: fits
            assert dm.acquire_image().images["HAADF"].shape == (256, 512)
            dm.set_scan_parameters(height=512)
            with pytest.raises(TooLarge, match="524288 bytes"):
                dm.acquire_image()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.transport("stream")  # (no socket involved: once is enough)
def test_a_reply_is_held_once_beside_a_working_space_that_does_not_grow():
    """The twin simulates spectra 1024 at a time into the cube it returns, and the reply's
    frames are that cube's memory: what the request costs above its reply is the same for
    a 16 MiB and a 64 MiB spectrum image (tracemalloc sees numpy's allocations)."""
    twin_module = pytest.importorskip("dm_bridge.backends.twin")
    twin = twin_module.TwinBackend("graphene")
    twin.set_eels_parameters(channels=2048)
    run_command(twin, "acquire_spectrum_image", {"rows": 2, "cols": 2})  # caches built
    extra = []
    for rows in (32, 128):
        tracemalloc.start()
        try:
            result = run_command(twin, "acquire_spectrum_image", {"rows": rows, "cols": 64})
            parts = encode_reply(1, result, 0.0, "acquire_spectrum_image", "test")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        cube = result["spectra"]
        assert any(np.shares_memory(np.frombuffer(p, np.uint8), cube) for p in parts[1:])
        reply = sum(memoryview(p).nbytes for p in parts)
        assert reply >= cube.nbytes == rows * 64 * 2048 * 4
        extra.append(peak - reply)
        del result, parts, cube
    assert extra[1] - extra[0] < 8 << 20, [e / 2**20 for e in extra]  # MiB; the reply grew 48
    assert extra[1] < 128 << 20
