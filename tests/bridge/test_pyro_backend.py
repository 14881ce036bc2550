"""The pyro adoption backend against an in-process Pyro5 server that follows the public DM
``ArrayServer``'s method names and conventions (arrays as ``(list, shape, dtype)``, DigiScan
coordinates for the beam, a camera to activate before acquiring)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import numpy as np
import pytest

from dm_bridge.backends import load_backend
from dm_bridge.backends.pyro import PyroArrayServerBackend, array_from_pyro
from dm_bridge.client import BridgeClient
from dm_bridge.errors import InstrumentError, Unsupported
from dm_bridge.server import Server

Pyro5_api = pytest.importorskip("Pyro5.api")

DM_BRIDGE = Path(sys.executable).parent / "dm-bridge"
CAMERA = (8, 2048)  # rows, columns of the EELS camera read-out


def as_lists(array: np.ndarray) -> Tuple[list, tuple, str]:
    return array.tolist(), array.shape, str(array.dtype)


@Pyro5_api.expose
class ArrayServerDouble:
    """A stand-in for a lab's DM Pyro5 server: the same method names and conventions, and
    a tiny microscope behind them (the survey encodes its pixel index, the spectrum's
    height the beam's DigiScan position)."""

    def __init__(self) -> None:
        self.calls: List[Tuple[Any, ...]] = []
        self.beam = (0.0, 0.0)
        self.energy_offset = 0.0
        self.camera_active = False
        self.frame: Any = None

    def get_ds(self, size=256, pixelTime=10, return_params=False, front_image=False):
        self.calls.append(("get_ds", size, pixelTime))
        image = np.arange(size * size, dtype=np.uint32).reshape(size, size)
        return as_lists(image)

    def get_beam_pos(self):
        self.calls.append(("get_beam_pos",))
        return self.beam

    def set_beam_pos(self, x, y):
        self.calls.append(("set_beam_pos", x, y))
        self.beam = (float(x), float(y))

    def activate_camera(self):
        self.calls.append(("activate_camera",))
        self.camera_active = True

    def acquire_camera(self, exposure):
        self.calls.append(("acquire_camera", exposure))
        if not self.camera_active:
            raise RuntimeError("camera not activated")
        height = 1000.0 + self.beam[0] + 0.001 * self.beam[1]
        columns = np.arange(CAMERA[1], dtype=np.float32)
        self.frame = np.tile(height * np.exp(-0.5 * ((columns - 100) / 3) ** 2), (CAMERA[0], 1))

    def get_eels(self, dummy=False):
        self.calls.append(("get_eels",))
        return as_lists(np.sum(self.frame, axis=0))

    def set_energy_Offset(self, offset=0):
        self.calls.append(("set_energy_Offset", offset))
        self.energy_offset = offset


@pytest.fixture
def array_server() -> Iterator[Tuple[ArrayServerDouble, str]]:
    daemon = Pyro5_api.Daemon(host="127.0.0.1", port=0)
    double = ArrayServerDouble()
    uri = str(daemon.register(double, objectId="array.server"))
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        yield double, uri
    finally:
        daemon.shutdown()
        thread.join(10)


@pytest.fixture
def bridge(array_server) -> Iterator[Tuple[ArrayServerDouble, BridgeClient]]:
    double, uri = array_server
    backend = PyroArrayServerBackend(
        uri, beam_frame=(100.0, -50.0, 2.0, 4.0), field_of_view=20.0, dispersion=0.5
    )
    server = Server(backend, port=0).start()
    client = BridgeClient(server.endpoint, timeout=30)
    try:
        yield double, client
    finally:
        client.close()
        server.stop()
        backend.close()


def test_hello_says_what_is_emulated_and_what_is_unsupported(bridge):
    _, dm = bridge
    hello = dm.hello()
    assert hello["backend"] == "pyro"
    adoption = hello["instrument"]["adoption"]
    assert any("read-back" in e for e in adoption["emulated"])
    assert "beam blanking" in adoption["unsupported"]
    assert hello["instrument"]["limits"]["signals"] == ["HAADF"]


def test_a_survey_is_one_get_ds_with_the_dwell_in_microseconds(bridge):
    double, dm = bridge
    dm.set_scan_parameters(width=32, height=32, dwell_time=4e-6)
    acq = dm.acquire_image()
    image = acq.images["HAADF"]
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, np.arange(32 * 32).reshape(32, 32))
    assert acq.pixel_size == pytest.approx(20.0 / 32)
    assert ("get_ds", 32, pytest.approx(4.0)) in double.calls


def test_beam_positions_go_through_the_digiscan_frame(bridge):
    double, dm = bridge
    dm.set_scan_parameters(width=64, height=64)
    assert dm.set_beam_position(10.5, 20.25) == (10.5, 20.25)
    assert double.beam == (100.0 + 2.0 * 10.5, -50.0 + 4.0 * 20.25)
    double.beam = (110.0, -10.0)  # the operator moved it in DM
    assert dm.get_beam_position() == (5.0, 10.0)


def test_spectra_arm_the_camera_once_and_keep_the_channels_asked_for(bridge):
    double, dm = bridge
    eels = dm.set_eels_parameters(exposure=0.05, energy_offset=150.0, channels=256)
    assert double.energy_offset == 150.0
    assert eels["dispersion"] == 0.5  # stated, not read back
    one = dm.acquire_spectrum()
    two = dm.acquire_spectrum()
    assert one.spectra.shape == two.spectra.shape == (256,)
    assert one.energy_axis[0] == 150.0
    assert np.diff(one.energy_axis) == pytest.approx(0.5)
    assert [c[0] for c in double.calls].count("activate_camera") == 1
    assert ("acquire_camera", 0.05) in double.calls
    assert dm.get_eels_parameters()["exposure"] == 0.05  # emulated read-back


