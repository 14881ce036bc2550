"""EELS acquisition, energy offset and read-back of the spectrometer settings, on the fake DM."""

from __future__ import annotations

import numpy as np
import pytest

from dm_bridge.backends.digitalmicrograph import DigitalMicrographBackend
from dm_bridge.errors import Aborted, InstrumentError, Unsupported

pytestmark = pytest.mark.dm_fake


def surveyed(backend, width=64, height=64):
    backend.set_scan_parameters(width=width, height=height)
    backend.acquire_image()
    return backend


def zlp_height(inst, x, y, exposure):
    """What the fake's spectrum holds at 0 eV with the beam on pixel (x, y)."""
    return exposure * (1000.0 + 10.0 * x + y + 50.0)


def test_processed_spectrum_from_the_active_camera(dm, backend):
    surveyed(backend)
    backend.set_beam_position(10.25, 3.5)
    start = len(dm._instrument.calls)
    acq = backend.acquire_spectrum()
    names = dm._instrument.names(start)
    assert names[:3] == ["GetActiveCamera", "PrepareForAcquire", "GetDefaultParameters"]
    (args,) = [a for n, a in dm._instrument.calls[start:] if n == "AcquireImage"]
    top, left, bottom, _right = dm._instrument.default_read_area
    assert args == (0.01, 1, 1, 3, top, left, bottom, left + 2048)  # 3: gain normalised
    assert acq.spectra.shape == (2048,)
    assert acq.spectra.dtype == np.float32
    # energy axis from DM's calibration: the zero-loss peak sits at 0 eV
    zero = int(np.argmin(np.abs(acq.energy_axis)))
    assert acq.energy_axis[zero] == 0.0
    assert acq.spectra[zero] == pytest.approx(zlp_height(dm._instrument, 10.25, 3.5, 0.01))
    assert acq.metadata["energy_axis_source"] == "spectrum calibration"
    np.testing.assert_allclose(acq.positions, [[10.25, 3.5]])
    backend.acquire_spectrum()
    assert dm._instrument.names().count("PrepareForAcquire") == 1  # prepared once


def test_energy_offset_goes_through_ifsetenergyloss(dm, backend):
    start = len(dm._instrument.calls)
    backend.set_eels_parameters(energy_offset=150.0)
    assert dm._instrument.names(start) == [
        "GetPersistentTagGroup",
        "ExecuteScriptString",
        "IFGetEnergyLoss",  # compare with DM first: the operator may have moved it
        "ExecuteScriptString",
        "IFSetEnergyLoss",
        "IFWaitForFilter",
    ]
    assert ("IFSetEnergyLoss", (150.0,)) in dm._instrument.calls
    assert dm._instrument.energy_loss == 150.0
    start = len(dm._instrument.calls)
    backend.set_eels_parameters(energy_offset=150.0)  # DM already there: no filter move
    assert "IFSetEnergyLoss" not in dm._instrument.names(start)
    dm._instrument.energy_loss = 3.0  # the operator moved it in DM
    backend.set_eels_parameters(energy_offset=150.0)
    assert dm._instrument.energy_loss == 150.0


def test_binning_channels_and_exposure_reach_the_camera(dm, backend):
    backend.set_eels_parameters(exposure=0.5, binning=2, channels=512, energy_offset=100.0)
    acq = backend.acquire_spectrum()
    (args,) = [a for n, a in dm._instrument.calls if n == "AcquireImage"]
    assert args[:4] == (0.5, 2, 1, 3)
    assert args[7] - args[5] == 1024  # 512 channels of 2 sensor columns
    assert acq.spectra.shape == (512,)
    inst = dm._instrument
    want = (np.arange(512) * 2 - inst.zlp_column) * inst.dispersion + 100.0
    np.testing.assert_allclose(acq.energy_axis, want)
    assert acq.eels.binning == 2
    assert acq.eels.exposure == 0.5


def test_eels_read_back_comes_from_dm_not_from_what_was_set(dm, backend):
    backend.acquire_spectrum()
    tags = dm._instrument.images[max(dm._instrument.images)].GetTagGroup()
    tags.SetTagAsFloat("EELS Spectrometer:Dispersion (eV/ch)", 0.5)  # behind the backend's back
    tags.SetTagAsFloat("Acquisition:Parameters:High Level:Exposure (s)", 0.123)
    tags.SetTagAsLong("Acquisition:Parameters:Detector:hbin", 4)
    dm._instrument.energy_loss = 42.0  # the operator turned the drift tube
    read = backend.get_eels_parameters()
    assert read["dispersion"] == 0.5
    assert read["exposure"] == 0.123
    assert read["binning"] == 4
    assert read["energy_offset"] == 42.0  # live, via IFGetEnergyLoss


def test_a_setting_not_yet_acquired_is_reported_as_set(dm, backend):
    backend.acquire_spectrum()
    backend.set_eels_parameters(exposure=0.2)
    assert backend.get_eels_parameters()["exposure"] == 0.2
    tags = dm._instrument.images[max(dm._instrument.images)].GetTagGroup()
    assert tags.GetTagAsFloat("Acquisition:Parameters:High Level:Exposure (s)") == (True, 0.01)


