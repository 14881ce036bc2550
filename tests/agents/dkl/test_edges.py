"""Edge-guided candidates on synthetic images with a known boundary."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

from agents.edges import (
    EdgeAgent,
    edge_candidates,
    edge_map,
    evaluate_edge_points,
    order_points,
    path_length,
)


def disc_scene(size: int = 64, radius: float = 18.0, noise: float = 0.05, seed: int = 0):
    """A bright disc (a particle on a support) and its boundary as a label map."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(xx - size / 2 + 0.3, yy - size / 2 - 0.2)
    image = (r < radius).astype(float) + noise * rng.standard_normal((size, size))
    labels = np.zeros((size, size), dtype=np.uint8)
    labels[r < radius] = 2
    labels[np.abs(r - radius) < 0.75] = 1  # the interface: a one-pixel ring
    return image, labels


@pytest.mark.parametrize("method", ["gradient", "canny"])
def test_edge_map_is_strongest_at_the_step(method, make_step_image):
    em = edge_map(make_step_image(40, 20), method=method, sigma=1.0)
    assert em.shape == (40, 40)
    assert em.max() == pytest.approx(1.0)
    strongest_columns = np.argmax(em[5:35], axis=1)
    assert set(strongest_columns) <= {19, 20}


def test_flat_image_has_no_edges():
    assert not edge_map(np.full((16, 16), 3.0)).any()
    pts, strength = edge_candidates(np.zeros((16, 16)))
    assert pts.shape == (0, 2)
    assert strength.shape == (0,)


@pytest.mark.parametrize("spacing", [1.0, 1.5, 3.0])
def test_candidates_cover_every_edge_pixel_within_spacing_and_keep_apart(spacing):
    em = np.zeros((50, 50))
    em[10, 5:45] = 1.0
    em[10:40, 30] = 0.8  # a T junction
    pts, strength = edge_candidates(em, threshold=0.0, spacing=spacing)
    edge_pixels = np.column_stack(np.nonzero(em)[::-1]).astype(float)
    nearest, _ = cKDTree(pts).query(edge_pixels)
    assert nearest.max() <= spacing + 1e-9
    pairwise, _ = cKDTree(pts).query(pts, k=2)
    assert pairwise[:, 1].min() > spacing  # farthest-point sampling never crowds
    assert strength[0] == 1.0  # the strongest edge starts


def test_budget_caps_the_candidates_and_spreads_them_along_the_edge():
    em = np.zeros((20, 200))
    em[10, :] = 1.0
    pts, _ = edge_candidates(em, budget=10)
    assert len(pts) == 10
    gaps = np.diff(np.sort(pts[:, 0]))
    assert gaps.min() >= 10
    assert gaps.max() <= 30


def test_disc_boundary_is_found_with_few_points_and_covered():
    image, labels = disc_scene()
    agent = EdgeAgent(image, sigma=1.5, spacing=1.5)
    radius_of_points = np.hypot(agent.candidates[:, 0] - 31.7, agent.candidates[:, 1] - 32.2)
    assert np.all(np.abs(radius_of_points - 18.0) < 2.0)  # all on the particle's edge
    score = evaluate_edge_points(labels, agent.candidates, interface_label=1)
    assert score["interface_within_1px"] >= 0.9
    assert score["fraction_measured"] < 0.03  # ~115 px of boundary out of 4,096


def test_order_points_visits_each_point_once_and_shortens_the_path():
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 100, size=(120, 2))
    order = order_points(pts, start=(0, 0))
    assert sorted(order.tolist()) == list(range(120))
    assert path_length(pts[order], (0, 0)) < 0.3 * path_length(pts, (0, 0))


def test_order_points_walks_collinear_points_in_order_from_the_start():
    pts = np.array([[5, 0], [1, 0], [9, 0], [3, 0], [7, 0]], dtype=float)
    order = order_points(pts, start=(10, 0))
    np.testing.assert_array_equal(pts[order][:, 0], [9, 7, 5, 3, 1])


def test_two_opt_uncrosses_a_nearest_neighbour_tour():
    # nearest neighbour from (0, 0) zig-zags and crosses itself; 2-opt must fix it
    pts = np.array([[0, 0], [1, 0], [0, 3], [1, 3.2], [0, 1.2], [1, 1.5]], dtype=float)
    order = order_points(pts, start=(0, 0))
    best = min(path_length(pts[[0, *p]]) for p in __import__("itertools").permutations(range(1, 6)))
    assert path_length(pts[order]) <= best * 1.05


def test_edge_agent_walks_its_path_then_stops(make_step_image):
    agent = EdgeAgent(make_step_image(40, 20), budget=6)
    first = agent.suggest(4)
    rest = agent.suggest(4)
    assert len(first) == 4
    assert len(rest) == 2
    assert agent.suggest(1) == []
    walked = np.array([[s["x"], s["y"]] for s in first + rest])
    np.testing.assert_array_equal(walked, agent.candidates)
    assert [s["index"] for s in first + rest] == list(range(6))
    agent.ingest(walked[:2], [1.0, 2.0])
    report = agent.report()
    assert report["n_candidates"] == 6
    assert report["n_suggested"] == 6
    assert report["n_measured"] == 2
    assert report["budget"] == 6
    json.dumps(report)


def test_evaluate_edge_points_counts_known_coverage():
    labels = np.zeros((10, 10), dtype=int)
    labels[5, :] = 1
    score = evaluate_edge_points(labels, [[1, 5], [4, 5], [7, 5]])
    assert score["fraction_measured"] == pytest.approx(0.03)
    assert score["interface_within_1px"] == pytest.approx(0.9)  # x = 0..8 of 0..9
    assert score["interface_within_1px_4"] == pytest.approx(0.9)
    diagonal = evaluate_edge_points(labels, [[1, 4], [4, 6]])
    assert diagonal["interface_within_1px"] == pytest.approx(0.6)  # 3 x 3 neighbourhoods
    assert diagonal["interface_within_1px_4"] == pytest.approx(0.2)  # 4-neighbourhoods
    with pytest.raises(ValueError, match="interface label 3"):
        evaluate_edge_points(labels, [[1, 5]], interface_label=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "sobel"}, "edge method"),
        ({"sigma": -1}, "sigma"),
        ({"spacing": 0}, "spacing"),
        ({"budget": 0}, "budget"),
        ({"low_threshold": 0.9, "high_threshold": 0.5}, "quantiles"),
    ],
)
def test_bad_edge_parameters_are_clear_errors(kwargs, message, make_step_image):
    with pytest.raises(ValueError, match=message):
        EdgeAgent(make_step_image(), **kwargs)


def test_bad_survey_images_are_clear_errors():
    with pytest.raises(ValueError, match="2-D"):
        EdgeAgent(np.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        EdgeAgent(np.full((8, 8), np.nan))
