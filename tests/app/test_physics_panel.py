"""The physics GP's figure draws the posterior of its physical parameters step by step (and
nothing for agents that report none)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from agents.runs import RunData
from ophyd_stem.app.views.decor import figure_problems
from ophyd_stem.app.views.physics import draw_physics, physics_history


def run_with(reports: list) -> RunData:
    data = RunData(uid="0123456789abcdef", start={"plan_name": "adaptive_eels"}, stop={},
                   streams={})  # fmt: skip
    data.decisions = {"step": np.arange(1, len(reports) + 1), "reports": reports}
    return data


def test_the_edge_parameters_posterior_is_drawn_with_its_spread():
    widths = [3.0, 2.5, 2.2]
    reports = [{"physics": {"edge_width": {"mean": w, "std": w / 4, "units": "px"},
                            "edge_shift": {"mean": -0.5, "std": 0.3, "units": "px"}}}
               for w in widths]  # fmt: skip
    kind, series = physics_history(run_with(reports))
    assert kind == "physics"
    np.testing.assert_allclose(series["edge_width"][:, 0], widths)
    fig = Figure()
    ax = fig.add_subplot()
    assert draw_physics(ax, kind, series) == 2
    (width,) = [line for line in ax.lines if line.get_gid() == "edge_width"]
    np.testing.assert_allclose(width.get_ydata(), widths)
    assert figure_problems(fig) == []


def test_agents_without_physics_get_no_panel():
    assert physics_history(run_with([{"acquisition": {"name": "ei"}}] * 3)) is None
    assert physics_history(run_with([])) is None
