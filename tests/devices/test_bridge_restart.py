"""A bridge that restarts forgets what the devices set (its backend's defaults return): the
devices notice the new server instance on the next reply, put their settings back, and
take again an acquisition that met the restarted bridge."""

from __future__ import annotations

import logging
import socket

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
import pytest
from bluesky.run_engine import call_in_bluesky_event_loop

from dm_bridge.aio import AsyncBridgeClient
from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.server import Server
from ophyd_stem import Microscope


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_settings_a_restarted_bridge_forgot_are_put_back(RE, tmp_path, caplog):
    port = free_port()
    first = Server(MinimalBackend(), port=port).start()
    client = AsyncBridgeClient(f"tcp://127.0.0.1:{port}", timeout=10)
    microscope = Microscope(client, assets_dir=tmp_path)
    call_in_bluesky_event_loop(microscope.connect())
    second = None
    try:
        RE(bps.mv(microscope.eels.channels, 256, microscope.eels.exposure, 0.02))
        RE(bps.mv(microscope.stem.beam.x, 12.5, microscope.stem.beam.y, 40.0))
        RE(bp.count([microscope.eels]))
        first.stop()
        second = Server(MinimalBackend(), port=port).start()  # defaults: 2048 channels
        caplog.set_level(logging.WARNING, logger="ophyd_stem.bridge")
        RE(bp.count([microscope.eels]))
        spectrum = RE.documents[-2][1]["data"]["eels-spectrum"]
        assert len(spectrum) == 256  # not the restarted bridge's 2048
        assert microscope.handle.restarts_seen == 1
        eels = second.backend.eels
        assert (eels.channels, eels.exposure) == (256, 0.02)
        assert second.backend.get_beam_position() == (12.5, 40.0)
        # the minimal backend's zero-loss peak height says where the spectrum was taken
        assert np.max(spectrum) == pytest.approx(1000.0 + 10.0 * 12.5 + 40.0)
        assert any("restarted" in r.getMessage() for r in caplog.records)
    finally:
        client.close()
        first.stop()
        if second is not None:
            second.stop()
