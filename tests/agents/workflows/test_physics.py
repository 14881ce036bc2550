"""The physics-informed GP agent (pyro): edge distance, posterior of the physical parameters."""

import numpy as np
import pytest

from agents.physics import PhysicsGPAgent, signed_edge_distance


def _disc(size=32, radius=8.0):
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(xx - size / 2, yy - size / 2)
    image = np.where(r < radius, 10.0, 1.0) + np.where(r > 13, -0.5, 0.0)
    return image, r


def test_signed_distance_is_positive_inside_the_brightest_phase():
    image, _r = _disc()
    d = signed_edge_distance(image, classes=3, smooth=0.5)
    assert d[16, 16] == pytest.approx(8.0, abs=1.0)
    assert d[16, 1] < -5
    with pytest.raises(ValueError, match="constant"):
        signed_edge_distance(np.ones((16, 16)))


def _run(image, truth, **options):
    agent = PhysicsGPAgent(image, **options)
    picks = []
    for _ in range(4):
        batch = agent.suggest(3)
        xy = np.array([[s["x"], s["y"]] for s in batch])
        picks += xy.tolist()
        agent.ingest(xy, truth(xy[:, 0], xy[:, 1]))
    return agent, picks


def test_agent_learns_the_step_and_reports_its_posterior():
    image, _r = _disc()

    def truth(x, y):
        return 1.0 + 5.0 / (1 + np.exp(-(8.0 - np.hypot(x - 16, y - 16)) / 1.0))

    options = dict(step=2, n_seed=6, seed=1, train_steps=150, finetune_steps=20, draws=8,
                   acquisition="uncertainty")  # fmt: skip
    agent, picks = _run(image, truth, **options)
    report = agent.report()
    physics = report["physics"]
    assert physics["step"]["mean"] == pytest.approx(5.0, rel=0.3)
    assert physics["background"]["mean"] == pytest.approx(1.0, abs=1.0)
    assert physics["edge_width"]["std"] > 0
    assert report["n_measured"] == 12
    maps = agent.predict_maps()
    assert maps["mean"].shape == (16, 16)
    # the predicted mean is high inside the disc, low outside
    assert maps["mean"][8, 8] > maps["mean"][0, 0] + 2.0
    # same seed, same measurements in the same order: same decisions (forensics relies on it)
    _again, picks_again = _run(image, truth, **agent.config())
    assert picks_again == picks


def test_bad_settings_are_refused():
    image, _ = _disc()
    with pytest.raises(ValueError, match="acquisition"):
        PhysicsGPAgent(image, acquisition="greedy")
    with pytest.raises(ValueError, match=">= 1"):
        PhysicsGPAgent(image, draws=0)