def test_energy_offset_falls_back_to_the_spectrum_tag(dm, backend):
    dm._instrument.energy_loss = 25.0
    backend.acquire_spectrum()
    dm._instrument.fail["IFGetEnergyLoss"] = "Filter not connected"
    assert backend.get_eels_parameters()["energy_offset"] == 25.0


def test_dispersion_read_from_the_calibration_without_spectrometer_tags(dm, backend):
    dm._instrument.write_eels_tags = False
    dm._instrument.dispersion = 0.1
    backend.set_eels_parameters(binning=4, channels=256)
    backend.acquire_spectrum()
    assert backend.get_eels_parameters()["dispersion"] == pytest.approx(0.1)


def test_dispersion_is_chosen_on_the_spectrometer(dm, backend):
    with pytest.raises(Unsupported, match="no spectrum yet"):
        backend.set_eels_parameters(dispersion=0.5)
    dm._instrument.dispersion = 0.5
    backend.acquire_spectrum()
    assert backend.get_eels_parameters()["dispersion"] == 0.5
    backend.set_eels_parameters(dispersion=0.5, exposure=0.02)  # the value DM has: fine
    with pytest.raises(Unsupported, match="read back"):
        backend.set_eels_parameters(dispersion=1.0)


def test_explicit_rows_processing_and_vertical_binning(dm):
    backend = DigitalMicrographBackend(
        eels_rows=(100, 300), eels_vertical_binning=4, eels_processing="unprocessed"
    )
    acq = backend.acquire_spectrum()
    (args,) = [a for n, a in dm._instrument.calls if n == "AcquireImage"]
    assert args[2:7] == (4, 1, 100, 0, 300)
    assert "GetDefaultParameters" not in dm._instrument.names()
    assert "GetCameraUnprocessedEnum" in dm._instrument.names()
    assert acq.spectra.min() > 0.0  # unprocessed data keeps the camera's dark level


def test_camera_id_must_match_the_active_camera(dm):
    DigitalMicrographBackend(camera_id=3).acquire_spectrum()  # the fake's active camera
    with pytest.raises(InstrumentError, match="has ID 3, not 5"):
        DigitalMicrographBackend(camera_id=5).acquire_spectrum()


def test_dm_errors_become_instrument_errors_with_dms_message(dm, backend):
    dm._instrument.fail["AcquireImage"] = "Camera is not inserted"
    with pytest.raises(InstrumentError, match="Camera is not inserted"):
        backend.acquire_spectrum()
    dm._instrument.fail["IFSetEnergyLoss"] = "Drift tube out of range"
    with pytest.raises(InstrumentError, match=r"Error in line 1\nDrift tube out of range"):
        backend.set_eels_parameters(energy_offset=2000.0)
    assert backend.get_eels_parameters()["energy_offset"] != 2000.0


def test_spectra_at_points_move_then_acquire_each(dm, backend):
    surveyed(backend)
    points = [(1.0, 2.0), (30.5, 12.25), (63.0, 0.0)]
    acq = backend.acquire_spectra_at_points(points)
    assert acq.spectra.shape == (3, 2048)
    moves = [a for n, a in dm._instrument.calls if n == "DS_MoveBeamTo"]
    field = dm._instrument.last_field
    for move, (x, y) in zip(moves, points):
        assert move == pytest.approx(dm._instrument.ds_of(field, x, y))
    zero = int(np.argmin(np.abs(acq.energy_axis)))
    for spectrum, (x, y) in zip(acq.spectra, points):
        assert spectrum[zero] == pytest.approx(zlp_height(dm._instrument, x, y, 0.01))
    assert backend.get_beam_position() == pytest.approx((63.0, 0.0))
    assert acq.instrument_time > 0


def test_spectrum_image_rasters_the_grid(dm, backend):
    surveyed(backend, 32, 32)
    acq = backend.acquire_spectrum_image(2, 3, region=[0, 0, 4, 2])
    assert acq.spectra.shape == (2, 3, 2048)
    assert dm._instrument.names().count("AcquireImage") == 6
    zero = int(np.argmin(np.abs(acq.energy_axis)))
    assert acq.spectra[1, 2, zero] == pytest.approx(zlp_height(dm._instrument, 4.0, 2.0, 0.01))


def test_abort_between_points(dm, backend, monkeypatch):
    surveyed(backend)
    real = dm._acquire_camera_image
    count = []

    def acquire_then_abort(*args):
        count.append(1)
        if len(count) == 2:
            backend.abort()  # as the server's I/O thread would, during the 2nd exposure
        return real(*args)

    monkeypatch.setattr(dm, "_acquire_camera_image", acquire_then_abort)
    with pytest.raises(Aborted):
        backend.acquire_spectra_at_points([(i, i) for i in range(5)])
    assert dm._instrument.names().count("AcquireImage") == 2
    assert dm._instrument.names().count("DS_MoveBeamTo") == 2  # never moved to point 3


def test_setting_other_parameters_never_moves_the_energy_loss(dm, backend):
    backend.set_eels_parameters(energy_offset=150.0)
    dm._instrument.energy_loss = 3.0  # the operator moved it in DM since
    start = len(dm._instrument.calls)
    backend.set_eels_parameters(exposure=0.2)
    assert dm._instrument.energy_loss == 3.0
    assert "IFSetEnergyLoss" not in dm._instrument.names(start)
    assert backend.get_eels_parameters()["energy_offset"] == 3.0
