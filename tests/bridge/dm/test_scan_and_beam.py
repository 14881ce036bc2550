"""DigiScan survey images, scan read-back and beam placement, against the fake DM."""

from __future__ import annotations

import numpy as np
import pytest

from dm_bridge.errors import BadRequest, InstrumentError, Unsupported

pytestmark = pytest.mark.dm_fake


def test_survey_calls_digiscan_in_order_with_our_parameters(dm, backend):
    backend.set_scan_parameters(
        width=64, height=48, dwell_time=3e-6, rotation=12.5, signals=["HAADF", "BF"]
    )
    start = len(dm._instrument.calls)
    acq = backend.acquire_image()
    # DigiScan's own calls; DSIsAcquisitionActive is DM-script, run through the persistent
    # tags: keep its name, drop the plumbing.
    plumbing = {"GetPersistentTagGroup", "ExecuteScriptString"}
    calls = [c for c in dm._instrument.calls[start:] if c[0] not in plumbing]
    names = [name for name, _ in calls]
    polls = names.count("DSIsAcquisitionActive")
    assert polls >= 1
    assert names == [
        "DS_CreateParameters",
        "CreateImage",
        "DS_SetParametersSignal",
        "CreateImage",
        "DS_SetParametersSignal",
        "DS_DialogEnabled",
        "DS_StartAcquisition",
        *["DSIsAcquisitionActive"] * polls,  # watched from the script thread until done
        "DS_DialogEnabled",
        "DS_DeleteParameters",
    ]
    width, height, rotation, pixel_time, line_sync = calls[0][1]
    assert (width, height, rotation, line_sync) == (64, 48, 12.5, False)
    assert pixel_time == pytest.approx(3.0)  # DigiScan takes microseconds
    param_id = calls[2][1][0]
    ids = {name: acq.metadata["dm_image_ids"][name] for name in ("HAADF", "BF")}
    assert calls[2][1] == (param_id, 0, 4, True, ids["HAADF"])  # HAADF is DigiScan signal 0
    assert calls[4][1] == (param_id, 1, 4, True, ids["BF"])
    assert calls[5][1] == (False,)
    assert calls[6][1] == (param_id, False, False)  # one frame, asynchronous
    assert calls[-2][1] == (True,)
    assert calls[-1][1] == (param_id,)
    assert not dm._instrument.ds_params  # no parameter set leaked in DM


def test_survey_images_are_copies_with_calibration(dm, backend):
    backend.set_scan_parameters(width=32, height=16, signals=["HAADF", "BF"])
    acq = backend.acquire_image()
    rows, cols = np.mgrid[0:16, 0:32]
    for index, name in enumerate(("HAADF", "BF")):
        image = acq.images[name]
        assert image.dtype == np.float32
        assert image.shape == (16, 32)
        np.testing.assert_array_equal(image, rows * 32 + cols + 100000 * (index + 1))
    assert acq.pixel_size == pytest.approx(40.0 / 32)  # the fake's 40 nm field
    assert acq.units == "nm"
    assert acq.origin == (0.0, 0.0)
    assert acq.instrument_time > 0
    held = dm.FindImageByID(acq.metadata["dm_image_ids"]["HAADF"]).GetNumArray()
    held[:] = 0  # DM reuses its image memory: what we returned must not change
    assert acq.images["HAADF"][3, 5] == 3 * 32 + 5 + 100000


def test_micrometre_calibration_comes_back_in_nm(dm, backend):
    dm._instrument.field_of_view_nm = 2000.0  # the fake then calibrates in µm (bytes units)
    backend.set_scan_parameters(width=100, height=100)
    acq = backend.acquire_image()
    assert acq.pixel_size == pytest.approx(20.0)
    assert backend.get_scan_parameters()["field_of_view"] == pytest.approx(2000.0)


