"""The DM backend (on the fake DM) served by the real bridge server over a loopback socket."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from dm_bridge.client import BridgeClient
from dm_bridge.errors import Aborted, BadRequest, InstrumentError, Unsupported
from dm_bridge.server import Server

pytestmark = pytest.mark.dm_fake


@pytest.fixture
def dm_client(dm, backend):
    server = Server(backend, port=0).start()
    client = BridgeClient(server.endpoint, timeout=10.0)
    try:
        yield client
    finally:
        client.close()
        server.stop()


def test_a_round_of_client_calls_reaches_dm(dm, dm_client):
    hello = dm_client.hello()
    assert hello["backend"] == "dm"
    assert hello["instrument"]["high_tension_kv"] == 200.0
    with pytest.raises(BadRequest, match="acquire_image first"):
        dm_client.set_beam_position(3.0, 4.0)

    dm_client.set_scan_parameters(width=64, height=48, rotation=15.0, signals=["HAADF", "BF"])
    survey = dm_client.acquire_image()
    assert survey.images["BF"].shape == (48, 64)
    assert survey.pixel_size == pytest.approx(40.0 / 64)
    with pytest.raises(Unsupported, match="magnification"):
        dm_client.set_scan_parameters(field_of_view=10.0)

    dm_client.set_beam_position(20.5, 7.25)
    inst = dm._instrument
    assert inst.pixel_of(inst.beam_physical_ds) == pytest.approx((20.5, 7.25), abs=1e-9)
    assert dm_client.get_beam_position() == pytest.approx((20.5, 7.25), abs=1e-9)

    dm_client.set_eels_parameters(energy_offset=-5.0, exposure=0.05)
    assert inst.energy_loss == -5.0
    spectrum = dm_client.acquire_spectrum()
    zero = int(np.argmin(np.abs(spectrum.energy_axis)))
    assert spectrum.spectra[zero] == pytest.approx(0.05 * (1000 + 205 + 7.25 + 50))
    inst.energy_loss = 12.0  # the operator moves the drift tube in DM
    assert dm_client.get_eels_parameters()["energy_offset"] == 12.0

    stack = dm_client.acquire_spectra_at_points(np.array([[1.0, 2.0], [60.0, 40.0]]))
    assert stack.spectra.shape == (2, 2048)

    inst.fail["AcquireImage"] = "Camera is not inserted"
    with pytest.raises(InstrumentError, match="Camera is not inserted"):
        dm_client.acquire_spectrum()
    assert "Camera is not inserted" in dm_client.status()["last_error"]


def test_status_and_abort_during_a_long_frame_reach_dm_only_from_the_script_thread(
    dm, backend, dm_client
):
    """The server's standby thread answers status and takes the abort; the frame is
    stopped by the thread serving the backend, the only one that ever calls DM."""
    inst = dm._instrument
    inst.frame_polls = 10**9  # a frame that runs until stopped
    dm_client.set_scan_parameters(width=64, height=48)
    inst.threads.clear()
    errors = []

    def survey():
        try:
            dm_client.acquire_image(timeout=30)
        except Exception as exc:  # the expected Aborted, checked below
            errors.append(exc)

    worker = threading.Thread(target=survey)
    worker.start()
    with BridgeClient(dm_client.address, timeout=10) as operator:
        deadline = time.monotonic() + 10
        while operator.status()["current_command"] != "acquire_image":
            assert time.monotonic() < deadline, "the frame never started"
            time.sleep(0.01)
        assert operator.status()["acquiring"] == "digiscan"
        operator.abort()
    worker.join(10)
    assert [type(e) for e in errors] == [Aborted]
    assert ("DSStopAcquisition", (-1.0,)) in inst.calls
    assert len(inst.threads) == 1  # every DM call came from the one serving thread
    assert inst.dialog_enabled
    assert not inst.ds_params
