"""docs/dm_start_bridge.py (the script users open in DM) serves, answers, and stops."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from dm_bridge.client import BridgeClient

pytestmark = pytest.mark.dm_fake

SCRIPT = Path(__file__).resolve().parents[3] / "docs" / "dm_start_bridge.py"


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_start_script_serves_the_dm_backend_and_stops_on_the_stop_file(
    dm, tmp_path, restore_logging
):
    stop_file = tmp_path / "bridge.stop"
    source = SCRIPT.read_text()
    # What a user does: edit the settings block (a free port, and a private stop file)
    edited = source.replace("PORT = 5555", "PORT = 0").replace(
        'STOP_FILE = os.path.join(tempfile.gettempdir(), f"ophyd-stem-bridge-{PORT}.stop")',
        f"STOP_FILE = {str(stop_file)!r}",
    )
    assert edited.count(str(stop_file)) == 1
    assert "PORT = 0" in edited
    assert source.splitlines()[0] == "# $BACKGROUND$"  # DM's background-thread marker
    printed = []
    namespace = {"__name__": "__main__", "print": lambda *a: printed.append(" ".join(a))}
    runner = threading.Thread(target=exec, args=(compile(edited, str(SCRIPT), "exec"), namespace))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not any("serving dm at" in line for line in printed):
            assert time.monotonic() < deadline, printed
            assert runner.is_alive(), printed
            time.sleep(0.02)
        endpoint = next(line for line in printed if "serving" in line).split(" at ")[1]
        client = BridgeClient(endpoint, timeout=10.0)
        try:
            assert client.hello()["backend"] == "dm"
            client.set_scan_parameters(width=32, height=32)
            client.acquire_image()
            client.set_beam_position(3.0, 4.0)
        finally:
            client.close()
        assert any(str(stop_file) in line for line in printed)  # tells the user how to stop
        stop_file.touch()
        runner.join(10)
        assert not runner.is_alive()
        assert printed[-1] == "dm-bridge: stopped"
        assert not stop_file.exists()
        assert dm._instrument.dialog_enabled  # DigiScan handed back to the operator
    finally:
        stop_file.touch()
        runner.join(10)
