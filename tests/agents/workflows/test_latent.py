"""rVAE in pyro and the latent-space agent: clusters, representatives, novelty, trajectory."""

import numpy as np
import pytest

from agents.latent import LatentAgent, latent_trajectory
from agents.rvae import RotationInvariantVAE


def _field(size=48):
    """Bright discs on a dim background, one odd bar: three kinds of structure."""
    yy, xx = np.mgrid[:size, :size]
    image = np.full((size, size), 1.0)
    for cx, cy in ((12, 12), (36, 12), (12, 36)):
        image[np.hypot(xx - cx, yy - cy) < 5] = 8.0
    image[30:42, 34:38] = 4.0
    return image + np.random.default_rng(0).normal(0, 0.1, image.shape)


def test_latent_agent_samples_each_cluster_then_novelty_and_is_reproducible():
    image = _field()
    options = dict(n_clusters=3, step=2, train_step=3, window=8, epochs=6, seed=2)
    agent = LatentAgent(image, **options)
    picks = agent.suggest(5)
    assert [p["source"] for p in picks[:3]] == ["representative"] * 3
    assert {p["cluster"] for p in picks[:3]} == {0, 1, 2}
    assert picks[3]["source"] == "novelty"
    assert len({(p["x"], p["y"]) for p in picks}) == 5
    maps = agent.latent_map()
    assert maps["z"].shape == (24, 24, 2)
    assert agent.report()["clusters"]["sizes"] == np.bincount(agent.cluster).tolist()
    assert agent.report()["rvae"]["train_cpu_seconds"] > 0
    again = LatentAgent(image, **options)
    np.testing.assert_allclose(again.z, agent.z, atol=1e-5)
    traj = latent_trajectory(agent, [[12, 12], [2, 2]])
    assert traj["z"].shape == (2, 2)
    # a disc centre and the empty background sit in different clusters
    assert traj["cluster"][0] != traj["cluster"][1]


def test_rvae_refuses_bad_settings_and_encoding_before_training():
    with pytest.raises(ValueError, match="window"):
        RotationInvariantVAE(window=2)
    with pytest.raises(RuntimeError, match="train"):
        RotationInvariantVAE().encode_positions(np.ones((16, 16)), [[4, 4]])
    with pytest.raises(ValueError, match="mode"):
        LatentAgent(_field(), mode="greedy")
