"""Standard Bluesky plans on the devices, over the real path: a backend behind the bridge.

Every document is validated against event-model's schemas by the RE fixture.
"""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import h5py
import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.run_engine import call_in_bluesky_event_loop

from ophyd_stem import energy_axis_from_configuration
from ophyd_stem.sim import twin_microscope

from .conftest import backend_name, bridge_modes


@pytest.fixture(params=bridge_modes())
def microscope(request, RE, tmp_path):
    microscope = twin_microscope(
        backend=backend_name(), mode=request.param, assets_dir=tmp_path / "assets"
    )
    yield microscope
    microscope.sim_bridge.close()


def events(RE, stream_name="primary"):
    descriptors = {
        d["uid"] for n, d in RE.documents if n == "descriptor" and d["name"] == stream_name
    }
    return [d for n, d in RE.documents if n == "event" and d["descriptor"] in descriptors]


def test_mv_and_rd_place_the_beam(RE, microscope):
    RE(bps.mv(microscope.stem.beam.x, 10.25, microscope.stem.beam.y, 3.5))
    client = microscope.sim_bridge.client()
    assert client.get_beam_position() == pytest.approx((10.25, 3.5))

    def read_back():
        x = yield from bps.rd(microscope.stem.beam.x)
        y = yield from bps.rd(microscope.stem.beam.y)
        return x, y

    result = RunEngine(call_returns_result=True, loop=RE.loop)(read_back())
    assert result.plan_result == pytest.approx((10.25, 3.5))


def test_count_records_spectra_inline_with_energy_axis_and_units(RE, microscope):
    RE(bp.count([microscope.eels], num=3))
    evs = events(RE)
    assert len(evs) == 3
    descriptor = next(d for n, d in RE.documents if n == "descriptor")
    keys = descriptor["data_keys"]
    assert keys["eels-spectrum"]["units"] == "counts"
    assert keys["eels-intensity"]["units"] == "counts"
    config = descriptor["configuration"]["eels"]
    channels = config["data"]["eels-channels"]
    assert evs[0]["data"]["eels-spectrum"].shape == (channels,)
    # The energy axis is the calibration's scalars (databroker's config reader takes no
    # arrays), and it is the axis the camera reports.
    assert all(np.ndim(value) == 0 for value in config["data"].values())
    axis = energy_axis_from_configuration(config["data"])
    assert len(axis) == channels
    reported = call_in_bluesky_event_loop(microscope.eels.energy_axis.get_value())
    np.testing.assert_allclose(axis, reported)
    assert config["data_keys"]["eels-exposure"]["units"] == "s"
    assert config["data_keys"]["eels-energy_offset"]["units"] == "eV"
    assert descriptor["hints"]["eels"]["fields"] == ["eels-intensity"]


def test_grid_scan_over_the_beam_visits_every_position(RE, microscope):
    RE(
        bp.grid_scan(
            [microscope.eels],
            microscope.stem.beam.y,
            0,
            6,
            3,
            microscope.stem.beam.x,
            0,
            9,
            4,
        )
    )
    evs = events(RE)
    assert len(evs) == 12
    xs = sorted({round(e["data"]["stem-beam-x"], 6) for e in evs})
    ys = sorted({round(e["data"]["stem-beam-y"], 6) for e in evs})
    assert xs == [0.0, 3.0, 6.0, 9.0]
    assert ys == [0.0, 3.0, 6.0]
    descriptor = next(d for n, d in RE.documents if n == "descriptor")
    assert descriptor["data_keys"]["stem-beam-x"]["units"] == "px"
    limits = descriptor["data_keys"]["stem-beam-x"]["limits"]["control"]
    assert limits["low"] == -0.5
    start = next(d for n, d in RE.documents if n == "start")
    assert start["hints"]["dimensions"] == [
        (["stem-beam-y"], "primary"),
        (["stem-beam-x"], "primary"),
    ]


