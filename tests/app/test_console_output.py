"""One progress display per run: BestEffortCallback's table for a few rows, the bar for
many, never both (they wrote over each other, and a 32 x 32 spectrum image printed 1,024
table rows)."""

from __future__ import annotations

import io
import re

import bluesky.plans as bp
import pytest
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


def measuring(points, num_points=20, announce=None, fail_after=None):
    """A run that declares ``num_points``, may record how many points it will really take
    (as the edge plans do: ``edge-n_points``), then measures ``points`` points."""
    import bluesky.plan_stubs as bps
    import bluesky.preprocessors as bpp

    from ophyd_stem import Record
    from plans.stubs import record

    md = {"num_points": num_points, "num_points_key": "edge-n_points"}

    @bpp.run_decorator(md=md)
    def inner():
        if announce is not None:
            yield from record(Record("edge"), "edge_map", n_points=announce)
        for i in range(points):
            if i == fail_after:
                raise RuntimeError("the bridge went away")
            yield from bps.trigger_and_read([det])

    return inner()


def last_bar(bar):
    """The bar as it was last drawn."""
    return bar.getvalue().replace("\n", "\r").strip("\r").split("\r")[-1]


def test_the_bar_follows_the_total_the_plan_announces(capsys):
    RE, _bec, bar = session_like()
    RE(measuring(12, num_points=20, announce=12))  # a budget of 20, 12 edge sites found
    assert "/20" not in bar.getvalue()  # never counted towards the budget
    assert "12/12" in last_bar(bar)
    assert "100%" in last_bar(bar)


def test_a_run_that_ends_early_ends_its_bar_at_100_percent(capsys):
    RE, _bec, bar = session_like()
    RE(measuring(12, num_points=20))  # the agent had nothing more to measure
    assert "12/12" in last_bar(bar)
    assert "100%" in last_bar(bar)


def test_points_added_raise_the_total_instead_of_running_past_it(capsys):
    RE, _bec, bar = session_like()
    RE(measuring(18, num_points=15))  # the operator added three points
    drawn = bar.getvalue()
    assert "18/18" in last_bar(bar)
    assert "16/15" not in drawn
    assert "18/15" not in drawn
    assert all(int(p) <= 100 for p in re.findall(r"(\d+)%", drawn))


def test_a_failed_run_keeps_its_bar_where_it_stopped(capsys):
    RE, _bec, bar = session_like()
    with pytest.raises(RuntimeError, match="bridge went away"):
        RE(measuring(12, num_points=20, fail_after=5))
    assert "5/20" in last_bar(bar)
    assert "fail" in last_bar(bar)