def test_spectra_at_points_are_taken_one_by_one(bridge):
    double, dm = bridge
    dm.set_scan_parameters(width=64, height=64)
    points = np.array([[1.0, 2.0], [30.0, 40.0], [63.0, 0.0]])
    start = len(double.calls)
    acq = dm.acquire_spectra_at_points(points)
    assert acq.spectra.shape == (3, 2048)
    assert acq.metadata["emulated"].startswith("one set_beam_pos")
    names = [c[0] for c in double.calls[start:] if c[0] != "activate_camera"]
    assert names == ["set_beam_pos", "acquire_camera", "get_eels"] * 3
    peaks = acq.spectra.max(axis=1) / CAMERA[0]
    ds_x = 100.0 + 2.0 * points[:, 0]
    ds_y = -50.0 + 4.0 * points[:, 1]
    np.testing.assert_allclose(peaks, 1000.0 + ds_x + 0.001 * ds_y, rtol=1e-5)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda dm: dm.set_scan_parameters(width=64, height=32), "square"),
        (lambda dm: dm.set_scan_parameters(rotation=10.0), "rotate"),
        (lambda dm: dm.set_eels_parameters(dispersion=0.25), "dispersion"),
        (lambda dm: dm.blank_beam(), "blanker"),
        (lambda dm: dm.get_truth(), "ground truth"),
    ],
)
def test_what_the_server_cannot_do_is_unsupported(bridge, call, match):
    _, dm = bridge
    with pytest.raises(Unsupported, match=match):
        call(dm)


def test_other_detectors_and_binnings_are_out_of_range(bridge):
    _, dm = bridge
    with pytest.raises(Exception, match="not available") as info:
        dm.set_scan_parameters(signals=["BF"])
    assert info.value.kind == "out_of_range"
    with pytest.raises(Exception, match="binning") as info:
        dm.set_eels_parameters(binning=2)
    assert info.value.kind == "out_of_range"


def test_a_server_that_is_gone_is_an_instrument_error(array_server):
    _, uri = array_server
    backend = PyroArrayServerBackend(uri.replace("array.server", "no.such.object"))
    with pytest.raises(InstrumentError, match="failed in get_ds"):
        backend.acquire_image()


@pytest.mark.parametrize(
    "value", [[1, 2], ([1, 2], (3,), "int16"), ([1, 2], (2,), "<U3"), None, "text"]
)
def test_answers_not_shaped_like_arrays_are_instrument_errors(value):
    with pytest.raises(InstrumentError, match="list, shape, dtype"):
        array_from_pyro(value, "spectrum")


def test_the_backend_is_loaded_by_name(array_server):
    _, uri = array_server
    backend = load_backend("pyro", uri=uri)
    assert isinstance(backend, PyroArrayServerBackend)


def test_dm_bridge_serve_fronts_a_pyro5_server(array_server):
    double, uri = array_server
    proc = subprocess.Popen(
        [
            str(DM_BRIDGE),
            "serve",
            "--backend",
            "pyro",
            "--pyro-uri",
            uri,
            "--pyro-beam-frame",
            "0,0,1,1",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        match = re.search(r"at ((?:tcp|stream)://\S+)", proc.stdout.readline())
        assert match, proc.stderr.read()
        with BridgeClient(match.group(1), timeout=30) as dm:
            assert dm.hello()["instrument"]["name"].startswith("Pyro5 DM ArrayServer")
            dm.set_scan_parameters(width=16, height=16)
            assert dm.acquire_image().images["HAADF"].shape == (16, 16)
            dm.set_beam_position(3.0, 4.0)
            assert double.beam == (3.0, 4.0)
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


#: the public server's way of serving (its class registered: an instance per connection)
SERVE_LIKE_DM = """
import sys, Pyro5.api
sys.path.insert(0, sys.argv[1])
from test_pyro_backend import ArrayServerDouble
daemon = Pyro5.api.Daemon(host="127.0.0.1", port=int(sys.argv[2]))
daemon.register(ArrayServerDouble, objectId="array.server")
print(daemon.locationStr, flush=True)
daemon.requestLoop()
"""


def test_a_restarted_array_server_gets_its_camera_armed_again():
    """The public server registers its class, so each connection gets its own instance
    (Pyro5's "session" mode) and a restarted DigitalMicrograph a fresh one: the camera the
    bridge armed is unarmed there. The call that meets the restart fails; the next ones arm
    the camera again instead of failing for good."""

    def serve(port: int) -> Tuple[subprocess.Popen, int]:
        args = [sys.executable, "-c", SERVE_LIKE_DM, str(Path(__file__).parent), str(port)]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        return proc, int(proc.stdout.readline().rsplit(":", 1)[1])

    dm, port = serve(0)
    backend = PyroArrayServerBackend(f"PYRO:array.server@127.0.0.1:{port}", call_timeout=30)
    try:
        assert backend.acquire_spectrum().spectra.shape == (2048,)
        dm.kill()  # DigitalMicrograph restarted
        dm.wait(10)
        dm.stdout.close()
        dm, _ = serve(port)
        with pytest.raises(InstrumentError):
            backend.acquire_spectrum()  # the old connection is gone
        assert backend.acquire_spectrum().spectra.shape == (2048,)
        assert backend.acquire_spectrum().spectra.shape == (2048,)
    finally:
        backend.close()
        dm.kill()
        dm.wait(10)
        dm.stdout.close()
