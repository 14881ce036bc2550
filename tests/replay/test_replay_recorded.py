"""Replay of real recordings from ../shared/data: an EELS line scan, a single DM3 spectrum,
and a survey-only ABF image. Expected values come from reading the files independently
with rosettasciio."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dm_bridge.backends.replay import DEFAULT_READOUT_TIME, ReplayBackend
from dm_bridge.errors import Aborted, OutOfRange, Unsupported

rsciio_hspy = pytest.importorskip("rsciio.hspy")
rsciio_dm = pytest.importorskip("rsciio.digitalmicrograph")


@pytest.fixture(scope="module")
def linescan_file(shared_data):
    return shared_data / "LSMO_STO_linescan.hspy"


@pytest.fixture(scope="module")
def linescan_raw(linescan_file):
    """The file's own signal dict: data (10, 512) and axes."""
    (signal,) = rsciio_hspy.file_reader(str(linescan_file))
    return signal


@pytest.fixture
def linescan(linescan_file):
    return ReplayBackend(linescan_file)


# ------------------------------------------------------------------------ the line scan


def test_energy_axis_comes_from_the_file(linescan, linescan_raw):
    energy = next(a for a in linescan_raw["axes"] if not a["navigate"])
    eels = linescan.get_eels_parameters()
    assert eels["energy_offset"] == float(energy["offset"])
    assert eels["dispersion"] == float(energy["scale"])
    assert eels["channels"] == int(energy["size"])
    linescan.set_beam_position(0, 0)
    axis = linescan.acquire_spectrum().energy_axis
    # the data set's README: 395-906 eV
    assert axis[0] == pytest.approx(395.0)
    assert axis[-1] == pytest.approx(906.0)


def test_line_scan_is_a_one_row_scan_field(linescan, linescan_raw):
    scan = linescan.get_scan_parameters()
    n = linescan_raw["data"].shape[0]
    assert (scan["width"], scan["height"]) == (n, 1)
    nav = next(a for a in linescan_raw["axes"] if a["navigate"])
    assert scan["field_of_view"] == pytest.approx(n * float(nav["scale"]))
    with pytest.raises(OutOfRange):
        linescan.set_beam_position(0, 1)  # there is no second row


def test_spectrum_at_each_position_is_the_recorded_one(linescan, linescan_raw):
    data = linescan_raw["data"]
    for i in range(data.shape[0]):
        linescan.set_beam_position(i, 0)
        spectrum = linescan.acquire_spectrum().spectra
        assert spectrum.dtype == np.float32
        assert np.array_equal(spectrum, data[i])


@pytest.mark.parametrize("x", [0.25, 3.5, 8.9])
def test_sub_pixel_position_interpolates_between_neighbours(linescan, linescan_raw, x):
    data = linescan_raw["data"].astype(np.float64)
    i = int(np.floor(x))
    t = x - i
    linescan.set_beam_position(x, 0.3)  # y is irrelevant on a single row
    spectrum = linescan.acquire_spectrum().spectra
    np.testing.assert_allclose(spectrum, (1 - t) * data[i] + t * data[i + 1], rtol=1e-6)
    assert not np.array_equal(spectrum, data[i])


def test_spectra_at_points_match_one_by_one(linescan):
    rng = np.random.default_rng(3)
    points = np.column_stack([rng.uniform(-0.5, 9.5, 25), rng.uniform(-0.5, 0.5, 25)])
    stack = linescan.acquire_spectra_at_points(points)
    assert stack.spectra.shape == (25, 512)
    assert np.array_equal(stack.positions, points)
    for point, spectrum in zip(points, stack.spectra):
        linescan.set_beam_position(*point)
        assert np.array_equal(linescan.acquire_spectrum().spectra, spectrum)


def test_spectrum_image_returns_the_recording(linescan, linescan_raw):
    acq = linescan.acquire_spectrum_image(1, 10)
    assert np.array_equal(acq.spectra[0], linescan_raw["data"])


def test_scan_parameters_are_fixed_by_the_recording(linescan):
    scan = linescan.get_scan_parameters()
    # the recorded values are accepted, as a real instrument accepts a no-op
    assert (
        linescan.set_scan_parameters(
            width=scan["width"], height=scan["height"], field_of_view=scan["field_of_view"]
        )
        == scan
    )
    for change in ({"width": 20}, {"height": 8}, {"field_of_view": 50.0}, {"rotation": 5.0}):
        with pytest.raises(Unsupported, match="fixed by the recording"):
            linescan.set_scan_parameters(**change)
    assert linescan.get_scan_parameters() == scan
    with pytest.raises(OutOfRange):  # a detector the recording does not have
        linescan.set_scan_parameters(signals=["BF"])


def test_eels_parameters_are_fixed_by_the_recording(linescan):
    eels = linescan.get_eels_parameters()
    assert linescan.set_eels_parameters(energy_offset=eels["energy_offset"], binning=1) == eels
    for change in (
        {"energy_offset": 100.0},
        {"dispersion": 0.5},
        {"channels": 256},
        {"exposure": eels["exposure"] * 2},  # the file records its exposure
    ):
        with pytest.raises(Unsupported, match="fixed by the recording"):
            linescan.set_eels_parameters(**change)
    with pytest.raises(OutOfRange):
        linescan.set_eels_parameters(binning=2)
    assert linescan.get_eels_parameters() == eels