def test_scan_and_list_scan_move_the_beam(RE, microscope):
    RE(bp.scan([microscope.eels], microscope.stem.beam.x, 1, 5, 5))
    assert [e["data"]["stem-beam-x"] for e in events(RE)] == pytest.approx([1, 2, 3, 4, 5])
    RE.documents.clear()
    RE(bp.list_scan([microscope.eels], microscope.stem.beam.y, [2.5, 0.5, 7.25]))
    assert [e["data"]["stem-beam-y"] for e in events(RE)] == pytest.approx([2.5, 0.5, 7.25])
    spectra = [e["data"]["eels-spectrum"] for e in events(RE)]
    assert all(s.ndim == 1 and s.size > 0 for s in spectra)


def test_survey_image_lands_in_hdf5_and_equals_the_bridge_image(RE, microscope):
    RE(bps.mv(microscope.scan.width, 48, microscope.scan.height, 40))
    RE(bp.count([microscope.scan], num=2))
    resource = next(d for n, d in RE.documents if n == "stream_resource")
    datums = [d for n, d in RE.documents if n == "stream_datum"]
    assert [d["indices"] for d in datums] == [{"start": 0, "stop": 1}, {"start": 1, "stop": 2}]
    path = resource["uri"].removeprefix("file://localhost")
    with h5py.File(path, "r") as f:
        images = f[resource["parameters"]["dataset"]][()]
    assert images.shape == (2, 40, 48)
    assert images.dtype == np.float32
    assert np.isfinite(images).all()
    descriptor = next(d for n, d in RE.documents if n == "descriptor")
    config = descriptor["configuration"]["scan"]
    fov = config["data"]["scan-field_of_view"]
    assert config["data"]["scan-pixel_size"] == pytest.approx(fov / 48)
    assert config["data_keys"]["scan-pixel_size"]["units"] == "nm"


def test_trigger_and_read_in_a_custom_plan(RE, microscope):
    def two_points():
        yield from bps.open_run()
        for x in (2.0, 5.5):
            yield from bps.mv(microscope.stem.beam.x, x)
            yield from bps.trigger_and_read([microscope.eels, microscope.stem.beam.x])
        yield from bps.close_run()

    RE(two_points())
    assert [e["data"]["stem-beam-x"] for e in events(RE)] == pytest.approx([2.0, 5.5])


def test_move_outside_the_scan_field_is_refused_and_the_microscope_keeps_working(RE, microscope):
    RE(bps.mv(microscope.scan.width, 32))
    with pytest.raises(Exception, match="outside the scan field"):
        RE(bps.mv(microscope.stem.beam.x, 40.0))
    RE(bps.mv(microscope.stem.beam.x, 31.0))
    assert call_in_bluesky_event_loop(microscope.stem.beam.x.readback.get_value()) == 31.0


def test_bad_setting_gives_the_bridge_error_and_changes_nothing(RE, microscope):
    before = call_in_bluesky_event_loop(microscope.eels.exposure.get_value())
    with pytest.raises(Exception, match="exposure"):
        RE(bps.mv(microscope.eels.exposure, 1e6))
    after = call_in_bluesky_event_loop(microscope.eels.exposure.get_value())
    assert after == before


def test_high_tension_and_instrument_come_from_hello(RE, microscope):
    ht = call_in_bluesky_event_loop(microscope.stem.high_tension.get_value())
    hello = microscope.sim_bridge.client().hello()
    assert ht == pytest.approx(hello["instrument"]["high_tension_kv"])
    assert microscope.metadata()["bridge"]["backend"] == hello["backend"]


def test_each_run_gets_its_own_survey_file_and_stream_resource(RE, microscope):
    """Every run that takes a survey image stages the scan engine afresh: a new HDF5 file
    and a new StreamResource, whatever stream the image goes to."""
    from plans import survey
    from plans.stubs import read_survey_image

    RE(survey(microscope.scan))
    RE(bp.count([microscope.eels, microscope.scan]))

    import bluesky.preprocessors as bpp

    @bpp.stage_decorator([microscope.scan])
    @bpp.run_decorator()
    def into_named_stream():
        yield from read_survey_image(microscope.scan, stream_name="survey")

    RE(into_named_stream())
    resources = [d for n, d in RE.documents if n == "stream_resource"]
    assert len(resources) == 3
    assert len({r["uri"] for r in resources}) == 3
    assert len({r["run_start"] for r in resources}) == 3
