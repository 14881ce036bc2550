"""Seed points on the kinds of feature a survey shows (agents.dkl_seeds), the DKL default."""

from __future__ import annotations

import numpy as np
import pytest

from agents.dkl import DKLAgent
from agents.dkl_seeds import feature_seeds, feature_sites, kmeans

FAST = {"train_iters": 5, "finetune_iters": 5, "num_threads": 1}


def two_kinds_of_column(rows: int = 40, cols: int = 60, seed: int = 0):
    """Strong and faint columns on two interleaved square lattices (like an ABF image's large
    and small columns), a little noise; returns the image and each kind's centres (x, y)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:rows, :cols]
    image = 0.01 * rng.standard_normal((rows, cols))
    strong = [(x, y) for y in range(4, rows, 10) for x in range(4, cols, 10)]
    faint = [(x + 5, y + 5) for x, y in strong if x + 5 < cols and y + 5 < rows]
    for centres, height, sigma in ((strong, 1.0, 1.6), (faint, 0.35, 1.0)):
        for x, y in centres:
            image += height * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return image, np.array(strong, float), np.array(faint, float)


def near(points, centres, tol=1.0):
    return [bool(np.min(np.abs(centres - p).max(axis=1)) <= tol) for p in points]


def test_the_default_first_spectra_land_on_each_kind_of_column():
    """The default 5 seed points: at least one on a strong column's centre and one on a faint
    one's (the rest in the gaps). Five spread or random points do both about 1 time in 8."""
    image, strong, faint = two_kinds_of_column()
    for seed in range(3):
        agent = DKLAgent(image, seed=seed, window=9, **FAST)
        first = agent.suggest(5)
        assert [s["source"] for s in first] == ["seed"] * 5
        pts = np.array([[s["x"], s["y"]] for s in first])
        assert any(near(pts, strong)), (seed, pts.tolist())
        assert any(near(pts, faint)), (seed, pts.tolist())
        assert agent.config()["seed_points"] == "features"
    spread = DKLAgent(image, seed=0, window=9, seed_points="spread", **FAST).suggest(5)
    pts = np.array([[s["x"], s["y"]] for s in spread])
    assert not (any(near(pts, strong)) and any(near(pts, faint)))  # what the test tells apart


def test_feature_seeds_are_seeded_and_their_order_drawn():
    image, _, _ = two_kinds_of_column()
    runs = [
        [
            (s["x"], s["y"])
            for s in DKLAgent(image, n_seed=4, seed=seed, window=9, **FAST).suggest(4)
        ]
        for seed in (1, 1, 2, 3, 4)
    ]
    assert runs[0] == runs[1]  # same seed, same seed points in the same order
    assert len({tuple(r) for r in runs[1:]}) > 1  # another seed: another draw
    assert all(len(set(r)) == 4 for r in runs)  # distinct


