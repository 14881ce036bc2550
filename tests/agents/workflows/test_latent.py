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


def test_rvae_training_counts_its_steps_and_trains_the_same_model_with_or_without_them():
    """`run latent` shows the rVAE's training with counts (issue 17); the callback draws
    nothing random: the same seed trains the same model."""
    import torch

    from agents.patches import candidate_grid

    image = _field()
    calls = []
    settings = dict(window=8, epochs=3, batch_size=64, seed=1)
    counted = RotationInvariantVAE(**settings).fit_image(
        image, step=3, progress=lambda done, total: calls.append((done, total))
    )
    steps = 3 * -(-len(candidate_grid(image.shape, 3)) // 64)  # epochs x minibatches
    assert steps > 3
    assert calls == [(i, steps) for i in range(1, steps + 1)]
    silent = RotationInvariantVAE(**settings).fit_image(image, step=3)
    assert counted.losses == silent.losses
    for name, value in silent._encoder.state_dict().items():
        assert torch.equal(counted._encoder.state_dict()[name], value), name


def test_latent_agent_passes_the_count_on_and_records_no_callback():
    calls = []
    agent = LatentAgent(_field(), n_clusters=2, train_step=4, window=8, epochs=2, seed=0,
                        progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    assert calls
    assert calls[-1][0] == calls[-1][1] == len(calls)
    assert "progress" not in agent.config()
