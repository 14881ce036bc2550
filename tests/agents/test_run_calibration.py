"""The energy axis of a run, read from its recorded EELS calibration by one function that the
readers (``ophyd_stem``) and the agents' run unpacking (``agents.runs``) share (decision 0015;
that agents.runs loads nothing else of ophyd_stem: tests/test_architecture.py)."""

import numpy as np
import pytest

from agents.runs import unpack_run
from ophyd_stem import energy_axis_from_configuration

#: the eels_points calibration as the devices record it: 5 channels of 0.25 eV, binned by 2
CALIBRATION = {
    "eels-energy_offset": -5.0,
    "eels-dispersion": 0.25,
    "eels-binning": 2,
    "eels-channels": 5,
}
AXIS = np.array([-5.0, -4.5, -4.0, -3.5, -3.0])


def test_the_axis_is_offset_plus_channel_times_dispersion_times_binning():
    np.testing.assert_array_equal(energy_axis_from_configuration(CALIBRATION), AXIS)
    unbinned = {**CALIBRATION, "eels-binning": 0}  # no binning recorded as 0: channel = 1
    np.testing.assert_array_equal(
        energy_axis_from_configuration(unbinned), -5.0 + 0.25 * np.arange(5)
    )


def test_an_older_runs_whole_axis_is_taken_as_recorded_and_an_empty_one_ignored():
    older = {"eels-energy_axis": [1.0, 2.0, 4.0]}
    np.testing.assert_array_equal(energy_axis_from_configuration(older), [1.0, 2.0, 4.0])
    # an axis key without a value falls back to the calibration (it used to give NaN here)
    np.testing.assert_array_equal(
        energy_axis_from_configuration({**CALIBRATION, "eels-energy_axis": None}), AXIS
    )


@pytest.mark.parametrize(
    "configuration",
    [{}, {**CALIBRATION, "eels-channels": None}, {**CALIBRATION, "eels-dispersion": "wide"}],
    ids=["nothing", "no channel count", "not a number"],
)
def test_a_configuration_without_a_usable_calibration_has_no_axis(configuration):
    assert energy_axis_from_configuration(configuration) is None


def _documents(configuration):
    descriptor = {
        "uid": "d1",
        "name": "primary",
        "data_keys": {"eels-spectrum": {"dtype": "array", "shape": [5], "source": "sim"}},
        "configuration": {"eels_points": {"data": configuration}},
    }
    event = {"descriptor": "d1", "seq_num": 1, "time": 1.0, "data": {"eels-spectrum": [0.0] * 5}}
    return [
        ("start", {"uid": "run-1", "plan_name": "spectrum_image"}),
        ("descriptor", descriptor),
        ("event", event),
        ("stop", {"exit_status": "success"}),
    ]


@pytest.mark.parametrize(
    "configuration",
    [CALIBRATION, {"eels-energy_axis": list(AXIS)}, {}],
    ids=["now", "older", "none"],
)
def test_an_unpacked_run_has_the_axis_the_readers_compute(configuration):
    data = unpack_run(_documents(configuration))
    expected = energy_axis_from_configuration(configuration)
    if expected is None:
        assert data.energy_axis is None
    else:
        np.testing.assert_array_equal(data.energy_axis, expected)
