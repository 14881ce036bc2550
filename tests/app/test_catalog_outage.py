"""The command and a catalog server that dies mid-run: the command starts it again and stores
the run before it exits; the next commands reuse the long-lived server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from ophyd_stem.catalog import CatalogSettings, EmbeddedServer

from .conftest import BIN
from .test_command import ophyd_stem


def test_a_catalog_server_killed_mid_run_is_restarted_and_the_run_stored(app_env):
    settings = CatalogSettings(Path(app_env["OPHYD_STEM_DATA_DIR"]))
    command = [
        str(BIN / "ophyd-stem"), "run", "grid", "--rows", "8", "--cols", "10", "--size", "32",
        "--time-scale", "0.2",
    ]  # fmt: skip
    run = subprocess.Popen(
        command, env=app_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 240
        # The run has begun (its start document is spooled) and the server is known.
        while not list(settings.spool_dir.glob("*.jsonl")):
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        killed = EmbeddedServer.find(settings)
        assert killed is not None
        os.kill(killed.pid, signal.SIGKILL)
        out, err = run.communicate(timeout=400)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err[-3000:]
    assert "stored      yes" in out
    uid = re.search(r"^run ([0-9a-f-]{36})", out, re.M).group(1)
    assert list(settings.spool_dir.glob("*.jsonl")) == []

    server = EmbeddedServer.find(settings)  # restarted, and still up for the next command
    assert server is not None
    assert server.pid != killed.pid
    runs = ophyd_stem(app_env, "runs")
    assert runs.returncode == 0, runs.stderr
    (line,) = [line for line in runs.stdout.splitlines() if uid[:8] in line]
    # the run as it ended: 80 spectra and the survey image (their zero-loss rows not counted)
    assert line.split()[-5:] == ["80", "spectra,", "1", "image", "success"]
    assert EmbeddedServer.find(settings).pid == server.pid  # reused, not started again
