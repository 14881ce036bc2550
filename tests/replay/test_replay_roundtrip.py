"""Export from a backend (directly, over a real bridge server, and from the twin), replay the
file, and get the same data back."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.backends.recording import RecordingError
from dm_bridge.backends.recording_export import export_recording
from dm_bridge.backends.replay import ReplayBackend
from dm_bridge.errors import Unsupported

pytest.importorskip("rsciio.hspy")

FORMATS = ["hspy", "npz", "h5"]


class Recorder:
    """Delegates to an instrument and keeps what it returned (the twin's noise differs from
    one acquisition to the next, so a round trip compares with what was exported)."""

    def __init__(self, instrument):
        self._instrument = instrument
        self.image = None
        self.spectrum_image = None

    def __getattr__(self, name):
        return getattr(self._instrument, name)

    def acquire_image(self, *args, **kwargs):
        self.image = self._instrument.acquire_image(*args, **kwargs)
        return self.image

    def acquire_spectrum_image(self, *args, **kwargs):
        self.spectrum_image = self._instrument.acquire_spectrum_image(*args, **kwargs)
        return self.spectrum_image


@pytest.fixture
def minimal():
    source = MinimalBackend()
    source.set_scan_parameters(
        width=16, height=12, field_of_view=8.0, dwell_time=1e-5, signals=["HAADF", "BF"]
    )
    source.set_eels_parameters(channels=64, dispersion=0.5, energy_offset=-5.0, exposure=0.02)
    return source


def assert_replays(replay, recorder, rows, cols, region=None):
    """The replay serves exactly what the recorder saw exported."""
    image, si = recorder.image, recorder.spectrum_image
    acq = replay.acquire_image()
    assert list(acq.images) == list(image.images)  # same signals, same order
    for name, data in image.images.items():
        assert np.array_equal(acq.images[name], data)
    assert acq.pixel_size == pytest.approx(image.pixel_size)
    assert acq.origin == pytest.approx(image.origin, abs=1e-9)
    again = replay.acquire_spectrum_image(rows, cols, region)
    assert np.array_equal(again.spectra, si.spectra)
    np.testing.assert_allclose(again.energy_axis, si.energy_axis, rtol=0, atol=1e-9)
    assert np.array_equal(again.positions, si.positions)


@pytest.mark.parametrize("fmt", FORMATS)
def test_minimal_backend_round_trip(minimal, tmp_path, fmt):
    recorder = Recorder(minimal)
    path = export_recording(recorder, tmp_path / f"run.{fmt}", rows=3, cols=4)
    replay = ReplayBackend(path)
    scan, eels = minimal.get_scan_parameters(), minimal.get_eels_parameters()
    assert replay.get_scan_parameters() == scan
    assert replay.get_eels_parameters() == eels
    assert_replays(replay, recorder, 3, 4)
    assert replay.describe()["high_tension_kv"] == minimal.describe()["high_tension_kv"]


def test_replay_interpolates_a_coarse_export_back_to_the_source(minimal, tmp_path):
    """The minimal backend's spectrum is linear in x and y, so bilinear interpolation of a
    coarse export reproduces the source anywhere inside the exported grid: a check of the
    mapping between the survey grid and a differently sampled spectrum image."""
    path = export_recording(minimal, tmp_path / "coarse.hspy", rows=4, cols=3)
    replay = ReplayBackend(path)
    rng = np.random.default_rng(7)
    points = rng.uniform([0, 0], [15, 11], size=(40, 2))
    expected = minimal.acquire_spectra_at_points(points).spectra
    served = replay.acquire_spectra_at_points(points)
    np.testing.assert_allclose(served.spectra, expected, rtol=1e-5, atol=1e-6 * expected.max())
    assert "outside_recording" not in served.metadata


def test_export_of_a_region(minimal, tmp_path):
    recorder = Recorder(minimal)
    region = (2.0, 3.0, 10.0, 9.0)
    path = export_recording(recorder, tmp_path / "region.npz", rows=4, cols=5, region=region)
    replay = ReplayBackend(path)
    assert_replays(replay, recorder, 4, 5, region)
    # outside the exported region the nearest edge spectrum is served, and flagged
    corner = replay.acquire_spectra_at_points([[15, 11]])
    assert np.array_equal(corner.spectra[0], recorder.spectrum_image.spectra[-1, -1])
    assert corner.metadata["outside_recording"] == 1


def test_export_restores_the_signal_selection(minimal, tmp_path):
    path = export_recording(minimal, tmp_path / "bf.hspy", rows=2, cols=2, signals="BF")
    assert minimal.get_scan_parameters()["signals"] == ["HAADF", "BF"]
    assert ReplayBackend(path).get_scan_parameters()["signals"] == ["BF"]


def test_export_refuses_unknown_formats_before_acquiring(minimal, tmp_path):
    with pytest.raises(RecordingError, match="cannot export"):
        export_recording(minimal, tmp_path / "run.tiff", rows=2, cols=2)
    assert minimal.instrument_time_total == 0.0
    assert not list(tmp_path.iterdir())


def test_failed_export_keeps_the_previous_file(minimal, tmp_path):
    path = export_recording(minimal, tmp_path / "keep.hspy", rows=2, cols=2)
    before = path.read_bytes()

    class Broken(Recorder):
        def acquire_spectrum_image(self, *args, **kwargs):
            raise RuntimeError("detector fault")

    with pytest.raises(RuntimeError, match="detector fault"):
        export_recording(Broken(minimal), path, rows=2, cols=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.hspy"]


def test_export_and_replay_over_a_real_bridge(minimal, tmp_path):
    """A bridge client has the backend's methods: export through one, then serve the
    recording with a replay server and read it back through another."""
    server_module = pytest.importorskip("dm_bridge.server")
    client_module = pytest.importorskip("dm_bridge.client")
    server = server_module.Server(minimal, port=0).start()
    try:
        with client_module.BridgeClient(server.endpoint) as client:
            recorder = Recorder(client)
            path = export_recording(recorder, tmp_path / "wire.hspy", rows=3, cols=2)
    finally:
        server.stop()
    server = server_module.Server(ReplayBackend(path), port=0).start()
    try:
        with client_module.BridgeClient(server.endpoint) as client:
            assert client.hello()["backend"] == "replay"
            assert client.get_scan_parameters() == minimal.get_scan_parameters()
            assert_replays(client, recorder, 3, 2)
    finally:
        server.stop()


def _twin_class():
    """The twin's backend class, or None while dm_bridge.backends.twin does not provide it."""
    try:
        module = importlib.import_module("dm_bridge.backends.twin")
    except ImportError:
        return None
    return getattr(module, "TwinBackend", None)


