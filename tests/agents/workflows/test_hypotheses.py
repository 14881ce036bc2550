"""Competing physical hypotheses weighed by their evidence: the right one wins."""

import numpy as np
import pytest

from agents.hypotheses import HypothesisAgent


def _disc(size=32):
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(xx - size / 2, yy - size / 2)
    return np.where(r < 8, 10.0, 1.0), r


FAST = dict(step=2, n_seed=6, seed=1, train_steps=100, finetune_steps=15, draws=4,
            acquisition="uncertainty", particles=16)  # fmt: skip


def _learn(truth, hypotheses=("step", "peak", "flat"), rounds=4):
    image, _ = _disc()
    agent = HypothesisAgent(image, hypotheses=hypotheses, **FAST)
    noise = np.random.default_rng(0)
    for _ in range(rounds):
        xy = np.array([[s["x"], s["y"]] for s in agent.suggest(3)])
        agent.ingest(xy, truth(np.hypot(xy[:, 0] - 16, xy[:, 1] - 16)) + noise.normal(0, 0.1, 3))
    return agent


@pytest.mark.parametrize(
    ("truth", "expected"),
    [
        (lambda r: 1 + 5 / (1 + np.exp(-(8 - r))), "step"),  # brighter inside the particle
        (lambda r: 1 + 5 * np.exp(-0.5 * ((8 - r) / 1.2) ** 2), "peak"),  # only at its edge
    ],
)
def test_the_hypothesis_that_made_the_data_becomes_the_most_probable(truth, expected):
    agent = _learn(truth)
    report = agent.report()
    assert report["most_probable"] == expected
    probabilities = {h: v["probability"] for h, v in report["hypotheses"].items()}
    assert probabilities[expected] > 0.9
    assert sum(probabilities.values()) == pytest.approx(1.0)
    # each hypothesis reports its own physical parameters and evidence
    assert "height" in report["hypotheses"]["peak"]["physics"]
    assert set(report["hypotheses"]["flat"]["physics"]) == {"background"}
    assert report["hypotheses"][expected]["evidence"] > report["hypotheses"]["flat"]["evidence"]
    # decisions carry the probabilities they were made with; forensics rebuilds from config
    model_picks = [s for s in agent.suggest(2) if s["source"] == "model"]
    assert set(model_picks[0]["probabilities"]) == {"step", "peak", "flat"}
    assert HypothesisAgent(_disc()[0], **agent.config()).config() == agent.config()


def test_bad_hypotheses_are_refused():
    with pytest.raises(ValueError, match="at least two"):
        HypothesisAgent(_disc()[0], hypotheses=("step",))
    with pytest.raises(ValueError, match="at least two"):
        HypothesisAgent(_disc()[0], hypotheses=("step", "wave"))
