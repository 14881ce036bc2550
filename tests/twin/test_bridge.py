"""The twin served by the real bridge server over loopback, used by the real client."""

from __future__ import annotations

import numpy as np
import pytest

from dm_bridge.client import BridgeClient
from dm_bridge.errors import OutOfRange
from dm_bridge.server import Server


@pytest.fixture
def served(make_twin):
    twin = make_twin("graphene", seed=9, noise_level=0.4)
    server = Server(twin, port=0).start()
    client = BridgeClient(server.endpoint, timeout=30.0)
    try:
        yield twin, client
    finally:
        client.close()
        server.stop()


def test_image_spectra_and_truth_over_the_bridge(served):
    twin, client = served
    hello = client.hello()
    assert hello["backend"] == "twin"
    assert "get_truth" in hello["capabilities"]
    client.set_scan_parameters(width=128, height=128, field_of_view=2.5)
    image = client.acquire_image()
    assert image.images["HAADF"].shape == (128, 128)
    assert image.pixel_size == pytest.approx(2.5 / 128)
    assert image.instrument_time > 0
    spectra = client.acquire_spectra_at_points(np.array([[10.5, 20.25], [64.0, 64.0]]))
    assert spectra.spectra.shape == (2, twin.eels.channels)
    assert spectra.instrument_time == pytest.approx(twin.timing.points_time(2, twin.eels.exposure))

    truth = client.get_truth()
    local = twin.get_truth()
    assert truth["frame"] == local["frame"]
    assert truth["label_names"] == local["label_names"]
    np.testing.assert_array_equal(truth["labels"], local["labels"])
    np.testing.assert_array_equal(truth["atoms"]["xy_px"], local["atoms"]["xy_px"])
    np.testing.assert_array_equal(truth["atoms"]["z"], local["atoms"]["z"])
    np.testing.assert_allclose(truth["clean_image"], local["clean_image"])
    # the noise-free image the truth describes is the one the client received, minus noise
    residual = image.images["HAADF"] - truth["clean_image"]
    assert abs(residual.mean()) < 0.05 * truth["clean_image"].mean()


def test_bridge_reports_twin_errors(served):
    _, client = served
    with pytest.raises(OutOfRange):
        client.acquire_spectra_at_points(np.array([[1e4, 1.0]]))
