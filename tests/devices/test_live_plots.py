"""Units and hints make BestEffortCallback draw the right plots: a line for a 1-D beam scan,
a grid for a 2-D one, labelled with the hinted fields."""

from __future__ import annotations

import bluesky.plans as bp
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from bluesky.callbacks.best_effort import BestEffortCallback
from bluesky.callbacks.mpl_plotting import LiveGrid
from bluesky.run_engine import call_in_bluesky_event_loop

from ophyd_stem.sim import twin_microscope


@pytest.fixture
def microscope(RE, tmp_path):
    microscope = twin_microscope("nanowire", mode="local", assets_dir=tmp_path)
    yield microscope
    microscope.sim_bridge.close()
    plt.close("all")


def test_best_effort_callback_plots_intensity_against_the_beam_position(RE, microscope):
    bec = BestEffortCallback()
    bec.disable_table()
    RE.subscribe(bec)
    RE(bp.scan([microscope.eels], microscope.stem.beam.x, 10, 100, 7))
    fig = plt.gcf()
    lines = [line for ax in fig.axes for line in ax.get_lines()]
    assert lines, "BestEffortCallback drew no line"
    x, y = lines[0].get_data()
    assert list(np.round(x, 6)) == [10, 25, 40, 55, 70, 85, 100]
    assert np.all(np.asarray(y) > 0)
    assert fig.axes[0].get_ylabel() == "eels-intensity"
    assert fig.axes[0].get_xlabel() == "stem-beam-x"


def test_live_grid_shows_the_intensity_map_of_a_grid_scan(RE, microscope):
    grid = LiveGrid((3, 4), "eels-intensity", xlabel="stem-beam-x", ylabel="stem-beam-y")
    RE.subscribe(grid)
    RE(
        bp.grid_scan(
            [microscope.eels],
            microscope.stem.beam.y, 30, 90, 3,
            microscope.stem.beam.x, 20, 110, 4,
        )
    )  # fmt: skip
    image = np.asarray(grid.im.get_array())
    assert image.shape == (3, 4)
    assert np.isfinite(image).all()
    # The nanowire is not uniform: the map shows contrast.
    assert image.max() > image.min()


def test_listing_the_column_as_a_detector_still_records_the_beam_position(RE, microscope):
    """Bluesky drops the motor when its parent is a detector; the column reads it instead,
    and the start document's plot hint names a field the run has."""
    bec = BestEffortCallback()
    bec.disable_table()
    RE.subscribe(bec)
    stem = microscope.stem
    RE(bp.scan([microscope.eels, stem], stem.beam.x, 10, 100, 4))
    (start,) = [doc for name, doc in RE.documents if name == "start"]
    (descriptor,) = [doc for name, doc in RE.documents if name == "descriptor"]
    events = [doc for name, doc in RE.documents if name == "event"]
    ((fields, stream),) = start["hints"]["dimensions"]
    assert stream == "primary"
    assert set(fields) <= set(descriptor["data_keys"])
    assert descriptor["data_keys"]["stem-beam-x"]["units"] == "px"
    # the instrument's name has any length, not ophyd-async's 40 characters
    instrument = descriptor["configuration"]["stem"]["data_keys"]["stem-instrument"]
    assert instrument["dtype_numpy"] == "<U0"
    assert [e["data"]["stem-beam-x"] for e in events] == [10, 40, 70, 100]
    (line,) = [line for ax in plt.gcf().axes for line in ax.get_lines()]
    assert list(np.round(line.get_xdata(), 6)) == [10, 40, 70, 100]


def test_survey_images_read_as_frames_and_their_files_say_what_they_are(RE, microscope):
    import bluesky.plan_stubs as bps
    import h5py

    import plans

    RE(bps.mv(microscope.scan.width, 48, microscope.scan.height, 32))
    RE(plans.survey(microscope.scan, num=2))
    (descriptor,) = [doc for name, doc in RE.documents if name == "descriptor"]
    assert descriptor["data_keys"]["scan-haadf"]["shape"] == [32, 48]  # (N, H, W) in reading
    (resource,) = [doc for name, doc in RE.documents if name == "stream_resource"]
    with h5py.File(resource["uri"].removeprefix("file://localhost"), "r") as file:
        dataset = file[resource["parameters"]["dataset"]]
        assert dataset.shape == (2, 32, 48)
        attrs = dict(dataset.attrs)
    fov = call_in_bluesky_event_loop(microscope.scan.field_of_view.get_value())
    assert attrs["signal"] == "HAADF"
    assert attrs["units"] == "counts"
    assert (attrs["x_units"], attrs["y_units"], attrs["pixel_size_units"]) == ("nm", "nm", "nm")
    assert attrs["pixel_size"] == pytest.approx(fov / 48)
    assert attrs["x_scale"] == attrs["y_scale"] == attrs["pixel_size"]
    assert list(attrs["axes"]) == ["frame", "y", "x"]
