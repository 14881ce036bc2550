"""Layer rules of ARCHITECTURE.md, enforced: import-linter contracts, the light server side,
Python 3.8 syntax inside DigitalMicrograph, and plans importable without the ML stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: modules that run inside DigitalMicrograph's Python: stdlib, numpy and pyzmq only, Python 3.8
SERVER_SIDE = [
    "dm_bridge/__init__.py",
    "dm_bridge/errors.py",
    "dm_bridge/types.py",
    "dm_bridge/protocol.py",
    "dm_bridge/protocol_frames.py",
    "dm_bridge/protocol_header.py",
    "dm_bridge/protocol_replies.py",
    "dm_bridge/protocol_requests.py",
    "dm_bridge/transport.py",
    "dm_bridge/commands.py",
    "dm_bridge/keys.py",
    "dm_bridge/server.py",
    "dm_bridge/server_core.py",
    "dm_bridge/server_zmq.py",
    "dm_bridge/server_requests.py",
    "dm_bridge/stream.py",
    "dm_bridge/stream_server.py",
    "dm_bridge/backends/__init__.py",
    "dm_bridge/backends/base.py",
    "dm_bridge/backends/checks.py",
    "dm_bridge/backends/minimal.py",
    "dm_bridge/backends/digitalmicrograph.py",
    "dm_bridge/backends/dm_calibration.py",
    "dm_bridge/backends/dm_eels.py",
    "dm_bridge/backends/dm_session.py",
    "dm_bridge/backends/dm_options.py",
    # The clients and the command keep the same rules, so one DigitalMicrograph can drive
    # another's bridge from its own Python.
    "dm_bridge/_client_core.py",
    "dm_bridge/client.py",
    "dm_bridge/aio.py",
    "dm_bridge/local.py",
    "dm_bridge/cli.py",
]
ALLOWED_THIRD_PARTY = {"numpy", "zmq", "DigitalMicrograph"}


def existing(paths):
    return [REPO / p for p in paths if (REPO / p).exists()]


def test_import_linter_contracts_hold():
    result = subprocess.run(
        [str(BIN / "lint-imports"), "--config", str(REPO / "setup.cfg")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", existing(SERVER_SIDE), ids=lambda p: str(p.relative_to(REPO)))
def test_server_side_uses_only_stdlib_numpy_and_pyzmq(path):
    foreign = {
        name
        for name in _top_level_imports(path)
        if name not in sys.stdlib_module_names
        and name not in ALLOWED_THIRD_PARTY
        and name != "dm_bridge"
    }
    assert not foreign, f"{path.name} imports {sorted(foreign)}"


def test_server_side_keeps_python_38_syntax():
    files = [str(p) for p in existing(SERVER_SIDE)]
    result = subprocess.run(
        [str(BIN / "vermin"), "--no-tips", "--violations", "-t=3.8-", "--eval-annotations", *files],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


LIGHT = ["plans", "agents", "agents.registry", "agents.scalarizers", "dm_bridge", "ophyd_stem"]
ML = ("torch", "gpytorch", "botorch")
#: agents.runs reads the recorded calibration with ophyd_stem._calibration (decision 0015),
#: and nothing of Bluesky, the devices, the catalog, the bridge or the plans
RUNS_MUST_NOT_LOAD = (
    *ML,
    "bluesky",
    "ophyd_async",
    "event_model",
    "tiled",
    "dm_bridge",
    "plans",
    "ophyd_stem.catalog",
    "ophyd_stem._microscope",
)


@pytest.mark.parametrize(
    ("package", "heavy"),
    [*((package, ML) for package in LIGHT), ("agents.runs", RUNS_MUST_NOT_LOAD)],
    ids=[*LIGHT, "agents.runs"],
)
def test_light_packages_do_not_load_heavy_modules(package, heavy):
    code = (
        f"import sys, {package}; "
        f"heavy = [m for m in {heavy!r} if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, f"import {package} loaded {result.stdout.strip()}"


def test_plan_modules_keep_their_annotations_evaluated():
    """The queueserver builds each plan's parameter model from its annotations at run time:
    ``from __future__ import annotations`` leaves them as strings it cannot resolve."""
    offenders = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "plans").rglob("*.py"))
        if any(
            isinstance(node, ast.ImportFrom)
            and node.module == "__future__"
            and any(alias.name == "annotations" for alias in node.names)
            for node in ast.parse(path.read_text()).body
        )
    ]
    assert not offenders, f"from __future__ import annotations in {offenders}"