@pytest.mark.skipif(_twin_class() is None, reason="dm_bridge.backends.twin.TwinBackend is absent")
def test_twin_spectrum_image_round_trip(tmp_path):
    twin = _twin_class()("srtio3", seed=3)
    twin.set_scan_parameters(width=32, height=24)
    twin.set_eels_parameters(channels=256)
    recorder = Recorder(twin)
    path = export_recording(recorder, tmp_path / "twin.hspy", rows=4, cols=5)
    replay = ReplayBackend(path)
    assert replay.get_scan_parameters() == twin.get_scan_parameters()
    assert replay.get_eels_parameters() == twin.get_eels_parameters()
    assert_replays(replay, recorder, 4, 5)
    assert replay.describe()["high_tension_kv"] == twin.describe()["high_tension_kv"]
    # what the replay serves is what a microscope returns, never the twin's ground truth
    assert "get_truth" not in replay.capabilities()
    with pytest.raises(Unsupported):
        replay.get_truth()


@pytest.mark.skipif(_twin_class() is None, reason="dm_bridge.backends.twin.TwinBackend is absent")
def test_replay_can_account_time_like_the_twin(tmp_path):
    from dm_bridge.backends.twin import TimingModel

    twin = _twin_class()("srtio3", seed=3, timing=TimingModel())
    twin.set_scan_parameters(width=16, height=16)
    twin.set_eels_parameters(channels=64, exposure=0.05)
    path = export_recording(twin, tmp_path / "twin.npz", rows=2, cols=2)
    replay = ReplayBackend(path, timing=TimingModel())
    points = [[1.0, 2.0], [3.5, 4.5], [10.0, 12.0]]
    assert replay.acquire_spectra_at_points(points).instrument_time == pytest.approx(
        twin.acquire_spectra_at_points(points).instrument_time
    )
    assert replay.acquire_image().instrument_time == pytest.approx(
        twin.acquire_image().instrument_time
    )
