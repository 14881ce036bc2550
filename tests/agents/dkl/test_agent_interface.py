"""The shared agent interface, for the edge agent, the DKL agent and its plain-GP variant.

bluesky-adaptive 1.0's ``Optimizer`` protocol, structurally: ``suggest(n)`` -> mappings with
an ``_id``, ``ingest(points)`` with mappings, ``get_best_points()``; plus ``report()``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents import Agent
from agents.dkl import DKLAgent
from agents.edges import EdgeAgent


@pytest.fixture(params=["edge", "dkl", "gp"])
def agent(request, scene, fast_dkl):
    image, _ = scene
    if request.param == "edge":
        return EdgeAgent(image, spacing=1.5)
    if request.param == "dkl":
        return DKLAgent(image, **fast_dkl)
    return DKLAgent(image, hidden=None, n_components=None, **fast_dkl)


def test_is_an_agent_with_the_optimizer_methods(agent):
    assert isinstance(agent, Agent)
    for method in ("suggest", "ingest", "get_best_points", "report"):
        assert callable(getattr(agent, method))


def test_suggestions_are_mappings_with_fresh_ids_inside_the_field(agent, scene):
    rows, cols = scene[0].shape
    ids = []
    for _ in range(3):  # suggest, measure, ingest: the adaptive loop
        batch = agent.suggest(2)
        assert len(batch) == 2
        for s in batch:
            assert isinstance(s["x"], float)
            assert isinstance(s["y"], float)
            assert 0 <= s["x"] <= cols - 1
            assert 0 <= s["y"] <= rows - 1
            ids.append(s["_id"])
        agent.ingest([{**s, "value": float(s["x"] + s["y"])} for s in batch])
    assert len(set(ids)) == len(ids)
    assert agent.suggest(0) == []
    with pytest.raises(ValueError, match="n must be >= 0"):
        agent.suggest(-1)


def test_ingest_takes_arrays_or_mappings_and_best_point_is_the_largest(agent):
    agent.ingest([[3.0, 4.0], [10.0, 12.0]], [1.5, 7.0])
    agent.ingest([{"_id": 99, "x": 20.0, "y": 21.0, "value": 2.0}])
    assert len(agent.values) == 3
    [(index, parameters, outcome)] = agent.get_best_points()
    assert index == 1
    assert parameters == {"x": 10.0, "y": 12.0}
    assert outcome == {"value": 7.0}


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ([[1.0, 2.0]], [1.0, 2.0], "1 positions"),
        ([[1.0, 2.0]], [np.nan], "finite"),
        ([{"x": 1.0, "y": 2.0}], None, "value"),
    ],
)
def test_bad_measurements_are_refused_and_change_nothing(agent, x, y, message):
    if message == "finite":
        # Every agent takes a spectrum that gave no number as a measured pixel it cannot
        # learn from (a dead read-out must not stop a run on real data): nothing learned
        agent.ingest(x, y)
        assert len(agent.values) == 0
        assert len(agent.positions) == 0
        assert agent.unusable.tolist() == [[1.0, 2.0]]
        if isinstance(agent, DKLAgent):
            assert agent.report()["n_unusable"] == 1
        return
    with pytest.raises(ValueError, match=message):
        agent.ingest(x, y)
    assert len(agent.values) == 0
    assert len(agent.positions) == 0


def test_report_is_small_and_json_serialisable(agent):
    empty = agent.report()
    batch = agent.suggest(3)
    agent.ingest([[s["x"], s["y"]] for s in batch], [1.0, 2.0, 3.0])
    agent.suggest(1)
    for report in (empty, agent.report()):
        text = json.dumps(report, allow_nan=False)
        assert len(text) < 4000
        assert report["agent"] == agent.name
