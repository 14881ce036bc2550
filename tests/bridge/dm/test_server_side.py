"""The DM backend's helper modules obey the server-side rules (stdlib, numpy, pyzmq; 3.8).

tests/test_architecture.py checks the modules it lists; these are new, so they are
checked here as well (the same vermin call and the same import rule).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
MODULES = [
    REPO / "dm_bridge/backends/digitalmicrograph.py",
    REPO / "dm_bridge/backends/dm_calibration.py",
    REPO / "dm_bridge/backends/dm_session.py",
    REPO / "dm_bridge/backends/dm_options.py",
]
ALLOWED = {"numpy", "zmq", "DigitalMicrograph", "dm_bridge"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_only_stdlib_numpy_and_dm(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    foreign = {n for n in names if n not in sys.stdlib_module_names and n not in ALLOWED}
    assert not foreign, f"{path.name} imports {sorted(foreign)}"


def test_python_38_syntax():
    result = subprocess.run(
        [str(BIN / "vermin"), "--no-tips", "--violations", "-t=3.8-", "--eval-annotations"]
        + [str(p) for p in MODULES],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
