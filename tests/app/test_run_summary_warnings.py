"""What ``ophyd-stem run`` prints after LoG* on a wrongly calibrated image (the pixel size
the image suggests, and the option that takes it) and after DKL on a constant survey (the
agent's warning)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ophyd_stem.app.run_summaries import _summarize_dkl, _summarize_logstar

NO_TWIN = SimpleNamespace(bridge=None)  # no ground truth to score against


def test_logstar_summary_says_the_pixel_size_the_image_suggests(shared_data):
    from agents.logstar import LoGStarAgent

    agent = LoGStarAgent("graphene", budget=8, n_initial=6, n_clusters=0, seed=0)
    corner = np.load(shared_data / "G-Si-2nm.npy")[:128, :128]  # 0.0077 nm/px really
    agent.observe(corner, pixel_size_nm=0.02)
    lines = _summarize_logstar(NO_TWIN, SimpleNamespace(agent=agent, eels=0))
    (line,) = [line for line in lines if "the image suggests" in line]
    assert line.startswith("  WARNING     the image suggests 0.0075")
    assert "(from its atoms' spacing), not the 0.02 nm/px used" in line
    assert line.endswith("--pixel-size fft")

    agent = LoGStarAgent("graphene", budget=8, n_initial=6, n_clusters=0, seed=0)
    agent.observe(corner, pixel_size_nm=0.0077)
    lines = _summarize_logstar(NO_TWIN, SimpleNamespace(agent=agent, eels=0))
    assert not [line for line in lines if "WARNING" in line], lines

    # an agent made with 0.0077 (in a console) on a survey calibrated 0.02: the survey's
    # wins, and it is said, with what corrects it
    agent = LoGStarAgent("graphene", pixel_size_nm=0.0077, budget=8, n_initial=6, n_clusters=0)
    agent.observe(corner, pixel_size_nm=0.02)
    lines = _summarize_logstar(NO_TWIN, SimpleNamespace(agent=agent, eels=0))
    assert (
        "  WARNING     the agent's pixel size 0.0077 nm/px was not used: the survey came "
        "calibrated 0.02 nm/px, which wins; the plan's pixel_size_nm (--pixel-size N) corrects "
        "it, 'fft' takes the image's own lattice"
    ) in lines


def test_dkl_summary_says_the_survey_was_constant():
    from agents.dkl import DKLAgent

    agent = DKLAgent(np.full((16, 16), 7.0), window=5, step=2, n_seed=2, num_threads=1)
    s = agent.suggest(1)[0]
    agent.ingest([[s["x"], s["y"]]], [1.0])
    args = SimpleNamespace(agent=agent, scalarizer="band:20:30", despike=False, replay=None,
                           seeds=2)  # fmt: skip
    lines = _summarize_dkl(NO_TWIN, args)
    assert lines[-1] == f"  WARNING     {agent.survey_warning}"
    assert "survey image is constant" in lines[-1]