def test_a_flat_survey_or_too_few_sites_gets_seed_points_spread_over_the_field():
    flat = np.ones((24, 40))
    assert len(feature_sites(flat, 9)) == 0
    agent = DKLAgent(flat, n_seed=6, seed=0, window=7, **FAST)
    pts = [(s["x"], s["y"]) for s in agent.suggest(6)]
    cells = {(int(x // (40 / 3)), int(y // 12)) for x, y in pts}
    assert cells == {(c, r) for r in range(2) for c in range(3)}  # one in each of 6 cells
    # more seed points asked for than the image has sites: the same, not an error
    one_blob = np.zeros((20, 20))
    one_blob[10, 10] = 1.0
    picks = feature_seeds(
        one_blob,
        5,
        np.array([[x, y] for y in range(20) for x in range(20)], float),
        np.random.default_rng(0).random((400, 3)),
        8,
        np.random.default_rng(0),
    )
    assert len(set(picks)) == 8


def test_feature_seeds_land_on_the_candidate_grid():
    """With every 2nd pixel a candidate, each site goes to its nearest candidate."""
    image, strong, _ = two_kinds_of_column(seed=1)
    agent = DKLAgent(image, n_seed=4, step=2, seed=0, window=9, **FAST)
    pts = np.array([[s["x"], s["y"]] for s in agent.suggest(4)])
    assert np.all(pts % 2 == 0)
    assert any(near(pts, strong, tol=1.0))


def test_kmeans_finds_separated_groups_and_keeps_every_centre():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(m, 0.1, size=(20, 2)) for m in (0.0, 5.0, 10.0)])
    centres, labels = kmeans(x, 3, np.random.default_rng(1))
    assert sorted(np.round(centres[:, 0]).tolist()) == [0.0, 5.0, 10.0]
    assert sorted(np.bincount(labels).tolist()) == [20, 20, 20]
    same = kmeans(np.zeros((5, 2)), 3, np.random.default_rng(0))[0]
    assert same.shape == (3, 2)  # identical points: still k centres, no division by zero


def test_feature_seeds_need_the_image_and_features():
    from agents.dkl_geometry import make_seeds

    with pytest.raises(ValueError, match="features"):
        make_seeds("features", 3, (10, 10), np.zeros((100, 2)), np.random.default_rng(0))


def test_seed_order_puts_the_brightest_kind_first_and_is_recorded_for_replays():
    """``seed_order="brightest"``: the same seed points as the drawn order, the strong (bright)
    column first; the random generator is left as the drawn order leaves it, and the order is
    in config(), so a replay rebuilds the same seed points."""
    image, strong, _ = two_kinds_of_column()
    for seed in range(3):
        drawn = DKLAgent(image, seed=seed, window=9, seed_order="drawn", **FAST)
        bright = DKLAgent(image, seed=seed, window=9, seed_order="brightest", **FAST)
        pts = [(s["x"], s["y"]) for s in bright.suggest(5)]
        assert near(np.array(pts[:1]), strong) == [True], (seed, pts)
        assert sorted(pts) == sorted((s["x"], s["y"]) for s in drawn.suggest(5))
        assert bright._rng.bit_generator.state == drawn._rng.bit_generator.state
        config = bright.config()
        assert config["seed_order"] == "brightest"
        assert drawn.config()["seed_order"] == "drawn"
        rebuilt = DKLAgent(image, **config)
        assert [(s["x"], s["y"]) for s in rebuilt.suggest(5)] == pts
    with pytest.raises(ValueError, match="seed_order"):
        DKLAgent(image, seed_order="heaviest", **FAST)


def test_objects_first_the_columns_before_the_gaps_bright_or_dark_as_the_detector_says():
    """The default order: the kinds on the specimen's columns first (peaks of a HAADF survey,
    pits of an ABF one), then the gaps. The detector's name decides which; told the wrong
    one, the first spectra land in the gaps (what the test tells apart). Recorded for
    replays: the decision, so a rebuild without the detector's name draws the same."""
    image, strong, faint = two_kinds_of_column()
    columns = np.vstack([strong, faint])
    for seed in range(4):
        haadf = DKLAgent(image, seed=seed, window=9, detector="HAADF", **FAST)
        pts = np.array([[s["x"], s["y"]] for s in haadf.suggest(5)])
        assert near(pts[:2], columns) == [True, True], (seed, pts.tolist())
        assert not all(near(pts, columns))  # the gaps come after
        assert haadf.config()["contrast"] == "bright"
        assert haadf.report()["contrast"]["source"] == "detector"
        # the same specimen in annular bright field: columns dark, still first
        abf = DKLAgent(-image, seed=seed, window=9, detector="ABF", **FAST)
        dark = np.array([[s["x"], s["y"]] for s in abf.suggest(2)])
        assert near(dark, columns) == [True, True], (seed, dark.tolist())
        # told ABF for the HAADF image: its 'objects' are the gaps
        wrong = DKLAgent(image, seed=seed, window=9, detector="ABF", **FAST)
        first = np.array([[s["x"], s["y"]] for s in wrong.suggest(1)])
        assert near(first, columns) == [False], (seed, first.tolist())
        config = abf.config()
        assert config["contrast"] == "dark"
        rebuilt = DKLAgent(-image, **config)  # no detector: the recorded decision draws
        assert [(s["x"], s["y"]) for s in rebuilt.suggest(2)] == [tuple(p) for p in dark]
    # no detector: the image's own contrast decides (bright columns here), and says so
    own = DKLAgent(image, seed=0, window=9, **FAST)
    assert own.report()["contrast"]["source"] in ("image", "ambiguous")
    with pytest.raises(ValueError, match="contrast"):
        DKLAgent(image, contrast="inverted", **FAST)


def test_the_plans_tell_a_registered_dkl_agent_its_survey_detector():
    """adaptive_eels builds its agent with plans._agents.agent_from_survey: a registered
    agent that reads the detector's name gets it (unless its keyword arguments say), one
    that does not, and a console's own agent(image), are called with the image alone."""
    from agents.registry import agent_factory
    from plans._agents import agent_from_survey

    image, _, _ = two_kinds_of_column()
    dkl = agent_from_survey(agent_factory("dkl", dict(FAST, window=9)), -image, "ABF")
    assert dkl.report()["contrast"] == {
        **dkl.report()["contrast"],
        "contrast": "dark",
        "source": "detector",
        "detector": "ABF",
    }
    asked = agent_from_survey(agent_factory("dkl", dict(FAST, contrast="bright")), image, "ABF")
    assert asked.config()["contrast"] == "bright"
    edge = agent_from_survey(agent_factory("edge", {"budget": 5}), image, "ABF")
    assert type(edge).__name__ == "EdgeAgent"
    seen = []
    assert agent_from_survey(lambda img: seen.append(img.shape) or "mine", image, "ABF") == "mine"
    assert seen == [image.shape]