def test_scan_read_back_comes_from_the_images_tags(dm, backend):
    backend.set_scan_parameters(width=40, height=30, dwell_time=2e-7)  # below DigiScan's minimum
    backend.acquire_image()
    read = backend.get_scan_parameters()
    assert read["dwell_time"] == pytest.approx(0.5e-6)  # DigiScan clipped it; we report DM
    assert read["field_of_view"] == pytest.approx(40.0)
    tags = dm._instrument.images[max(dm._instrument.images)].GetTagGroup()
    tags.SetTagAsFloat("DigiScan:Sample Time", 7.25)  # changed behind the backend's back
    tags.SetTagAsFloat("DigiScan:Rotation", -4.0)
    read = backend.get_scan_parameters()
    assert read["dwell_time"] == pytest.approx(7.25e-6)
    assert read["rotation"] == -4.0


def test_a_parameter_set_after_the_survey_is_reported_until_the_next_one(backend):
    backend.set_scan_parameters(width=40, height=30)
    backend.acquire_image()
    backend.set_scan_parameters(dwell_time=3e-6)
    assert backend.get_scan_parameters()["dwell_time"] == pytest.approx(3e-6)
    backend.acquire_image()
    assert backend.get_scan_parameters()["dwell_time"] == pytest.approx(3e-6)


def test_field_of_view_cannot_be_set_from_the_bridge(backend):
    backend.set_scan_parameters(width=40, height=30)
    backend.acquire_image()
    backend.set_scan_parameters(field_of_view=40.0)  # the value DM reports: fine
    with pytest.raises(Unsupported, match="magnification"):
        backend.set_scan_parameters(field_of_view=20.0)
    assert backend.get_scan_parameters()["field_of_view"] == pytest.approx(40.0)


@pytest.mark.parametrize(
    ("rotation", "aspect", "size"),
    [(0.0, 1.0, (64, 64)), (30.0, 1.0, (64, 48)), (-117.0, 1.3, (40, 72))],
)
def test_beam_lands_where_the_pixel_says(dm, backend, rotation, aspect, size):
    dm._instrument.ds_aspect = aspect
    backend.set_scan_parameters(width=size[0], height=size[1], rotation=rotation)
    backend.acquire_image()
    start = len(dm._instrument.calls)
    backend.set_beam_position(10.25, 3.5)
    # DigiScan control first, then the move, to the DS position of DM's own geometry
    assert dm._instrument.names(start) == [
        "ExecuteScriptString",
        "DSSetScanControl",
        "DS_MoveBeamTo",
    ]
    want = dm._instrument.ds_of(dm._instrument.last_field, 10.25, 3.5)
    assert dm._instrument.calls[-1][1] == pytest.approx(want, abs=1e-9)
    assert dm._instrument.pixel_of(dm._instrument.beam_physical_ds) == pytest.approx(
        (10.25, 3.5), abs=1e-9
    )
    assert backend.get_beam_position() == pytest.approx((10.25, 3.5), abs=1e-9)
    assert dm._instrument.calls[-1][0] == "DS_GetBeamDSPosition"


def test_beam_read_back_reports_where_dm_says_the_beam_is(dm, backend):
    backend.set_scan_parameters(width=64, height=64)
    backend.acquire_image()
    backend.set_beam_position(1.0, 2.0)
    dm._instrument.beam_ds = dm._instrument.ds_of(dm._instrument.last_field, 40.5, 7.75)
    assert backend.get_beam_position() == pytest.approx((40.5, 7.75), abs=1e-9)


def test_scan_control_is_taken_once_per_survey(dm, backend):
    backend.set_scan_parameters(width=64, height=64)
    backend.acquire_image()
    for x in (1.0, 2.0, 3.0):
        backend.set_beam_position(x, x)
    assert dm._instrument.names().count("DSSetScanControl") == 1
    backend.acquire_image()  # DigiScan takes control back for the frame
    backend.set_beam_position(4.0, 4.0)
    assert dm._instrument.names().count("DSSetScanControl") == 2


