"""The twin as a bridge backend: time model, truth kept apart, CLI, bad input, abort."""

from __future__ import annotations

import argparse
import threading

import numpy as np
import pytest

from dm_bridge.backends import load_backend
from dm_bridge.backends.base import ScanParameters
from dm_bridge.backends.twin import SAMPLES, TimingModel, TwinBackend
from dm_bridge.errors import Aborted, OutOfRange
from dm_bridge.local import LocalClient


def test_timing_model_matches_the_papers():
    t = TimingModel()
    # first paper: a 128x128 EELS grid takes ~80 min; one 1 s spectrum 3.8 s
    assert t.points_time(128 * 128, 0.01) / 60 == pytest.approx(80.0, abs=0.5)
    assert t.spectrum_time(1.0) == pytest.approx(3.8, abs=0.01)
    # second paper: a 512x512 image at 32 µs takes ~9 s including 0.6 s transfer
    assert t.image_time(ScanParameters(512, 512, 32e-6)) == pytest.approx(8.5, abs=0.1)


def test_instrument_time_is_reported_and_accumulated(make_twin):
    twin = make_twin("nanowire", seed=1)
    t = twin.timing
    image = twin.acquire_image()
    assert image.instrument_time == pytest.approx(t.image_time(twin.scan))
    points = twin.acquire_spectra_at_points([[1.0, 2.0]] * 7)
    assert points.instrument_time == pytest.approx(t.points_time(7, twin.eels.exposure))
    grid = twin.acquire_spectrum_image(4, 5)
    assert grid.spectra.shape == (4, 5, twin.eels.channels)
    assert grid.instrument_time == pytest.approx(t.points_time(20, twin.eels.exposure))
    before = twin.instrument_time_total
    twin.set_beam_position(3.0, 4.0)
    assert twin.instrument_time_total - before == pytest.approx(t.beam_settle)
    single = twin.acquire_spectrum()
    assert single.instrument_time == pytest.approx(t.spectrum_time(twin.eels.exposure))
    total = image.instrument_time + points.instrument_time + grid.instrument_time
    total += t.beam_settle + single.instrument_time
    assert twin.instrument_time_total == pytest.approx(total)


def test_custom_timing_model(make_twin):
    slow = TimingModel(readout=1.0)
    twin = make_twin("nanowire", timing=slow)
    acq = twin.acquire_spectra_at_points([[1.0, 1.0]] * 3)
    assert acq.instrument_time == pytest.approx(
        slow.camera_activate + 3 * (slow.beam_settle + twin.eels.exposure + 1.0)
    )


def test_truth_never_travels_with_the_data(make_twin):
    twin = make_twin("graphene", seed=2, drift=True)
    image = twin.acquire_image()
    spectra = twin.acquire_spectra_at_points([[3.0, 4.0]])
    forbidden = {"atoms", "labels", "drift", "drift_nm", "truth", "thickness", "clean_image"}
    for meta in (image.metadata, spectra.metadata):
        assert not forbidden & set(meta)
    assert set(image.images) == {"HAADF"}
    hello = twin.hello()
    assert "get_truth" in hello["capabilities"]
    text = repr(hello)
    assert "drift_nm" not in text
    assert "xy_px" not in text


def test_truth_describes_the_last_image(make_twin):
    twin = make_twin("srtio3", seed=3)
    before = twin.get_truth()
    assert before["frame"]["from_image"] is False
    twin.set_scan_parameters(width=128, height=96, field_of_view=3.0, rotation=10.0)
    twin.acquire_image()
    truth = twin.get_truth()
    assert truth["frame"]["from_image"] is True
    assert truth["frame"]["rotation"] == 10.0
    assert truth["labels"].shape == (96, 128)
    assert truth["labels"].dtype == np.uint8
    assert truth["clean_image"].shape == (96, 128)
    atoms = truth["atoms"]
    assert atoms["xy_px"].shape == (len(atoms["z"]), 2)
    assert set(atoms["species_names"]) == {"Sr", "TiO", "O"}
    inside = (atoms["xy_px"] >= -0.5).all(axis=1) & (atoms["xy_px"][:, 0] <= 127.5)
    assert inside.all()
    # changing the scan afterwards does not change what the last image saw
    twin.set_scan_parameters(field_of_view=5.0)
    assert twin.get_truth()["frame"]["pixel_size"] == pytest.approx(3.0 / 128)


