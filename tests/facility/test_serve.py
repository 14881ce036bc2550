"""`ophyd-stem serve` as a user runs it: started from a shell, a plan submitted with
`ophyd-stem run ... --queue`, Ctrl-C, and nothing left running. Its re-manager runs the
profile in the IPython-kernel worker (the plain worker is tested in test_queue.py), with the
twin's bridge as its own process. Also: `qserver-list-plans-devices` on the profile leaves no
catalog server behind."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import complete_run, needs_redis, quiet_environment

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
STARTUP = Path(__file__).resolve().parents[2] / "profile_collection/profile_ophyd_stem/startup"


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that mention ``text`` (a private temp path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def _user_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(quiet_environment(tmp_path))
    env["OPHYD_STEM_DATA_DIR"] = str(tmp_path / "data")
    for name in ("OPHYD_STEM_BRIDGE", "OPHYD_STEM_CATALOG", "OPHYD_STEM_API_KEY"):
        env.pop(name, None)
    return env


def test_serve_runs_a_queued_plan_and_ctrl_c_leaves_nothing_behind(tmp_path):
    needs_redis()
    env = _user_env(tmp_path)
    serve = subprocess.Popen(
        [
            str(BIN / "ophyd-stem"), "serve", "--redis-port", "0", "--control-port", "0",
            "--info-port", "0", "--bridge-port", "0", "--twin-bridge", "--ipython-kernel",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    lines = []
    try:
        deadline = time.monotonic() + 500
        while time.monotonic() < deadline:
            line = serve.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.strip() == "ready":
                break
        output = "".join(lines)
        assert lines, output
        assert lines[-1].strip() == "ready", output
        address = re.search(r"re-manager\s+(tcp://\S+)", output).group(1)
        state = json.loads((tmp_path / "data/facility/facility.json").read_text())
        pids = [piece["pid"] for piece in state["pieces"].values()]
        assert set(state["pieces"]) == {"redis", "bridge", "re-manager"}

        run = subprocess.run(
            [str(BIN / "ophyd-stem"), "run", "survey", "--size", "48", "--queue", address],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        uid = re.search(r"^run (\S+)", run.stdout, re.M).group(1)

        from ophyd_stem.catalog import CatalogSettings, EmbeddedServer, open_catalog

        server = EmbeddedServer.find(CatalogSettings(tmp_path / "data"))
        assert server is not None
        pids.append(server.pid)
        catalog = open_catalog(server.uri, server.api_key)
        try:
            recorded = complete_run(catalog, uid)
            assert recorded.metadata["stop"]["exit_status"] == "success"
            assert recorded["primary"]["scan-haadf"].read().shape[-2:] == (48, 48)
        finally:
            catalog.context.close()
    finally:
        serve.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            rest, _ = serve.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            serve.kill()
            rest, _ = serve.communicate()
        lines.append(rest)
    assert serve.returncode == 0, "".join(lines)[-3000:]
    assert "stopped" in lines[-1]
    time.sleep(0.5)
    assert [pid for pid in pids if _alive(pid)] == []
    assert _processes_mentioning(str(tmp_path)) == []
    assert not (tmp_path / "data/facility/facility.json").exists()


def test_listing_the_profiles_plans_leaves_no_catalog_server_running(tmp_path):
    env = _user_env(tmp_path)
    result = subprocess.run(
        [
            str(BIN / "qserver-list-plans-devices"), "--startup-dir", str(STARTUP),
            "--file-dir", str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    listed = yaml.safe_load((tmp_path / "existing_plans_and_devices.yaml").read_text())
    assert {"count", "scan", "grid_scan", "mv", "survey", "adaptive_eels"} <= set(
        listed["existing_plans"]
    )
    assert "record" not in listed["existing_plans"]
    assert {"scan_engine", "eels_points", "stem", "eels"} <= set(listed["existing_devices"])
    time.sleep(1.0)
    assert _processes_mentioning(str(tmp_path / "data")) == []
