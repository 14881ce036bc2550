"""The dm-bridge command: keys that work, a server that logs, options of the chosen backend,
the demo, and timeouts sized to the acquisition."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.cli import main
from dm_bridge.client import BridgeClient
from dm_bridge.errors import BridgeTimeout, OutOfRange
from dm_bridge.server import Server

DM_BRIDGE = Path(sys.executable).parent / "dm-bridge"


def test_keys_writes_usable_keys_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "keys"
    assert main(["keys", "--out", str(out), "--clients", "2"]) == 0
    printed = capsys.readouterr().out
    assert "server.key_secret" in printed
    assert sorted(p.name for p in (out / "clients").iterdir()) == ["client-1.key", "client-2.key"]
    # Only public keys where the server looks; each pair stays in private/.
    assert sorted(p.name for p in (out / "private").iterdir()) == [
        "client-1.key_secret",
        "client-2.key_secret",
    ]
    if os.name == "posix":
        assert (out / "server.key_secret").stat().st_mode & 0o077 == 0
    server_secret = (out / "server.key_secret").read_bytes()
    assert main(["keys", "--out", str(out), "--clients", "1"]) == 0
    assert (out / "server.key_secret").read_bytes() == server_secret
    assert (out / "clients" / "client-3.key").exists()

    server = Server(
        MinimalBackend(),
        port=0,
        server_secret_key=out / "server.key_secret",
        allowed_clients=out / "clients",
    ).start()
    try:
        for n in (1, 2, 3):
            with BridgeClient(
                server.endpoint,
                server_public_key=out / "server.key",
                client_secret_key=out / "private" / f"client-{n}.key_secret",
            ) as client:
                assert client.set_beam_position(n, n) == (n, n)
    finally:
        server.stop()


def test_serve_logs_errors_at_info_and_each_request_at_debug():
    proc = subprocess.Popen(
        [str(DM_BRIDGE), "serve", "--backend", "minimal", "--port", "0", "--log-level", "debug"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        endpoint = re.search(r"at ((?:tcp|stream)://\S+)", proc.stdout.readline()).group(1)
        with BridgeClient(endpoint) as client:
            client.set_beam_position(2.0, 3.0)
            with pytest.raises(OutOfRange):
                client.set_beam_position(-5.0, 3.0)
            client.status()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        log = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert re.search(r"DEBUG dm_bridge\.server: set_beam_position id=\d+ ok \([\d.]+ ms\)", log)
    assert re.search(
        r"INFO dm_bridge\.server: set_beam_position id=\d+ error out_of_range: beam", log
    )
    assert re.search(r"status id=\d+ ok", log)


def test_serve_reports_a_port_in_use(bridge_server):
    port = bridge_server.endpoint.rsplit(":", 1)[1]
    result = subprocess.run(
        [str(DM_BRIDGE), "serve", "--backend", "minimal", "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot serve" in result.stderr


def test_serve_help_lists_the_chosen_backends_options():
    result = subprocess.run(
        [str(DM_BRIDGE), "serve", "--backend", "minimal", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "--time-scale" in result.stdout
    assert "--max-exposure" in result.stdout


def test_demo_makes_a_round_of_calls(capsys):
    assert main(["demo", "--backend", "minimal", "--points", "8"]) == 0
    out = capsys.readouterr().out
    for command in (
        "hello",
        "set_scan_parameters",
        "acquire_image",
        "set_beam_position",
        "acquire_spectra_at_points",
        "status",
    ):
        assert re.search(rf"^  {command} +[\d.]+ ms ", out, re.MULTILINE), command
    assert "(8, 2048) spectra" in out
    assert "stopped cleanly" in out


def test_acquisition_timeouts_grow_with_the_expected_instrument_time():
    backend = MinimalBackend(time_scale=1.0)
    backend.set_eels_parameters(exposure=0.05)
    points = np.column_stack([np.arange(12.0), np.zeros(12)])  # 0.6 s on the instrument
    with Server(backend, port=0) as server, BridgeClient(server.endpoint, timeout=0.3) as dm:
        # 0.3 s plus twice the expected time (hello tells the overheads): enough.
        assert dm.acquire_spectra_at_points(points).spectra.shape == (12, 2048)
        with pytest.raises(BridgeTimeout):  # an explicit timeout means exactly that
            dm.acquire_spectra_at_points(points, timeout=0.3)
        dm.abort()
