"""The bandit in a run: decisions recorded, forensics replays them, a counterfactual compares."""

import numpy as np
import pytest

from agents.runs import unpack_run
from ophyd_stem.sim import twin_microscope
from plans import adaptive_eels


@pytest.fixture
def nanoparticles(RE, tmp_path):
    microscope = twin_microscope("nanoparticles", mode="local", assets_dir=tmp_path, seed=1)
    yield microscope
    microscope.sim_bridge.close()


def test_bandit_run_is_recorded_and_forensics_reproduces_it(RE, nanoparticles):
    from agents.bandit import BanditAgent
    from agents.scalarizers import get_scalarizer
    from ophyd_stem.app.analysis.counterfactual import counterfactual
    from ophyd_stem.app.analysis.forensics import forensics

    scalarizer = get_scalarizer("band:20:30")
    RE(adaptive_eels(nanoparticles.scan, nanoparticles.eels_points,
                     lambda image: BanditAgent(image, n_arms=4, seed=3), scalarizer,
                     steps=6, batch=2))  # fmt: skip
    documents = list(RE.documents)
    report = forensics(documents)
    assert report.ok, report.text()
    assert report.agent["class"] == "BanditAgent"
    # one check per step, and the zero-loss alignment (on for these low-loss spectra)
    assert [c.what for c in report.checks] == ["suggest"] * 6 + ["zero_loss"]
    result = counterfactual(documents, "bandit:policy=ucb", out_dir=None)
    assert np.all(np.isfinite(result.chosen))
    # the live figure (the arms' posterior as maps) follows the house rules
    from ophyd_stem.app.views.decor import figure_problems
    from ophyd_stem.app.views.figures import _figure, draw

    fig = _figure("adaptive_eels", show=False)
    drawn = draw(fig, unpack_run(documents))
    assert drawn["mean"] == 1  # the map of the arms' posterior mean
    assert figure_problems(fig) == []


def test_a_bandit_over_latent_clusters_is_recorded_and_forensics_rebuilds_its_arms(
    RE, nanoparticles
):
    from ophyd_stem.app.analysis.forensics import forensics

    # JSON settings, as the queue sends them: arms = the rVAE's latent clusters
    settings = {"arms": "latent", "n_arms": 3, "seed": 2, "latent": {"epochs": 2}}
    RE(adaptive_eels(nanoparticles.scan, nanoparticles.eels_points, "bandit", "band:20:30",
                     agent_kwargs=settings, steps=4, batch=1, maps_every=0))  # fmt: skip
    data = unpack_run(RE.documents)
    report = data.decisions["reports"][-1]
    assert report["config"]["arms"] == "latent"
    assert report["config"]["latent"] == {"epochs": 2}
    assert report["latent"]["rvae"]["train_seconds"] > 0
    assert sum(arm["pulls"] for arm in report["arms"].values()) == 4
    # forensics trains the rVAE again from the record: the same arms, the same decisions
    replay = forensics(data)
    assert replay.ok, replay.text()
    assert replay.agent["class"] == "BanditAgent"


def test_hypotheses_run_records_the_evidence_and_forensics_reproduces_it(RE, nanoparticles):
    from ophyd_stem.app.analysis.forensics import forensics

    # seed points over three steps: the report after each step fits every hypothesis (it weighs
    # them) while the agent still only hands out seeds; the replay must fit when the run did
    fast = {"n_seed": 3, "seed": 1, "step": 4, "train_steps": 40, "finetune_steps": 5,
            "draws": 2, "particles": 4, "hypotheses": ["step", "flat"]}  # fmt: skip
    RE(adaptive_eels(nanoparticles.scan, nanoparticles.eels_points, "hypotheses", "band:20:30",
                     agent_kwargs=fast, steps=5, batch=1, maps_every=0))  # fmt: skip
    data = unpack_run(RE.documents)
    assert list(data.decisions["source"]).count("model") == 2  # steps 4 and 5 decide
    report = data.decisions["reports"][-1]
    assert set(report["hypotheses"]) == {"step", "flat"}
    assert sum(h["probability"] for h in report["hypotheses"].values()) == pytest.approx(1.0)
    replay = forensics(data)
    assert replay.ok, replay.text()
    assert replay.agent["class"] == "HypothesisAgent"
    # the figure adds the hypotheses' probabilities, decision by decision, to the maps
    from ophyd_stem.app.views.decor import figure_problems
    from ophyd_stem.app.views.figures import _figure, draw

    fig = _figure("adaptive_eels", show=False)
    drawn = draw(fig, data)
    assert drawn["hypotheses"] == 2  # a line per hypothesis
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.lines}
    probabilities = [r["hypotheses"]["step"]["probability"] for r in data.decisions["reports"]]
    np.testing.assert_allclose(lines["p:step"].get_ydata(), probabilities)
    assert figure_problems(fig) == []


def test_physics_run_replays_and_a_counterfactual_changes_its_acquisition(RE, nanoparticles):
    from ophyd_stem.app.analysis.counterfactual import counterfactual
    from ophyd_stem.app.analysis.forensics import forensics

    # seed points over two steps, maps after each: the maps fit the GP while the agent still
    # only hands out seeds; the replay must fit when the run did
    fast = {"n_seed": 4, "seed": 1, "step": 4, "train_steps": 40, "finetune_steps": 5,
            "draws": 2}  # fmt: skip
    RE(adaptive_eels(nanoparticles.scan, nanoparticles.eels_points, "physics", "band:20:30",
                     agent_kwargs=fast, steps=4, batch=2, maps_every=1))  # fmt: skip
    data = unpack_run(RE.documents)
    assert list(data.decisions["source"]).count("model") == 4  # steps 3 and 4 decide
    assert "edge_width" in data.decisions["reports"][-1]["physics"]
    replay = forensics(data)
    assert replay.ok, replay.text()
    assert replay.agent["class"] == "PhysicsGPAgent"
    # the same agent, asked what the plan asked after each step, chooses what the run chose
    settings = ",".join(f"{k}={v}" for k, v in fast.items())
    same = counterfactual(data, f"physics:{settings}", out_dir=None)
    assert same.agree.all(), (same.chosen, same.recorded)
    other = counterfactual(data, "physics:acquisition=ei", out_dir=None)
    assert other.chosen.shape == data.positions.shape  # 4 steps of 2 spectra
    assert np.all(np.isfinite(other.chosen))
