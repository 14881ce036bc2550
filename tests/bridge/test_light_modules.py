"""The bridge modules the server imports (and the clients, so DM can drive another DM) keep to
the standard library, numpy and pyzmq, in Python 3.8 syntax. tests/test_architecture.py covers
protocol.py and server.py; this covers the modules they import and the clients."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LIGHT = [
    "dm_bridge/protocol.py",
    "dm_bridge/server.py",
    "dm_bridge/commands.py",
    "dm_bridge/keys.py",
    "dm_bridge/_client_core.py",
    "dm_bridge/client.py",
    "dm_bridge/aio.py",
    "dm_bridge/cli.py",
]
ALLOWED = {"numpy", "zmq", "dm_bridge"}


@pytest.mark.parametrize("path", LIGHT)
def test_only_stdlib_numpy_and_pyzmq(path):
    tree = ast.parse((REPO / path).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    foreign = {n for n in names if n not in sys.stdlib_module_names and n not in ALLOWED}
    assert not foreign, f"{path} imports {sorted(foreign)}"


def test_python_38_syntax():
    result = subprocess.run(
        [str(BIN / "vermin"), "--no-tips", "--violations", "-t=3.8-", "--eval-annotations"]
        + [str(REPO / p) for p in LIGHT],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