def test_truth_per_sample(make_twin):
    for name in SAMPLES:
        twin = make_twin(name, seed=4)
        twin.acquire_image()
        truth = twin.get_truth()
        assert truth["sample"] == name
        assert truth["labels"].max() < len(truth["label_names"])
        assert np.all(truth["thickness"] >= 0)
        assert (truth["atoms"] is None) == (name in ("nanowire", "nanoparticles"))
        assert truth["target_map"].shape == truth["labels"].shape
    wire = make_twin("nanowire")
    wire.acquire_image()
    truth = wire.get_truth()
    interface = truth["labels"] == truth["label_names"].index("interface")
    # a few nm wide, ~60 nm long: dozens of pixels at 1.56 nm/pixel
    assert 40 < interface.sum() < 400


def test_truth_without_a_target_band(make_twin):
    twin = make_twin("graphene", seed=7, target_band=None)
    twin.acquire_image()
    truth = twin.get_truth()
    assert truth["target_band"] is None
    assert truth["target_map"] is None
    assert len(truth["atoms"]["z"]) > 100
    with pytest.raises(ValueError, match="band"):
        twin.truth_band_intensity([[1.0, 1.0]])
    assert twin.truth_band_intensity([[1.0, 1.0]], band=(10.0, 20.0))[0] > 0


def test_cli_options_build_the_twin():
    parser = argparse.ArgumentParser()
    TwinBackend.add_arguments(parser.add_argument_group("twin"))
    args = parser.parse_args(
        [
            "--sample",
            "srtio3",
            "--seed",
            "3",
            "--noise-level",
            "0.2",
            "--drift",
            "--sample-param",
            "thickness=20",
            "--sample-param",
            "size=4",
            "--time-scale",
            "0.5",
            "--energy-jitter",
            "0.1",
        ]
    )
    opts = TwinBackend.options_from_arguments(args)
    twin = TwinBackend(**opts)
    assert twin.sample.name == "srtio3"
    assert twin.sample.parameters()["thickness"] == 20.0
    assert twin.seed == 3
    assert twin.noise_level == 0.2
    assert twin.drift.enabled
    assert twin.time_scale == 0.5
    assert twin.energy_jitter == 0.1
    bad = parser.parse_args(["--sample-param", "thickness"])
    with pytest.raises(ValueError, match="NAME=VALUE"):
        TwinBackend.options_from_arguments(bad)


def test_registry_loads_the_twin():
    twin = load_backend("twin", sample="nanowire", seed=2)
    assert isinstance(twin, TwinBackend)
    assert twin.kind == "twin"
    assert twin.scan.width == 128
    assert twin.scan.field_of_view == 200.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample": "diamond"}, "unknown sample"),
        ({"sample": "graphene", "sample_parameters": {"colour": 1}}, "bad parameters"),
        ({"sample": "srtio3", "sample_parameters": {"thickness": -1}}, "thickness"),
        ({"sample": "nanowire", "noise_level": 1.5}, "noise_level"),
        ({"sample": "nanowire", "seed": -1}, "seed"),
        ({"sample": "nanowire", "beam_current": float("nan")}, "beam_current"),
        ({"sample": "nanowire", "target_band": (30, 20)}, "target_band"),
    ],
)
def test_bad_construction_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TwinBackend(**kwargs)


def test_bad_points_are_refused(make_twin):
    twin = make_twin("nanowire")
    with pytest.raises(OutOfRange):
        twin.acquire_spectra_at_points([[500.0, 1.0]])
    with pytest.raises(OutOfRange):
        twin.truth_spectra([[-3.0, 1.0]])


def test_abort_stops_a_real_time_acquisition(make_twin):
    twin = make_twin("nanowire", time_scale=1.0)  # 1000 spectra: ~5 min of real time
    client = LocalClient(twin)
    outcome = {}

    def run():
        try:
            client.acquire_spectra_at_points([[1.0, 1.0]] * 1000)
        except Aborted as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    while twin.instrument_time_total == 0.0 and worker.is_alive():
        worker.join(0.01)
    client.abort()
    worker.join(60)
    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), Aborted)


def test_truth_through_the_local_client(make_twin):
    twin = make_twin("nanoparticles", seed=5)
    client = LocalClient(twin)
    client.acquire_image()
    truth = client.get_truth()
    assert truth["gold_px"].shape[1] == 3
    assert truth["target_map"].dtype == np.float32


def test_several_detectors_in_one_scan(make_twin):
    twin = make_twin("nanowire", seed=6, noise_level=0.2)
    twin.set_scan_parameters(signals=["HAADF", "BF", "ABF"])
    acq = twin.acquire_image()
    assert set(acq.images) == {"HAADF", "BF", "ABF"}
    haadf, bf = acq.images["HAADF"].ravel(), acq.images["BF"].ravel()
    assert all(img.shape == (128, 128) for img in acq.images.values())
    # bright-field dims where the dark-field detector brightens
    assert np.corrcoef(haadf, bf)[0, 1] < -0.5
