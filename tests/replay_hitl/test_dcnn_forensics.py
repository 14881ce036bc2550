"""Forensics and counterfactuals of a DCNN run: the ensemble is reloaded by name and checked
against the weights' checksum the run recorded (the weights are not in the run)."""

from __future__ import annotations

import bluesky.plan_stubs as bps
import pytest

from ophyd_stem.app.analysis.counterfactual import counterfactual
from ophyd_stem.app.analysis.forensics import forensics
from plans.dcnn import dcnn

from .conftest import microscope_for, stored, uid_of


def train_tiny(seed: int):
    from agents.ensemble import TrainingSettings, train_ensemble
    from ophyd_stem.app.training_data import make_training_set

    images, atoms = make_training_set(("graphene",), n_images=4, size=64, seed=seed)
    settings = TrainingSettings(
        members=2, steps=12, batch_size=4, crop_size=32, levels=2, num_threads=1, seed=seed
    )
    return train_ensemble(images, atoms, settings)


@pytest.fixture
def dcnn_run(RE, catalog_env, tmp_path, monkeypatch):
    from agents.ensemble import EnsembleAgent, save_ensemble

    monkeypatch.setenv("OPHYD_STEM_CACHE", str(tmp_path / "cache"))
    save_ensemble(train_tiny(seed=1), "tiny")
    microscope = microscope_for(RE, "graphene", catalog_env.settings.assets_dir, seed=5)
    # a dose that shows the columns: at the default dwell the 64² image is noise, whose
    # "atoms" the agent flags and sends no EELS to
    RE(bps.mv(microscope.scan.dwell_time, 2e-3))
    try:
        agent = EnsembleAgent("tiny", target="uncertain", num_threads=1)
        RE(dcnn(microscope.scan, agent, images=2, eels_points=microscope.eels_points, n_eels=2))
    finally:
        microscope.sim_bridge.close()
    return stored(catalog_env, uid_of(RE.documents))


def test_dcnn_forensics_matches_every_decision(dcnn_run):
    report = forensics(dcnn_run)
    assert report.ok, report.text()
    kinds = [check.what for check in report.checks]
    # the spectra at the atoms are low-loss: their zero-loss alignment is replayed too
    assert kinds == ["atoms", "suggestions", "atoms", "suggestions", "zero_loss"]


def test_dcnn_counterfactual_sends_the_beam_elsewhere(dcnn_run, tmp_path):
    result = counterfactual(dcnn_run, "brightest", out_dir=tmp_path)
    assert result.summary["target recorded"] == "uncertain"
    assert len(result.recorded) == 4
    assert result.png.exists()
    assert result.png.stat().st_size > 10_000
    with pytest.raises(ValueError, match="another target"):
        counterfactual(dcnn_run, "ucb", out_dir=None)


def test_dcnn_forensics_refuses_a_changed_ensemble(dcnn_run):
    from agents.ensemble import save_ensemble

    save_ensemble(train_tiny(seed=2), "tiny", overwrite=True)
    with pytest.raises(ValueError, match="has changed since the run"):
        forensics(dcnn_run)
