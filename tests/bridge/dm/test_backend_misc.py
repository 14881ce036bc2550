"""hello, CLI options, import outside DM, abort, and the fake's fidelity to real DM data."""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dm_bridge.backends import load_backend
from dm_bridge.backends.digitalmicrograph import DigitalMicrographBackend
from dm_bridge.backends.dm_calibration import EELS_TAGS
from dm_bridge.errors import Aborted, BadRequest, Unsupported

pytestmark = pytest.mark.dm_fake

REPO = Path(__file__).resolve().parents[3]


def test_hello_describes_the_microscope(dm, backend):
    info = backend.hello()
    assert info["backend"] == "dm"
    instrument = info["instrument"]
    assert instrument["high_tension_kv"] == 200.0
    assert instrument["high_tension_source"] == "Py_Microscope.GetHighTension"
    assert instrument["detectors"] == ["HAADF", "BF"]
    assert instrument["limits"]["signals"] == ["HAADF", "BF"]
    assert instrument["spectrometer"]["name"] is None  # not known before a spectrum
    backend.acquire_spectrum()
    instrument = backend.hello()["instrument"]
    assert instrument["spectrometer"]["name"] == "Fake Enfinium"
    assert instrument["spectrometer"]["camera"] == "FAKE QUEFINA"
    assert instrument["probe"]["convergence_mrad"] == 30.0


def test_no_ground_truth_on_a_microscope(backend):
    assert "get_truth" not in backend.capabilities()
    with pytest.raises(Unsupported, match="no ground truth"):
        backend.get_truth()


def test_high_tension_from_tags_when_the_microscope_does_not_answer(dm, backend):
    dm._instrument.fail["GetHighTension"] = "No microscope connected"
    assert backend.describe()["high_tension_kv"] is None
    dm._instrument.high_tension_v = 80000.0
    backend.acquire_spectrum()
    described = backend.describe()
    assert described["high_tension_kv"] == 80.0
    assert described["high_tension_source"] == "image tags"


def test_cli_options_build_the_backend(dm):
    parser = argparse.ArgumentParser()
    DigitalMicrographBackend.add_arguments(parser)
    args = parser.parse_args(
        [
            "--dm-signal",
            "HAADF=2",
            "--dm-signal",
            "ABF=0",
            "--dm-eels-rows",
            "10:74",
            "--dm-eels-sensor-width",
            "1024",
            "--dm-eels-processing",
            "dark_subtracted",
            "--max-exposure",
            "2",
            "--dm-microscope-name",
            "Spectra",
        ]
    )
    options = DigitalMicrographBackend.options_from_arguments(args)
    backend = load_backend("dm", **options)
    assert isinstance(backend, DigitalMicrographBackend)
    assert backend.limits.signals == ("HAADF", "ABF")
    assert backend.limits.sensor_channels == 1024
    assert backend.limits.max_exposure == 2.0
    assert backend.describe()["name"] == "Spectra"
    backend.set_scan_parameters(width=16, height=16, signals=["ABF"])
    backend.acquire_image()
    assert [a[1] for n, a in dm._instrument.calls if n == "DS_SetParametersSignal"] == [0]
    backend.acquire_spectrum()
    (acquire,) = [a for n, a in dm._instrument.calls if n == "AcquireImage"]
    assert acquire[3:] == (2, 10, 0, 74, 1024)


@pytest.mark.parametrize(
    "bad", [["--dm-signal", "HAADF"], ["--dm-eels-rows", "9:3"], ["--dm-eels-rows", "a:b"]]
)
def test_bad_cli_options_are_refused_by_the_parser(bad, capsys):
    parser = argparse.ArgumentParser()
    DigitalMicrographBackend.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(bad)
    err = capsys.readouterr().err
    assert "expected" in err or "TOP must" in err


@pytest.mark.parametrize(
    "signals", [{}, {"HAADF": -1}, {"HAADF": 0, "BF": 0}, {"": 1}, {"HAADF": True}]
)
def test_bad_signal_maps_are_refused(dm, signals):
    with pytest.raises(ValueError, match=r"signal|detector"):
        DigitalMicrographBackend(signals=signals)


