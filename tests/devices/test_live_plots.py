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
