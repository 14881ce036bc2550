"""The bandit agent: arms, policies, replay, reports."""

import numpy as np
import pytest

from agents.bandit import BanditAgent, region_labels


def _two_halves(size=32):
    """Left half dark, right half bright; the reward is high only on the right."""
    image = np.zeros((size, size))
    image[:, size // 2 :] = 1.0
    return image


def _reward(x, y, size=32):
    return 10.0 if x >= size // 2 else 1.0


@pytest.mark.parametrize("policy", ["thompson", "ucb"])
def test_bandit_learns_the_paying_arm(policy):
    image = _two_halves()
    agent = BanditAgent(image, arms="tiles", n_arms=2, policy=policy, seed=3)
    chosen = []
    for _ in range(30):
        s = agent.suggest(1)[0]
        chosen.append(s["x"] >= 16)
        agent.ingest([[s["x"], s["y"]]], [_reward(s["x"], s["y"])])
    assert sum(chosen[-20:]) >= 17  # nearly always the bright half once it has learnt
    report = agent.report()
    assert report["best_arm"] == 1
    assert report["arms"][1]["pulls"] > report["arms"][0]["pulls"]
    assert report["arms"][1]["mean"] > report["arms"][0]["mean"]


def test_same_seed_same_decisions_and_no_pixel_twice():
    rng = np.random.default_rng(0)
    image = rng.random((24, 24))
    runs = []
    for _ in range(2):
        agent = BanditAgent(image, arms="clusters", n_arms=4, seed=5)
        picks = []
        for _ in range(12):
            batch = agent.suggest(3)
            xy = [[s["x"], s["y"]] for s in batch]
            picks += xy
            agent.ingest(xy, [float(image[int(y), int(x)]) for x, y in xy])
        runs.append(picks)
    assert runs[0] == runs[1]
    assert len({tuple(p) for p in runs[0]}) == len(runs[0])


def test_arms_from_a_label_map_and_exhaustion():
    labels = np.full((8, 8), -1)
    labels[:2, :2] = 4
    labels[6:, 6:] = 9
    agent = BanditAgent(np.zeros((8, 8)), labels=labels, step=1, seed=0)
    assert agent.arms == "labels"
    assert agent.n_arms == 2
    got = agent.suggest(20)
    assert len(got) == 8  # only the labelled pixels, each once
    assert {s["arm"] for s in got} == {4, 9}
    assert agent.arm_map()[0, 0] == 4
    assert agent.arm_map()[4, 4] == -1


def test_bad_input_is_refused_clearly():
    image = np.zeros((16, 16))
    with pytest.raises(ValueError, match="policy"):
        BanditAgent(image, policy="greedy")
    with pytest.raises(ValueError, match="at least 2 arms"):
        region_labels(image, "tiles", n_arms=1)
    with pytest.raises(ValueError, match="shape"):
        BanditAgent(image, labels=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="fewer than 2"):
        BanditAgent(image, labels=np.zeros((16, 16)))


def test_maps_and_config_rebuild_the_same_agent():
    image = np.random.default_rng(1).random((20, 20))
    agent = BanditAgent(image, arms="tiles", n_arms=4, policy="ucb", seed=2)
    agent.ingest([[1, 1], [15, 15]], [1.0, 2.0])
    maps = agent.predict_maps()
    assert maps["mean"].shape == (10, 10)
    again = BanditAgent(image, **agent.config())
    assert np.array_equal(again.arm_of, agent.arm_of)


def test_latent_clusters_as_arms_are_rebuilt_from_the_config():
    from agents.latent import LatentAgent

    image = np.random.default_rng(4).random((32, 32))
    image[:, 16:] += 2.0  # two kinds of structure
    fast = {"epochs": 2, "window": 8}
    agent = BanditAgent(image, arms="latent", n_arms=3, step=2, seed=1, latent=fast)
    space = LatentAgent(image, n_clusters=3, step=2, seed=1, **fast)
    # the arms are the latent space's clusters, candidate by candidate
    np.testing.assert_array_equal(agent.candidates, space.candidates)
    np.testing.assert_array_equal(agent.arm_labels[agent.arm_of], space.cluster)
    assert agent.config()["latent"] == fast
    assert agent.config()["n_arms"] == 3
    report = agent.report()
    assert report["latent"]["rvae"]["train_seconds"] > 0
    assert sum(report["latent"]["clusters"]["sizes"]) == len(agent.candidates)
    s = agent.suggest(2)
    agent.ingest([[p["x"], p["y"]] for p in s], [1.0, 2.0])
    again = BanditAgent(image, **agent.config())
    np.testing.assert_array_equal(again.arm_of, agent.arm_of)
    with pytest.raises(ValueError, match="not known"):
        BanditAgent(image, arms="latent", latent={"epoch": 2})
    # a label map is not in a run's record: rebuilding from arms="labels" says so
    with pytest.raises(ValueError, match="cannot be rebuilt"):
        BanditAgent(image, arms="labels")


def test_latent_arms_count_the_rvae_training_and_other_arms_call_nothing():
    calls = []
    image = _two_halves()
    BanditAgent(image, arms="latent", n_arms=2, seed=0, latent={"epochs": 2, "window": 8},
                progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    assert calls
    assert calls[-1][0] == calls[-1][1] == len(calls)
    counted = len(calls)
    BanditAgent(image, arms="tiles", n_arms=2, seed=0, progress=lambda *a: calls.append(a))
    assert len(calls) == counted  # nothing trained, nothing counted
