"""Plain-array recordings (.npz, .h5, .npy), grids mapped through calibrations, the CLI
options, and clear errors for bad files."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from dm_bridge.backends import load_backend
from dm_bridge.backends.recording import RecordingError, load_recording
from dm_bridge.backends.replay import ReplayBackend
from dm_bridge.errors import InstrumentError

h5py = pytest.importorskip("h5py")

RNG = np.random.default_rng(11)
SURVEY = RNG.uniform(0, 100, size=(6, 8)).astype(np.float32)
SPECTRA = RNG.uniform(0, 1000, size=(6, 8, 32)).astype(np.float32)
AXIS = 280.0 + 0.5 * np.arange(32)


def test_npz_layout(tmp_path):
    path = tmp_path / "rec.npz"
    np.savez(
        path,
        survey=SURVEY,
        spectra=SPECTRA,
        energy_axis=AXIS,
        pixel_size=0.2,
        exposure=0.05,
        dwell_time=4e-6,
        high_tension_kv=60.0,
        microscope="Nion UltraSTEM",
    )
    replay = ReplayBackend(path)
    scan = replay.get_scan_parameters()
    assert (scan["width"], scan["height"]) == (8, 6)
    assert scan["field_of_view"] == pytest.approx(8 * 0.2)
    assert scan["dwell_time"] == 4e-6
    # the file does not name the detector: no detector's name either (not "HAADF")
    assert np.array_equal(replay.acquire_image().images["survey"], SURVEY)
    replay.set_beam_position(5, 2)
    spectrum = replay.acquire_spectrum()
    assert np.array_equal(spectrum.spectra, SPECTRA[2, 5])
    np.testing.assert_allclose(spectrum.energy_axis, AXIS)
    assert replay.get_eels_parameters()["exposure"] == 0.05
    assert replay.describe()["microscope"] == "Nion UltraSTEM"
    assert replay.describe()["high_tension_kv"] == 60.0


def test_sub_pixel_position_is_bilinear(tmp_path):
    path = tmp_path / "rec.npz"
    np.savez(path, spectra=SPECTRA, energy_offset=280.0, dispersion=0.5)
    replay = ReplayBackend(path)
    x, y = 2.25, 3.75
    s = SPECTRA.astype(np.float64)
    expected = (
        0.75 * 0.25 * s[3, 2]
        + 0.25 * 0.25 * s[3, 3]
        + 0.75 * 0.75 * s[4, 2]
        + 0.25 * 0.75 * s[4, 3]
    )
    replay.set_beam_position(x, y)
    np.testing.assert_allclose(replay.acquire_spectrum().spectra, expected, rtol=1e-6)


def test_h5_layout_with_attributes_and_several_signals(tmp_path):
    path = tmp_path / "rec.h5"
    with h5py.File(path, "w") as f:
        f["survey"] = np.stack([SURVEY, 2 * SURVEY])
        f["signals"] = np.asarray(["HAADF", "BF"], dtype=h5py.string_dtype())
        f["spectra"] = SPECTRA
        f.attrs["energy_offset"] = 280.0
        f.attrs["dispersion"] = 0.5
        f.attrs["pixel_size"] = 0.1
    replay = ReplayBackend(path)
    assert replay.get_scan_parameters()["signals"] == ["HAADF", "BF"]
    replay.set_scan_parameters(signals=["BF"])
    acq = replay.acquire_image()
    assert list(acq.images) == ["BF"]
    assert np.array_equal(acq.images["BF"], 2 * SURVEY)
    assert replay.get_eels_parameters()["energy_offset"] == 280.0


def test_npz_line_scan_is_one_row(tmp_path):
    path = tmp_path / "line.npz"
    np.savez(path, spectra=SPECTRA[0], energy_offset=280.0, dispersion=0.5)
    replay = ReplayBackend(path)
    scan = replay.get_scan_parameters()
    assert (scan["width"], scan["height"]) == (8, 1)
    replay.set_beam_position(7, 0)
    assert np.array_equal(replay.acquire_spectrum().spectra, SPECTRA[0, 7])


def test_npy_files_need_calibrations_from_the_caller(tmp_path):
    spectra_path, survey_path = tmp_path / "si.npy", tmp_path / "survey.npy"
    np.save(spectra_path, SPECTRA)
    np.save(survey_path, np.ones((12, 16)))
    with pytest.raises(RecordingError, match="energy_offset and dispersion"):
        ReplayBackend(spectra_path)
    replay = ReplayBackend(spectra_path, survey_path, energy_offset=280.0, dispersion=0.5)
    assert replay.get_scan_parameters()["width"] == 16
    # both grids uncalibrated: the spectrum image (8 x 6) spans the survey (16 x 12)
    replay.set_beam_position(2.5, 4.5)  # survey pixels 2-3, 4-5 = spectrum pixel (1, 2)
    assert np.array_equal(replay.acquire_spectrum().spectra, SPECTRA[2, 1])


def test_grids_are_mapped_through_their_calibrations(tmp_path):
    """A spectrum image (1 nm steps) over part of a survey (0.25 nm pixels)."""
    survey_path, si_path = tmp_path / "survey.npz", tmp_path / "si.npz"
    np.savez(survey_path, survey=np.zeros((40, 40)), pixel_size=0.25)
    # first spectrum centred at (2, 3) nm: survey pixel (7.5, 11.5)
    np.savez(
        si_path,
        spectra=SPECTRA,
        energy_axis=AXIS,
        spectrum_pixel_size=1.0,
        spectrum_origin=(2.0, 3.0),
    )
    replay = ReplayBackend(si_path, survey_path)
    x, y = 7.5 + 4 * 3, 11.5 + 4 * 2  # spectrum (row 2, col 3)
    replay.set_beam_position(x, y)
    assert np.array_equal(replay.acquire_spectrum().spectra, SPECTRA[2, 3])
    replay.set_beam_position(x + 2, y)  # half-way to the next column
    half = 0.5 * (SPECTRA[2, 3].astype(np.float64) + SPECTRA[2, 4])
    np.testing.assert_allclose(replay.acquire_spectrum().spectra, half, rtol=1e-6)
    acq = replay.acquire_spectra_at_points([[0, 0], [x, y]])  # (0, 0) is outside the SI
    assert np.array_equal(acq.spectra[0], SPECTRA[0, 0])
    assert acq.metadata["outside_recording"] == 1


def test_instrument_time_model_can_be_shared(tmp_path):
    class Timing:  # the interface of the twin's TimingModel
        def image_time(self, scan):
            return 1.0 + scan.width * scan.height * scan.dwell_time

        def points_time(self, n, exposure):
            return 0.5 + n * (exposure + 0.1)

        def spectrum_time(self, exposure):
            return 3.0 + exposure

    path = tmp_path / "rec.npz"
    np.savez(path, survey=SURVEY, spectra=SPECTRA, energy_axis=AXIS, exposure=0.2, dwell_time=1e-3)
    replay = ReplayBackend(path, timing=Timing())
    assert replay.acquire_image().instrument_time == pytest.approx(1.0 + 48e-3)
    assert replay.acquire_spectrum().instrument_time == pytest.approx(3.2)
    points = replay.acquire_spectra_at_points([[0, 0], [1, 1], [2, 2], [3, 3]])
    assert points.instrument_time == pytest.approx(0.5 + 4 * 0.3)


def test_unrecorded_exposure_and_dwell_time_can_be_set(tmp_path):
    path = tmp_path / "rec.npz"
    np.savez(path, survey=SURVEY, spectra=SPECTRA, energy_axis=AXIS)
    replay = ReplayBackend(path, readout_time=0.0)
    replay.set_eels_parameters(exposure=0.5)  # only changes the instrument time reported
    replay.set_scan_parameters(dwell_time=1e-5)
    assert replay.acquire_spectrum().instrument_time == pytest.approx(0.5)
    assert replay.acquire_image().instrument_time == pytest.approx(48 * 1e-5)


def test_cli_options_build_a_replay(tmp_path):
    path = tmp_path / "rec.npz"
    np.savez(path, survey=SURVEY, spectra=SPECTRA)
    parser = argparse.ArgumentParser()
    ReplayBackend.add_arguments(parser)
    args = parser.parse_args(
        [
            *("--file", str(path), "--signal", "ADF", "--energy-offset", "280"),
            *("--dispersion", "0.5", "--pixel-size", "0.3", "--readout-time", "0.05"),
        ]
    )
    replay = load_backend("replay", **ReplayBackend.options_from_arguments(args))
    assert isinstance(replay, ReplayBackend)
    assert replay.get_scan_parameters()["signals"] == ["ADF"]
    assert replay.get_scan_parameters()["field_of_view"] == pytest.approx(8 * 0.3)
    assert replay.readout_time == 0.05
    info = json.loads(json.dumps(replay.hello()))
    assert info["instrument"]["recording"]["notes"]["pixel_size"] == "given by the user"


# ------------------------------------------------------------------------ clear errors


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ReplayBackend(tmp_path / "nothing.hspy")


def test_no_file_at_all():
    with pytest.raises(RecordingError, match="give a recording file"):
        ReplayBackend()


def test_unknown_format(tmp_path):
    path = tmp_path / "image.tiff"
    path.write_bytes(b"II*\x00")
    with pytest.raises(RecordingError, match="unknown recording format"):
        ReplayBackend(path)


@pytest.mark.parametrize("suffix", [".hspy", ".dm3", ".dm4", ".emd", ".npz", ".h5", ".npy"])
def test_corrupt_files(tmp_path, suffix):
    pytest.importorskip("rsciio")
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"not a recording at all" * 10)
    with pytest.raises(RecordingError, match="could not read"):
        ReplayBackend(path)


def test_errors_are_instrument_errors_and_value_errors(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, something=np.zeros(3))
    with pytest.raises(RecordingError, match="neither 'survey' nor 'spectra'") as info:
        ReplayBackend(path)
    assert isinstance(info.value, InstrumentError)  # the bridge reports it with its kind
    assert isinstance(info.value, ValueError)


def test_a_spectrum_file_without_spectra(tmp_path):
    survey_path, other_path = tmp_path / "survey.npz", tmp_path / "other.npz"
    np.savez(survey_path, survey=SURVEY)
    np.savez(other_path, survey=SURVEY)
    with pytest.raises(RecordingError, match="holds no spectrum image"):
        ReplayBackend(other_path, survey_path)


def test_a_survey_file_without_images(tmp_path):
    si_path = tmp_path / "si.npz"
    np.savez(si_path, spectra=SPECTRA, energy_axis=AXIS)
    with pytest.raises(RecordingError, match="holds no survey image"):
        ReplayBackend(si_path, survey=si_path)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"spectra": SPECTRA, "energy_axis": AXIS[:10]}, "10 values for 32 channels"),
        ({"survey": np.stack([SURVEY, SURVEY]), "signals": np.array(["HAADF"])}, "1 names"),
        ({"survey": np.zeros((2, 2, 2, 2))}, "must be \\(h, w\\) or \\(S, h, w\\)"),
        ({"spectra": SPECTRA, "energy_axis": AXIS**2}, "non-uniform energy axis"),
        ({"spectra": SPECTRA, "energy_offset": 0.0, "dispersion": -1.0}, "dispersion"),
        ({"survey": SURVEY, "pixel_size": np.array([1.0, 2.0, 3.0])}, "single number"),
    ],
)
def test_inconsistent_layouts(tmp_path, entries, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **entries)
    with pytest.raises(RecordingError, match=message):
        load_recording(path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, survey=np.array([{"a": 1}], dtype=object))
    with pytest.raises(RecordingError, match="could not read"):
        ReplayBackend(path)


def test_bad_calibration_overrides(tmp_path):
    path = tmp_path / "rec.npz"
    np.savez(path, spectra=SPECTRA, energy_axis=AXIS)
    with pytest.raises(RecordingError, match="pixel_size must be positive"):
        ReplayBackend(path, pixel_size=-1.0)
    with pytest.raises(ValueError, match="readout_time"):
        ReplayBackend(path, readout_time=float("nan"))
