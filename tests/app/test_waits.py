"""Waits that have nothing to count still say that they are waiting, and for how long."""

from __future__ import annotations

import io
import threading

import pytest

from ophyd_stem.app.waits import still_waiting


def test_a_long_wait_says_it_is_still_going_and_how_long_it_took() -> None:
    out = io.StringIO()
    ticked = threading.Event()

    with still_waiting("connecting to the catalog", every=0.01, file=out):
        # wait for the first line instead of sleeping a fixed time (a busy machine)
        for _ in range(500):
            if "still connecting to the catalog" in out.getvalue():
                ticked.set()
                break
            threading.Event().wait(0.01)
    lines = out.getvalue().splitlines()
    assert ticked.is_set(), lines
    assert lines[0].startswith("  still connecting to the catalog: ")
    assert lines[0].endswith(" s")
    assert lines[-1].startswith("  done connecting to the catalog after ")


def test_a_short_wait_prints_nothing_and_errors_pass_through() -> None:
    out = io.StringIO()
    with still_waiting("starting", every=60.0, file=out):
        pass
    assert out.getvalue() == ""
    refused = pytest.raises(ValueError, match="the bridge refused")
    with refused, still_waiting("starting", every=60.0, file=out):
        raise ValueError("the bridge refused")
    assert out.getvalue() == ""


def test_disabled_prints_nothing() -> None:
    out = io.StringIO()
    with still_waiting("starting", every=0.001, file=out, enabled=False):
        threading.Event().wait(0.05)
    assert out.getvalue() == ""
