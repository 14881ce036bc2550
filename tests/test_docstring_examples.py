"""The ``>>>`` examples in the packages' docstrings run and say what they do.

Every module of ``agents``, ``plans``, ``ophyd_stem`` and ``dm_bridge`` that holds an example
is imported and its examples run with :mod:`doctest` (what ``pytest --doctest-modules``
does), with the suite's warnings-as-errors, in a temporary folder and data directory. An
example that needs a live microscope, a server or a trained model is marked
``# doctest: +SKIP`` in its docstring, which says so; every other one must run and print
what it shows. Quick by rule: no training, no network, no servers (the whole file takes a
few seconds once the packages are imported).
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("agents", "plans", "ophyd_stem", "dm_bridge")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

#: examples still written as illustrations (undefined names), skipped until each is made to
#: run or marked +SKIP with the reason; none left. Names are doctest's: the module, or
#: module.object.
PENDING: frozenset[str] = frozenset()


def modules_with_examples() -> list[str]:
    """Dotted names of the modules whose source holds an example (found without importing
    anything, so collecting this file stays instant)."""
    names = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if ">>>" not in path.read_text(encoding="utf-8"):
                continue
            parts = path.relative_to(REPO).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = modules_with_examples()


def test_the_examples_are_found():
    assert len(MODULES) > 80
    assert "agents.edges" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    # an example that writes a file writes it here, and a catalog goes here too
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPHYD_STEM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPHYD_STEM_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module, name, globs=vars(module).copy()) if t.examples]
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    failures: list[str] = []
    ran = 0
    for test in sorted(tests, key=lambda t: t.name):
        if test.name in PENDING:
            continue
        report: list[str] = []
        result = runner.run(test, out=report.append, clear_globs=True)
        ran += result.attempted
        if result.failed:
            failures.append("".join(report))
    assert not failures, "\n".join(failures)
    if not ran:
        why = "or is pending" if any(t.name in PENDING for t in tests) else "(marked +SKIP)"
        pytest.skip(
            f"{name}: every example needs a microscope, a server, a cluster or minutes of "
            f"training {why}"
        )
