"""The DCNN plan with a tiny ensemble: the machinery, not the accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ophyd_stem.sim import twin_microscope
from plans.dcnn import dcnn

from .test_logstar_plan import stream_events


@pytest.fixture(scope="module")
def tiny_ensemble():
    from agents.ensemble import TrainingSettings, train_ensemble
    from ophyd_stem.app.training_data import make_training_set

    images, atoms = make_training_set(("graphene",), n_images=4, size=64, seed=1)
    settings = TrainingSettings(
        members=2, steps=15, batch_size=4, crop_size=32, levels=2, num_threads=1
    )
    return train_ensemble(images, atoms, settings)


def test_dcnn_records_maps_atoms_and_eels_at_the_most_uncertain_atoms(RE, tmp_path, tiny_ensemble):
    from agents.ensemble import EnsembleAgent

    microscope = twin_microscope("graphene", mode="local", assets_dir=tmp_path, seed=4)
    try:
        import bluesky.plan_stubs as bps

        RE(bps.mv(microscope.scan.width, 64, microscope.scan.height, 64))
        agent = EnsembleAgent(tiny_ensemble, target="uncertain", num_threads=1)
        RE(dcnn(microscope.scan, agent, eels_points=microscope.eels_points, n_eels=2))
    finally:
        microscope.sim_bridge.close()
    maps = stream_events(RE, "dcnn_maps")
    assert maps[0]["dcnn_maps-mean"].shape == (64, 64)
    assert np.all(maps[0]["dcnn_maps-variance"] >= 0)
    atoms = stream_events(RE, "atoms")
    assert len(atoms) == len(agent.prediction.atoms)
    event = stream_events(RE, "dcnn")[0]
    report = json.loads(event["dcnn-report"])
    assert report["members"] == 2
    # the atom map's plausibility is a decision of the run, beside its reasons
    assert event["dcnn-plausible"] == report["plausibility"]["ok"]
    assert event["dcnn-n_atoms"] == len(atoms)
    assert all("atoms-featureless" in a for a in atoms)
    spectra = stream_events(RE, "primary")
    assert len(spectra) == min(2, len(atoms))
    # EELS went first to the atom the ensemble was least sure of, then down the list
    # (skipping atoms right next to one already chosen, and those where the image shows
    # nothing above its noise: this tiny ensemble's specks on the 64² twin image)
    uncertainty = {
        (a["atoms-x"], a["atoms-y"]): a["atoms-uncertainty"]
        for a in atoms
        if not a["atoms-featureless"]
    }
    measured = [uncertainty[(s["stem-beam-x"], s["stem-beam-y"])] for s in spectra]
    assert measured[0] == max(uncertainty.values())
    assert measured == sorted(measured, reverse=True)
    # low-loss spectra aligned on their zero-loss peaks by default (recorded, in order)
    aligned = stream_events(RE, "zero_loss")
    assert [(a["zero_loss-x"], a["zero_loss-y"]) for a in aligned] == [
        (s["stem-beam-x"], s["stem-beam-y"]) for s in spectra
    ]
    start = next(d for n, d in RE.documents if n == "start")
    assert start["zero_loss"]["mode"] == "auto"
    assert start["plan_args"]["zero_loss"] is None
