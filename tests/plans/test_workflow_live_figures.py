"""The seed's workflows drawn live: the figure is redrawn at every decision of a running
drift, zero-loss aligned, latent, bandit and physics run (mid-run states included:
decisions before their values, a survey before its latent map), and no redraw fails.

The live view never lets a drawing error stop a run, so it logs it instead: these tests fail
on that log (and on a warning, which pytest turns into an error the view would log).
"""

import logging

import bluesky.plan_stubs as bps
import pytest

from ophyd_stem.app.views import LiveView
from ophyd_stem.app.views.decor import figure_problems
from ophyd_stem.sim import twin_microscope
from plans import adaptive_eels, latent_eels
from plans.drift import drift_corrected_edge_eels

PYRO_FAST = {"n_seed": 2, "seed": 1, "step": 4, "train_steps": 40, "finetune_steps": 5,
             "draws": 2}  # fmt: skip


def _run_drawn_live(RE, tmp_path, caplog, plan, own_zero_loss_figure=True):
    live = LiveView(out_dir=tmp_path / "live", show=False, save_every=1)
    RE.subscribe(live)
    with caplog.at_level(logging.WARNING, logger="ophyd_stem.app.views.live"):
        RE(plan)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("ophyd_stem")] == []
    assert live.last_png is not None
    assert live.last_png.exists()
    assert figure_problems(live.figure) == []
    if own_zero_loss_figure:  # low-loss spectra: the zero-loss alignment's figure too
        assert live.last_zero_loss_png is not None
        assert live.last_zero_loss_png.exists()
    return live


def test_a_zero_loss_aligned_spectrum_image_is_drawn_live(RE, tmp_path, caplog):
    from plans import spectrum_image

    m = twin_microscope("nanoparticles", mode="local", assets_dir=tmp_path, seed=1,
                        energy_jitter=0.2, energy_drift=5e-3)  # fmt: skip
    try:
        plan = spectrum_image(m.scan, m.eels_points, 4, 4, batch=4)
        # a spectrum image's own figure is the alignment's (no second one)
        live = _run_drawn_live(RE, tmp_path, caplog, plan, own_zero_loss_figure=False)
    finally:
        m.sim_bridge.close()
    assert live.drawn["zlp_map"] == live.drawn["zlp_trace"] == 16


def test_a_drift_run_is_drawn_live(RE, tmp_path, caplog):
    m = twin_microscope("nanowire", mode="local", assets_dir=tmp_path, seed=1, drift=True,
                        drift_velocity=(0.2, -0.1), drift_random_walk=0.0)  # fmt: skip
    try:
        RE(bps.mv(m.eels.exposure, 1.0))
        plan = drift_corrected_edge_eels(m.scan, m.eels_points, budget=12, every_points=4)
        live = _run_drawn_live(RE, tmp_path, caplog, plan)
    finally:
        m.sim_bridge.close()
    assert live.drawn["beam"] == live.drawn["sites"] == 12
    assert live.drawn["trajectory"] >= 2


def test_a_latent_run_is_drawn_live(RE, tmp_path, caplog):
    m = twin_microscope("nanoparticles", mode="local", assets_dir=tmp_path, seed=1)
    try:
        plan = latent_eels(m.scan, m.eels_points, n_eels=4, scalarizer="band:20:30",
                           agent_kwargs={"n_clusters": 3, "epochs": 2, "seed": 1})  # fmt: skip
        live = _run_drawn_live(RE, tmp_path, caplog, plan)
    finally:
        m.sim_bridge.close()
    assert live.drawn["eels"] == 4
    assert live.drawn["clusters"] == 3


@pytest.mark.parametrize(
    ("agent", "kwargs", "panel"),
    [("bandit", {"n_arms": 3, "seed": 0}, None), ("physics", PYRO_FAST, "physics")],
)
def test_bandit_and_physics_runs_are_drawn_live(RE, tmp_path, caplog, agent, kwargs, panel):
    m = twin_microscope("nanoparticles", mode="local", assets_dir=tmp_path, seed=1)
    try:
        plan = adaptive_eels(m.scan, m.eels_points, agent, "band:20:30", agent_kwargs=kwargs,
                             steps=3, batch=1, maps_every=1)  # fmt: skip
        live = _run_drawn_live(RE, tmp_path, caplog, plan)
    finally:
        m.sim_bridge.close()
    assert live.drawn["measured"] == 3
    assert live.drawn["mean"] == 1  # the agent's maps (arm posterior, GP predictive)
    if panel:
        assert live.drawn[panel] == 2  # edge width and shift, decision by decision
