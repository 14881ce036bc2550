"""The asyncio client against a real server: results, errors, timeouts, a free event loop."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from dm_bridge.aio import AsyncBridgeClient
from dm_bridge.backends.base import ImageAcquisition, SpectrumAcquisition
from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.errors import Aborted, BridgeConnectionError, BridgeTimeout, OutOfRange
from dm_bridge.server import Server


@pytest.fixture
def realtime_server():
    backend = MinimalBackend(time_scale=1.0)
    backend.set_eels_parameters(exposure=0.05)
    server = Server(backend, port=0).start()
    yield server
    server.stop()


async def test_async_round_trip(bridge_server):
    async with AsyncBridgeClient(bridge_server.endpoint) as dm:
        assert (await dm.hello())["backend"] == "minimal"
        scan = await dm.set_scan_parameters(width=64, height=32, signals=["BF"])
        assert (scan["width"], scan["height"], scan["signals"]) == (64, 32, ["BF"])
        image = await dm.acquire_image()
        assert isinstance(image, ImageAcquisition)
        assert image.images["BF"].shape == (32, 64)
        assert await dm.set_beam_position(3.25, 4.75) == (3.25, 4.75)
        await dm.blank_beam()
        assert (await dm.status())["beam_blanked"] is True
        await dm.unblank_beam()
        eels = await dm.set_eels_parameters(binning=4)
        assert eels["channels"] == 512
        spectrum = await dm.acquire_spectrum()
        assert isinstance(spectrum, SpectrumAcquisition)
        assert spectrum.spectra.shape == (512,)
        np.testing.assert_array_equal(spectrum.positions, [[3.25, 4.75]])
        grid = await dm.acquire_spectrum_image(2, 3, region=(0, 0, 10, 10))
        assert grid.spectra.shape == (2, 3, 512)
        with pytest.raises(OutOfRange):
            await dm.set_beam_position(-10, 0)


async def test_async_timeout_raises_bridge_timeout(realtime_server):
    points = np.column_stack([np.arange(40.0), np.zeros(40)])  # 2 s of acquisition
    async with AsyncBridgeClient(realtime_server.endpoint) as dm:
        with pytest.raises(BridgeTimeout, match="connected, but no reply"):
            await dm.acquire_spectra_at_points(points, timeout=0.2)
        await dm.abort()
        # The client is usable at once after a timeout.
        assert await dm.set_beam_position(1.0, 1.0) == (1.0, 1.0)


async def test_async_timeout_against_nobody():
    dm = AsyncBridgeClient("tcp://127.0.0.1:9", timeout=0.2)
    try:
        with pytest.raises(BridgeTimeout, match="no connection"):
            await dm.hello()
    finally:
        dm.close()


async def test_waiting_for_an_acquisition_leaves_the_event_loop_free(realtime_server):
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    points = np.column_stack([np.arange(10.0), np.zeros(10)])  # 0.5 s
    async with AsyncBridgeClient(realtime_server.endpoint) as dm:
        task = asyncio.ensure_future(ticker())
        try:
            await dm.acquire_spectra_at_points(points)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert ticks > 0  # a blocked loop would not have ticked at all


async def test_status_and_abort_from_another_task_during_an_acquisition(realtime_server):
    points = np.column_stack([np.arange(100.0), np.zeros(100)])  # 5 s
    async with AsyncBridgeClient(realtime_server.endpoint) as dm:
        acquisition = asyncio.ensure_future(dm.acquire_spectra_at_points(points))
        for _ in range(1000):  # until the acquisition (not the first, short call) runs
            status = await dm.status()
            if status["current_command"] == "acquire_spectra_at_points":
                break
            await asyncio.sleep(0.01)
        assert status["state"] == "busy"
        await dm.abort()
        with pytest.raises(Aborted):
            await acquisition


async def test_cancelling_a_call_leaves_the_client_usable(realtime_server):
    points = np.column_stack([np.arange(20.0), np.zeros(20)])  # 1 s
    async with AsyncBridgeClient(realtime_server.endpoint) as dm:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(dm.acquire_spectra_at_points(points), 0.1)
        await dm.abort()
        assert (await dm.get_beam_position())[1] == 0.0


async def test_a_closed_client_says_so(bridge_server):
    dm = AsyncBridgeClient(bridge_server.endpoint)
    await dm.hello()
    dm.close()
    with pytest.raises(BridgeConnectionError, match="closed"):
        await dm.hello()
