"""A bridge that restarts forgets what the devices set (its backend's defaults return): the
devices notice the new server instance on the next reply, put their settings back, and
take again an acquisition that met the restarted bridge."""

from __future__ import annotations

import asyncio
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
    client = AsyncBridgeClient(first.endpoint, timeout=10)
    microscope = Microscope(client, assets_dir=tmp_path)
    call_in_bluesky_event_loop(microscope.connect())
    second = None
    try:
        RE(bps.mv(microscope.eels.channels, 256, microscope.eels.exposure, 0.02))
        RE(bps.mv(microscope.stem.beam.x, 12.5, microscope.stem.beam.y, 40.0))
        RE(bps.mv(microscope.stem.beam_blank, True))  # sparing the sample between spectra
        RE(bp.count([microscope.eels]))
        first.stop()
        second = Server(MinimalBackend(), port=port).start()  # defaults: 2048 channels
        caplog.set_level(logging.WARNING, logger="ophyd_stem.bridge")
        # the first read after the restart shows what the devices set, not the defaults
        assert call_in_bluesky_event_loop(microscope.eels.channels.get_value()) == 256
        RE(bp.count([microscope.eels]))
        spectrum = RE.documents[-2][1]["data"]["eels-spectrum"]
        assert len(spectrum) == 256  # not the restarted bridge's 2048
        assert microscope.handle.restarts_seen == 1
        eels = second.backend.eels
        assert (eels.channels, eels.exposure) == (256, 0.02)
        assert second.backend.get_beam_position() == (12.5, 40.0)
        assert second.backend.status()["beam_blanked"] is True  # not the restart's unblanked
        # the minimal backend's zero-loss peak height says where the spectrum was taken
        assert np.max(spectrum) == pytest.approx(1000.0 + 10.0 * 12.5 + 40.0)
        assert any("restarted" in r.getMessage() for r in caplog.records)
    finally:
        client.close()
        first.stop()
        if second is not None:
            second.stop()


@pytest.mark.parametrize("device", ["eels_points", "eels"])
def test_a_suspension_abandons_the_bridge_call_in_flight(tmp_path, device):
    """The RunEngine suspends when the bridge stops answering, and a status it no longer
    waits for that fails later (the call timing out) would fail the whole run. A device told
    to pause abandons its call in flight: the status completes, the replay repeats the work.
    Seen in CI: ``prepare`` asking the field's size while the bridge was down."""
    port = free_port()
    server = Server(MinimalBackend(), port=port).start()
    client = AsyncBridgeClient(server.endpoint, timeout=10)
    microscope = Microscope(client, assets_dir=tmp_path)
    call_in_bluesky_event_loop(microscope.connect())
    hung = asyncio.Event()

    async def bridge_down(*args, **kwargs):
        hung.set()
        await asyncio.sleep(3600)  # the call that never returns

    target = getattr(microscope, device)
    try:
        if device == "eels_points":
            microscope.handle.scan_size = bridge_down

            async def operation():
                return target.prepare(np.array([[1.0, 2.0]]))
        else:
            microscope.handle.acquire = bridge_down

            async def operation():
                return target.trigger()

        async def suspend_mid_call():
            status = await operation()
            await asyncio.wait_for(hung.wait(), 5)
            assert not status.done
            target.pause()  # what the RunEngine does to every device when it suspends
            await asyncio.wait_for(status, 5)
            return status

        status = call_in_bluesky_event_loop(suspend_mid_call())
        assert status.success
        target.resume()
        if device == "eels_points":
            # nothing was prepared by the abandoned call: a kickoff now would acquire nothing
            assert len(target._points) == 0
    finally:
        client.close()
        server.stop()
