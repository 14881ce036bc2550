"""The top-level packages must come from this distribution.

PyPI has other distributions that install a top-level ``agents`` (and ``plans``); a stale one
in the environment would shadow ours silently.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", ["agents", "plans", "dm_bridge", "ophyd_stem"])
def test_top_level_package_comes_from_this_distribution(package):
    module = importlib.import_module(package)
    path = Path(module.__file__).resolve()
    assert path.is_relative_to(REPO), f"{package} imported from {path}, not from {REPO}"
    owners = set(importlib.metadata.packages_distributions().get(package, []))
    assert owners == {"ophyd-stem"}, f"{package} is provided by {owners}"


def test_console_scripts_are_declared():
    eps = importlib.metadata.entry_points(group="console_scripts")
    names = {ep.name: ep.value for ep in eps if ep.dist and ep.dist.name == "ophyd-stem"}
    assert names["dm-bridge"] == "dm_bridge.cli:main"
    assert names["ophyd-stem"] == "ophyd_stem.app.cli:main"
