"""The Pareto front is non-dominated and complete; picks by index and weight are recorded."""

from __future__ import annotations

import numpy as np
import pytest

from agents.logstar.params import LoGParameters
from agents.logstar.pareto import non_dominated, pareto_front, select_point


def brute_force_front(y: np.ndarray) -> np.ndarray:
    keep = []
    for i in range(len(y)):
        dominated = any(
            np.all(y[j] <= y[i]) and np.any(y[j] < y[i]) for j in range(len(y)) if j != i
        )
        keep.append(not dominated)
    return np.array(keep)


@pytest.mark.parametrize("seed", range(5))
def test_non_dominated_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = np.round(rng.random((40, 2 + seed % 2)), 1)  # rounding makes ties and duplicates
    assert np.array_equal(non_dominated(y), brute_force_front(y))


def make_front(values):
    params = [LoGParameters(1.0 + 0.5 * i, 2.0 + 0.5 * i, 0.05) for i in range(len(values))]
    atoms = [[np.zeros((i, 3))] for i in range(len(values))]
    return pareto_front(params, np.array(values), atoms, ["quality_count", "error_rate"])


def test_front_is_sorted_non_dominated_and_keeps_atoms():
    values = [[0.5, 0.0], [0.1, 0.3], [0.2, 0.2], [0.3, 0.3], [0.05, 0.6], [0.2, 0.2]]
    front = make_front(values)
    # [0.3, 0.3] is dominated by [0.2, 0.2]; trial 5 ties with trial 2 and is folded into it
    assert [p.trial for p in front] == [4, 1, 2, 0]
    assert [p.index for p in front] == [0, 1, 2, 3]
    assert [p.ties for p in front] == [0, 0, 1, 0]
    assert front[0].rewards == {"quality_count": 0.05, "error_rate": 0.6}
    assert len(front[1].atoms[0]) == 1  # the atoms of trial 1
    assert front[2].summary()["n_atoms"] == [2]


def test_select_by_index_and_weight_is_recorded():
    front = make_front([[0.0, 0.8], [0.1, 0.3], [0.4, 0.1], [0.9, 0.0]])
    c = select_point(front, index=2, chooser="jane")
    assert (c.index, c.method, c.chooser, c.weights) == (2, "index", "jane", None)
    assert select_point(front, index=-1).index == 3
    # weight 1: QC alone -> the lowest QC; weight 0: ER alone -> the lowest ER
    assert select_point(front, weight=1.0).index == 0
    assert select_point(front, weight=0.0).index == 3
    mid = select_point(front, weight=0.5, chooser="bob")
    # normalised: QC/0.9, ER/0.8 -> scores 0.5, 0.243, 0.285, 0.5
    assert (mid.index, mid.method, mid.chooser) == (1, "weight", "bob")
    assert mid.weights == {"quality_count": 0.5, "error_rate": 0.5}
    assert select_point(front, weight=[3, 1]).weights == {"quality_count": 0.75, "error_rate": 0.25}
    assert mid.as_dict()["chooser"] == "bob"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one"),
        ({"index": 0, "weight": 0.5}, "exactly one"),
        ({"index": 4}, "outside"),
        ({"index": 1.5}, "integer"),
        ({"weight": 1.5}, r"\[0, 1\]"),
        ({"weight": [1, 2, 3]}, "weights"),
        ({"weight": [-1, 2]}, ">= 0"),
        ({"index": 0, "chooser": ""}, "chooser"),
    ],
)
def test_bad_selections_are_refused(kwargs, match):
    front = make_front([[0.0, 0.8], [0.1, 0.3], [0.4, 0.1], [0.9, 0.0]])
    with pytest.raises(ValueError, match=match):
        select_point(front, **kwargs)


def test_empty_front_is_refused():
    with pytest.raises(ValueError, match="empty"):
        select_point([], index=0)
