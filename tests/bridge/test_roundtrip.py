"""Every command over a real socket gives what the backend gives in-process, bit for bit."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from dm_bridge.aio import AsyncBridgeClient
from dm_bridge.backends.base import ImageAcquisition, SpectrumAcquisition
from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.client import BridgeClient
from dm_bridge.errors import BadRequest, OutOfRange, Unsupported
from dm_bridge.local import AsyncLocalClient, LocalClient
from dm_bridge.protocol import PROTOCOL_VERSION

RNG = np.random.default_rng(7)


def _same_acquisition(remote, local):
    assert type(remote) is type(local)
    if isinstance(local, ImageAcquisition):
        assert remote.images.keys() == local.images.keys()
        for name, image in local.images.items():
            assert remote.images[name].dtype == image.dtype
            assert remote.images[name].tobytes() == image.tobytes()
        assert (remote.pixel_size, remote.origin, remote.units) == (
            local.pixel_size,
            tuple(local.origin),
            local.units,
        )
        assert remote.scan == local.scan
    else:
        for field in ("spectra", "energy_axis", "positions"):
            a, b = getattr(remote, field), getattr(local, field)
            assert a.dtype == b.dtype, field
            assert a.shape == b.shape, field
            assert a.tobytes() == b.tobytes(), field
        assert remote.eels == local.eels
    assert remote.instrument_time == local.instrument_time
    assert remote.metadata == local.metadata


SCRIPT = [
    ("get_scan_parameters", (), {}),
    ("set_scan_parameters", (), {"width": 96, "height": 40, "signals": ["HAADF", "BF"]}),
    ("set_scan_parameters", (), {"dwell_time": 5e-6, "rotation": 12.5, "field_of_view": 25.0}),
    ("acquire_image", (), {}),
    ("get_beam_position", (), {}),
    ("set_beam_position", (17.375, 3.0625), {}),
    ("get_beam_position", (), {}),
    ("blank_beam", (), {}),
    ("unblank_beam", (), {}),
    ("get_eels_parameters", (), {}),
    ("set_eels_parameters", (), {"exposure": 0.02, "energy_offset": 10.5, "binning": 2}),
    ("acquire_spectrum", (), {}),
    ("acquire_spectra_at_points", (RNG.uniform(-0.5, 39.5, size=(25, 2)),), {}),
    ("acquire_spectra_at_points", ([[0.25, 1.5], [3, 4]],), {}),
    ("acquire_spectrum_image", (3, 5), {}),
    ("acquire_spectrum_image", (2, 2, (1.5, 2.5, 10.0, 20.0)), {}),
    ("get_beam_position", (), {}),
]


def test_every_command_matches_the_in_process_backend(bridge_client):
    local = LocalClient(MinimalBackend())
    for name, args, kwargs in SCRIPT:
        remote_value = getattr(bridge_client, name)(*args, **kwargs)
        local_value = getattr(local, name)(*args, **kwargs)
        if isinstance(local_value, (ImageAcquisition, SpectrumAcquisition)):
            _same_acquisition(remote_value, local_value)
        else:
            assert remote_value == local_value, name
            assert type(remote_value) is type(local_value), name


def test_sub_pixel_positions_survive_exactly(bridge_client):
    for x, y in [(0.1, 0.2), (255.4999999, 511.5), (-0.5, -0.5), (1 / 3, 2 / 7)]:
        assert bridge_client.set_beam_position(x, y) == (x, y)
        assert bridge_client.get_beam_position() == (x, y)


def test_hello_reports_protocol_instrument_and_limits(bridge_client):
    info = bridge_client.hello()
    assert info["protocol"] == PROTOCOL_VERSION
    assert info["backend"] == "minimal"
    assert "acquire_spectra_at_points" in info["capabilities"]
    assert info["instrument"]["limits"]["max_exposure"] == 10.0
    assert info["server"]["queue_limit"] == 8


def test_status_reports_idle_queue_and_last_error(bridge_client):
    with pytest.raises(OutOfRange):
        bridge_client.set_beam_position(1e6, 0)
    status = bridge_client.status()
    assert status["state"] == "idle"
    assert status["queue"] == 0
    assert "out_of_range" in status["last_error"]
    assert status["beam_blanked"] is False


def test_backend_errors_arrive_as_their_own_classes(bridge_client):
    with pytest.raises(OutOfRange, match="outside the scan field"):
        bridge_client.acquire_spectra_at_points([[1, 1], [9999, 1]])
    with pytest.raises(OutOfRange, match="exposure"):
        bridge_client.set_eels_parameters(exposure=100.0)
    with pytest.raises(OutOfRange, match="width"):
        bridge_client.set_scan_parameters(width=100_000)
    with pytest.raises(BadRequest, match="unknown argument"):
        bridge_client.set_scan_parameters(colour="red")
    with pytest.raises(BadRequest, match="finite"):
        bridge_client.acquire_spectra_at_points([[1.0, float("nan")]])
    with pytest.raises(Unsupported):
        bridge_client.get_truth()


def test_images_arrive_writable_and_float32(bridge_client):
    image = bridge_client.acquire_image().images["HAADF"]
    assert image.dtype == np.float32
    image += 1  # a user may work on the array in place
    assert image[0, 0] == 1.0


@pytest.mark.parametrize("client_cls", [BridgeClient, AsyncBridgeClient])
def test_network_clients_have_the_local_clients_signatures(client_cls):
    local_cls = LocalClient if client_cls is BridgeClient else AsyncLocalClient
    public = {
        n for n in dir(local_cls) if not n.startswith("_") and callable(getattr(local_cls, n))
    }
    for name in public:
        assert hasattr(client_cls, name), name
        want = inspect.signature(getattr(local_cls, name))
        got = inspect.signature(getattr(client_cls, name))
        assert list(got.parameters) == list(want.parameters), name
        assert inspect.iscoroutinefunction(getattr(client_cls, name)) == (
            inspect.iscoroutinefunction(getattr(local_cls, name))
        ), name


def test_status_has_every_key_the_local_client_reports(bridge_client):
    local = LocalClient(MinimalBackend()).status()
    remote = bridge_client.status()
    assert set(local) <= set(remote)
    assert (remote["state"], remote["current_command"], remote["queue"]) == ("idle", None, 0)
