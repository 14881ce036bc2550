"""Devices in ophyd-async mock mode: no bridge at all, puts recorded, values injected."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import h5py
import numpy as np
import pytest
from bluesky.run_engine import call_in_bluesky_event_loop
from ophyd_async.core import get_mock_put, set_mock_value

from ophyd_stem import Microscope, energy_axis_from_configuration


@pytest.fixture
def microscope(RE, tmp_path):
    microscope = Microscope(None, assets_dir=tmp_path)
    call_in_bluesky_event_loop(microscope.connect(mock=True))
    return microscope


def test_moves_and_settings_are_recorded_without_a_bridge(RE, microscope):
    set_mock_value(microscope.scan.width, 128)
    set_mock_value(microscope.scan.height, 128)
    RE(bps.mv(microscope.eels.exposure, 0.25, microscope.scan.dwell_time, 4e-6))
    get_mock_put(microscope.eels.exposure).assert_called_once_with(0.25)
    get_mock_put(microscope.scan.dwell_time).assert_called_once_with(4e-6)
    RE(bps.mv(microscope.stem.beam.x, 12.5))
    get_mock_put(microscope.stem.beam.x.setpoint).assert_called_once_with(12.5)


def test_beam_move_outside_the_mocked_field_is_refused(RE, microscope):
    set_mock_value(microscope.scan.width, 64)
    # The limits follow the (mocked) scan field: 64 px wide -> x in [-0.5, 63.5].
    with pytest.raises(Exception, match=r"outside the scan field \[-0.5, 63.5\]"):
        RE(bps.mv(microscope.stem.beam.x, 1000.0))
    get_mock_put(microscope.stem.beam.x.setpoint).assert_not_called()
    RE(bps.mv(microscope.stem.beam.x, 63.5))
    get_mock_put(microscope.stem.beam.x.setpoint).assert_called_once_with(63.5)


def test_count_in_mock_mode_reads_mocked_settings(RE, microscope, tmp_path):
    set_mock_value(microscope.eels.channels, 16)
    set_mock_value(microscope.eels.energy_offset, 5.0)
    set_mock_value(microscope.eels.dispersion, 0.5)
    set_mock_value(microscope.scan.width, 20)
    set_mock_value(microscope.scan.height, 10)
    set_mock_value(microscope.scan.signals, ["HAADF", "BF"])
    RE(bp.count([microscope.eels, microscope.scan], num=2))
    events = [d for n, d in RE.documents if n == "event"]
    assert len(events) == 2
    assert events[0]["data"]["eels-spectrum"].shape == (16,)
    descriptor = next(d for n, d in RE.documents if n == "descriptor")
    axis = energy_axis_from_configuration(descriptor["configuration"]["eels"]["data"])
    np.testing.assert_allclose(axis, 5.0 + 0.5 * np.arange(16))
    assert descriptor["data_keys"]["scan-haadf"]["shape"] == [10, 20]  # one image per event
    assert descriptor["data_keys"]["scan-bf"]["shape"] == [10, 20]
    resource = next(d for n, d in RE.documents if n == "stream_resource")
    path = resource["uri"].removeprefix("file://localhost")
    with h5py.File(path, "r") as f:
        assert f["/entry/HAADF"].shape == (2, 10, 20)