def test_instrument_time_uses_the_recorded_exposure(linescan, linescan_raw):
    exposure = float(linescan_raw["metadata"]["Acquisition_instrument"]["TEM"]["dwell_time"])
    assert linescan.get_eels_parameters()["exposure"] == exposure
    acq = linescan.acquire_spectra_at_points([[1, 0], [2, 0], [3, 0]])
    assert acq.instrument_time == pytest.approx(3 * (exposure + DEFAULT_READOUT_TIME))
    assert linescan.instrument_time_total == pytest.approx(acq.instrument_time)


def test_survey_is_synthesised_from_the_spectra(linescan, linescan_raw):
    acq = linescan.acquire_image()
    (name,) = acq.images
    expected = linescan_raw["data"].astype(np.float64).sum(axis=-1)
    np.testing.assert_allclose(acq.images[name][0], expected, rtol=1e-6)
    assert "integrated intensity" in acq.metadata["survey_synthesised"]
    assert "survey_synthesised" in linescan.describe()["recording"]["notes"]


def test_describe_reports_a_replay_with_instrument_metadata(linescan, linescan_file):
    hello = json.loads(json.dumps(linescan.hello()))  # JSON-able, as the wire needs
    assert hello["backend"] == "replay"
    instrument = hello["instrument"]
    assert instrument["replay"] is True
    assert instrument["files"] == [str(linescan_file)]
    assert instrument["high_tension_kv"] == pytest.approx(200.0)
    assert instrument["spectrometer"]["energy_range_eV"] == pytest.approx([395.0, 906.0])


def test_abort_stops_an_acquisition(linescan):
    linescan.abort()
    with pytest.raises(Aborted):
        linescan.acquire_spectra_at_points([[1, 0], [2, 0]])


# ------------------------------------------------------------------------ DM3 and survey only


def test_single_dm3_spectrum_is_a_one_pixel_spectrum_image(shared_data):
    (raw,) = rsciio_dm.file_reader(str(shared_data / "EELS_STO.dm3"))
    replay = ReplayBackend(shared_data / "EELS_STO.dm3")
    scan = replay.get_scan_parameters()
    assert (scan["width"], scan["height"]) == (1, 1)
    spectrum = replay.acquire_spectrum()
    assert np.array_equal(spectrum.spectra, raw["data"])
    (energy,) = raw["axes"]
    assert spectrum.energy_axis[0] == float(energy["offset"])
    assert spectrum.energy_axis[1] - spectrum.energy_axis[0] == pytest.approx(energy["scale"])
    tags = raw["original_metadata"]["ImageList"]["TagGroup0"]["ImageTags"]
    # DigitalMicrograph's own tags: 10 frames of 2 s, 200 kV, the spectrometer's name
    assert replay.get_eels_parameters()["exposure"] == pytest.approx(
        tags["EELS"]["Acquisition"]["Integration time (s)"]
    )
    assert replay.limits.max_exposure >= replay.get_eels_parameters()["exposure"]
    described = replay.describe()
    assert described["high_tension_kv"] == pytest.approx(tags["Microscope Info"]["Voltage"] / 1e3)
    assert described["spectrometer"]["name"] == tags["EELS Spectrometer"]["Instrument name"]


def test_survey_only_recording_serves_images_and_refuses_spectra(shared_data):
    (raw,) = rsciio_hspy.file_reader(str(shared_data / "stem_abf_data.hspy"))
    replay = ReplayBackend(shared_data / "stem_abf_data.hspy", signal="ABF")
    scan = replay.get_scan_parameters()
    assert (scan["height"], scan["width"]) == raw["data"].shape
    assert scan["signals"] == ["ABF"]
    acq = replay.acquire_image()
    assert acq.images["ABF"].dtype == np.float32
    assert np.array_equal(acq.images["ABF"], raw["data"].astype(np.float32))
    assert acq.pixel_size == pytest.approx(float(raw["axes"][1]["scale"]))
    assert acq.instrument_time == pytest.approx(scan["width"] * scan["height"] * scan["dwell_time"])
    with pytest.raises(Unsupported, match="no spectrum image"):
        replay.acquire_spectrum()
    with pytest.raises(Unsupported, match="no spectrum image"):
        replay.acquire_spectra_at_points([[1, 1], [2, 2]])
    with pytest.raises(Unsupported):
        replay.set_eels_parameters(exposure=0.1)
    assert replay.describe()["spectrometer"] is None


def test_single_spectrum_with_a_survey_is_served_everywhere(shared_data):
    (raw,) = rsciio_dm.file_reader(str(shared_data / "EELS_STO.dm3"))
    replay = ReplayBackend(
        shared_data / "EELS_STO.dm3", survey=shared_data / "stem_abf_data.hspy", signal="ABF"
    )
    assert replay.get_scan_parameters()["width"] == 512
    stack = replay.acquire_spectra_at_points([[0, 0], [511.5, 511.5], [100.25, 300.75]])
    for spectrum in stack.spectra:
        assert np.array_equal(spectrum, raw["data"])
    notes = replay.describe()["recording"]["notes"]
    assert "spans the survey field" in notes["position_mapping_x"]


def test_an_unnamed_abf_survey_names_no_detector_and_reads_dark(shared_data):
    """The real ABF file says nothing of its detector. Served as "HAADF" (until 2026-12-05),
    the agents took the columns for bright (the name decides over the image): DKL's seed
    points and the atom finders went between the atoms. Unnamed, the image decides."""
    from agents.contrast import decide_contrast

    replay = ReplayBackend(shared_data / "stem_abf_data.hspy")
    (name,) = replay.get_scan_parameters()["signals"]
    assert name == "survey"
    assert "not named in the file" in json.dumps(replay.describe())
    decision = decide_contrast("auto", replay.acquire_image().images[name], detector=name)
    assert (decision.contrast, decision.source) == ("dark", "image")