def test_outside_dm_the_module_imports_but_the_backend_explains(monkeypatch):
    monkeypatch.setitem(sys.modules, "DigitalMicrograph", None)  # import fails, as off-DM
    with pytest.raises(ImportError, match="only inside Gatan DigitalMicrograph"):
        DigitalMicrographBackend()


def test_the_modules_import_without_dm_in_a_fresh_interpreter():
    code = (
        "import sys, argparse\n"
        "from dm_bridge.backends.digitalmicrograph import DigitalMicrographBackend as B\n"
        "p = argparse.ArgumentParser(); B.add_arguments(p)\n"
        "assert '--dm-signal' in p.format_help()\n"
        "assert 'DigitalMicrograph' not in sys.modules\n"
        "heavy = {'scipy', 'torch', 'bluesky'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_abort_stops_a_running_digiscan_frame(dm, backend):
    backend.set_scan_parameters(width=32, height=32)
    dm._instrument.during_scan = backend.abort  # the server's I/O thread, mid-frame
    with pytest.raises(Aborted):
        backend.acquire_image()
    assert "DSStopAcquisition" in dm._instrument.names()
    assert ("DSStopAcquisition", (-1.0,)) in dm._instrument.calls
    assert dm._instrument.dialog_enabled
    assert not dm._instrument.ds_params
    with pytest.raises(BadRequest):  # the incomplete frame did not become the survey
        backend.set_beam_position(1.0, 1.0)


def test_an_abort_from_another_thread_never_calls_dm_from_that_thread(dm, backend):
    backend.set_scan_parameters(width=32, height=32)
    backend.acquire_image()  # the survey the spectra are placed on

    def abort_from_elsewhere():  # what the server's standby thread does, mid-frame
        other = threading.Thread(target=backend.abort)
        other.start()
        other.join()

    dm._instrument.threads.clear()
    dm._instrument.during_scan = abort_from_elsewhere
    with pytest.raises(Aborted):
        backend.acquire_image()
    assert ("DSStopAcquisition", (-1.0,)) in dm._instrument.calls
    assert dm._instrument.threads == {threading.get_ident()}  # the script thread only


def test_abort_outside_an_acquisition_sends_nothing_to_dm(dm, backend):
    start = len(dm._instrument.calls)
    backend.abort()
    assert dm._instrument.calls[start:] == []
    backend.clear_abort()
    backend.acquire_spectrum()


def test_close_hands_digiscan_back(dm, backend):
    dm._instrument.dialog_enabled = False
    backend.close()
    assert dm._instrument.dialog_enabled


def test_unknown_dm_script_is_an_error_in_the_fake(dm):
    """The fake fails like DM on scripts it does not know, so backend typos cannot pass."""
    with pytest.raises(RuntimeError, match="Error in line 2\nUnknown function 'IFSetEnergyLos'"):
        dm.ExecuteScriptString("number a\nIFSetEnergyLos(3)")


def test_fake_eels_tags_use_the_paths_of_a_real_dm_file(dm, backend, shared_data):
    """Every tag path the backend reads exists in a real GMS spectrum, and the fake writes it."""
    dm_reader = pytest.importorskip("rsciio.digitalmicrograph")
    signal = dm_reader.file_reader(str(shared_data / "EELS_STO.dm3"))[0]
    tags = signal["original_metadata"]["ImageList"]["TagGroup0"]["ImageTags"]

    def flatten(group, prefix=""):
        for key, value in group.items():
            if isinstance(value, dict):
                yield from flatten(value, prefix + key + ":")
            else:
                yield prefix + key

    real = set(flatten(tags))
    backend.acquire_spectrum()
    fake = set(dm._instrument.images[max(dm._instrument.images)].GetTagGroup().paths())
    for key in (
        "dispersion",
        "energy_loss",
        "exposure",
        "binning",
        "spectrometer",
        "camera",
        "convergence_mrad",
        "collection_mrad",
        "voltage_v",
    ):
        assert EELS_TAGS[key][0] in real, f"{key}: {EELS_TAGS[key][0]} not in the real file"
        assert EELS_TAGS[key][0] in fake, f"{key}: the fake does not write {EELS_TAGS[key][0]}"
