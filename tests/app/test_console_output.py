"""One progress display per run: BestEffortCallback's table for a few rows, the bar for
many, never both (they wrote over each other, and a 32 x 32 spectrum image printed 1,024
table rows)."""

from __future__ import annotations

import io

import bluesky.plans as bp
from bluesky import RunEngine
from bluesky.callbacks.best_effort import BestEffortCallback
from ophyd.sim import det

from ophyd_stem.app.progress import ConsoleOutput, RunProgress


def session_like():
    RE = RunEngine()
    bec = BestEffortCallback()
    bec.disable_plots()
    bar = io.StringIO()
    progress = RunProgress(file=bar)
    RE.subscribe(ConsoleOutput(bec, progress, max_rows=10))
    RE.subscribe(progress)
    RE.subscribe(bec)
    return RE, bec, bar


def table_rows(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("|") and "det" not in line)


def test_a_short_run_gets_the_table_a_long_one_the_bar(capsys):
    RE, _bec, bar = session_like()
    RE(bp.count([det], num=3))
    out = capsys.readouterr().out
    assert table_rows(out) == 3
    assert bar.getvalue() == ""

    RE(bp.count([det], num=40))
    out = capsys.readouterr().out
    assert table_rows(out) == 0  # no 40-row table
    assert "40/40" in bar.getvalue()  # the bar, with counts


def test_the_persons_own_switch_is_kept(capsys):
    RE, bec, bar = session_like()
    bec.disable_table()
    RE(bp.count([det], num=3))
    assert table_rows(capsys.readouterr().out) == 0
    assert "3/3" in bar.getvalue()
    bec.enable_table()
    RE(bp.count([det], num=2))
    assert table_rows(capsys.readouterr().out) == 2