def test_dm_script_route_when_the_python_beam_calls_are_absent(dm, backend, monkeypatch):
    monkeypatch.delattr(dm, "DS_MoveBeamTo")
    monkeypatch.delattr(dm, "DS_GetBeamDSPosition")
    backend.set_scan_parameters(width=50, height=40, rotation=20.0)
    backend.acquire_image()
    backend.set_beam_position(12.5, 30.25)
    assert "DSSetBeamDSPosition" in dm._instrument.names()
    assert dm._instrument.pixel_of(dm._instrument.beam_physical_ds) == pytest.approx(
        (12.5, 30.25), abs=1e-9
    )
    assert backend.get_beam_position() == pytest.approx((12.5, 30.25), abs=1e-9)
    assert "DSGetBeamDSPosition" in dm._instrument.names()
    assert not dm._instrument.persistent.paths()  # the result tags were cleaned up
    assert backend.describe()["dm_routes"]["move_beam"] == "DSSetBeamDSPosition"


def test_no_beam_placement_without_a_survey_of_the_current_field(dm, backend):
    with pytest.raises(BadRequest, match="acquire_image first"):
        backend.set_beam_position(1.0, 1.0)
    with pytest.raises(BadRequest, match="acquire_image first"):
        backend.get_beam_position()
    backend.set_scan_parameters(width=64, height=64)
    backend.acquire_image()
    backend.set_scan_parameters(width=128)
    with pytest.raises(BadRequest, match=r"scan field changed \(width\)"):
        backend.set_beam_position(1.0, 1.0)
    assert backend.status()["beam_placement"] == "needs survey"
    assert "DS_MoveBeamTo" not in dm._instrument.names()
    backend.acquire_image()
    backend.set_beam_position(100.0, 1.0)
    assert backend.status()["beam_placement"] == "ready"


def test_survey_without_digiscan_tags_refuses_beam_placement(dm, backend):
    dm._instrument.write_digiscan_tags = False
    backend.set_scan_parameters(width=64, height=64)
    acq = backend.acquire_image()  # the image itself is fine
    assert acq.images["HAADF"].shape == (64, 64)
    assert "Horizontal DS Offset" in acq.metadata["digiscan_error"]
    with pytest.raises(BadRequest, match="Horizontal DS Offset"):
        backend.set_beam_position(1.0, 1.0)
    assert "DS_MoveBeamTo" not in dm._instrument.names()


def test_rotated_survey_with_spacings_only_refuses_beam_placement(dm, backend):
    dm._instrument.write_pixel_steps = False
    backend.set_scan_parameters(width=64, height=64, rotation=30.0)
    backend.acquire_image()
    with pytest.raises(BadRequest, match="Perpendicular"):
        backend.set_beam_position(1.0, 1.0)
    backend.set_scan_parameters(rotation=0.0)
    backend.acquire_image()
    backend.set_beam_position(5.0, 6.0)  # unrotated: the spacings suffice
    assert dm._instrument.pixel_of(dm._instrument.beam_physical_ds) == pytest.approx((5.0, 6.0))


def test_commissioning_check_agrees_with_dms_own_conversion(dm, backend):
    backend.set_scan_parameters(width=96, height=64, rotation=45.0)
    backend.acquire_image()
    report = backend.check_digiscan_frame()
    assert len(report) == 5
    for row in report:
        assert row["difference"] == pytest.approx((0.0, 0.0), abs=1e-6)
    assert "DSCalcDSCoordFromImage" in dm._instrument.names()


def test_blank_and_unblank(dm, backend):
    backend.blank_beam()
    assert dm._instrument.blanked
    assert backend.status()["beam_blanked"]
    backend.unblank_beam()
    assert not dm._instrument.blanked
    assert ("SetBeamBlanked", (True,)) in dm._instrument.calls
    assert dm._instrument.calls[-1] == ("SetBeamBlanked", (False,))
    dm._instrument.has_blanker = False
    with pytest.raises(Unsupported, match="no beam blanker"):
        backend.blank_beam()


def test_a_failing_digiscan_frame_is_an_instrument_error_and_cleans_up(dm, backend):
    dm._instrument.fail["DS_StartAcquisition"] = "DigiScan: DMA error"
    with pytest.raises(InstrumentError, match="DMA error"):
        backend.acquire_image()
    assert dm._instrument.dialog_enabled  # handed back to the operator
    assert not dm._instrument.ds_params  # parameter set deleted
    assert backend.status()["acquiring"] is None
