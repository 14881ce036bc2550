"""Forensics and counterfactuals on real runs read back from the catalog."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from agents.runs import unpack_run
from ophyd_stem.app.analysis.batch import counterfactuals, forensics_many
from ophyd_stem.app.analysis.counterfactual import counterfactual, parse
from ophyd_stem.app.analysis.forensics import forensics, replay_device

from .conftest import dkl_factory


def test_forensics_finds_the_same_suggestions_in_a_dkl_run(dkl_run):
    report = forensics(dkl_run.run)
    assert report.ok, report.text()
    assert [c.step for c in report.checks if c.what == "suggest"] == [1, 2, 3, 4, 5, 6]
    assert [c.what for c in report.checks][-1] == "zero_loss"  # on for low-loss spectra
    # rebuilt from the run's own records: the settings the run used
    assert report.agent["seed"] == 1
    assert report.agent["window"] == 8
    assert report.agent["n_seed"] == 3
    assert report.value_error == pytest.approx(0.0, abs=1e-9)
    # the documents give the same answer as the catalog
    assert forensics(dkl_run.documents).as_dict()["matches"] == report.matches


def test_forensics_reports_a_changed_agent(dkl_run):
    # another seed and the seed points spread over the field: the seed points differ from
    # the first step on (the default ones, one on each kind of feature the survey shows,
    # may be the same for two seeds: they change only in order)
    changed = forensics(dkl_run.run, make_agent=dkl_factory([], seed=7, seed_points="spread"))
    assert not changed.ok
    assert changed.mismatches
    assert "MISMATCH" in changed.text()
    assert changed.as_dict()["mismatched_steps"][0] == 1
    # the seed alone: the network starts elsewhere, so the model's first choice differs
    reseeded = forensics(dkl_run.run, make_agent=dkl_factory([], seed=7))
    assert not reseeded.ok
    assert reseeded.as_dict()["mismatched_steps"][0] <= 4  # the first model step


def test_a_dkl_run_recorded_before_the_seed_order_option_replays_in_the_drawn_order(dkl_run):
    """Runs recorded before ``seed_order`` existed drew the kinds' order (the default then):
    their replay must too, not today's default ("objects")."""
    import copy
    import json

    assert dkl_run.agent.config()["seed_order"] == "objects"
    old = copy.deepcopy(dkl_run.documents)
    n = 0
    for name, doc in old:
        for key, value in (doc.get("data") or {}).items() if name == "event" else ():
            if isinstance(value, str) and '"seed_order"' in value:
                report = json.loads(value)
                for config in (report.get("config") or {}, report):
                    config.pop("seed_order", None)
                    config.pop("contrast", None)
                doc["data"][key] = json.dumps(report)
                n += 1
    assert n  # the reports were found and aged
    assert forensics(old).agent["seed_order"] == "drawn"
    assert forensics(dkl_run.documents).agent["seed_order"] == "objects"


def test_counterfactual_with_the_recorded_acquisition_agrees_everywhere(dkl_run, tmp_path):
    same = counterfactual(dkl_run.run, "ei", out_dir=None)
    assert same.agree.all()
    np.testing.assert_allclose(same.chosen, same.recorded)


@pytest.mark.parametrize("alternative", ["ucb:beta=9", "random", "raster"])
def test_counterfactual_draws_both_trajectories(dkl_run, tmp_path, alternative):
    result = counterfactual(dkl_run.run, alternative, out_dir=tmp_path)
    data = unpack_run(dkl_run.documents)
    assert result.recorded.shape == result.chosen.shape == (len(data.values), 2)
    np.testing.assert_allclose(result.recorded, data.positions)
    if alternative != "ucb:beta=9":
        assert not result.agree.all()
    assert result.png.exists()
    image = mpimg.imread(result.png)
    assert image.shape[0] > 300
    assert np.std(image[..., :3]) > 0.05
    assert alternative in result.text()


def test_edge_forensics_and_counterfactual(edge_run, tmp_path):
    report = forensics(edge_run.run)
    assert report.ok, report.text()
    result = counterfactual(edge_run.run, "gradient", out_dir=tmp_path)
    assert len(result.recorded) == len(unpack_run(edge_run.run).edge_points)
    assert len(result.chosen) > 0
    assert result.png.exists()


def test_bad_alternatives_are_refused_clearly(dkl_run):
    assert parse("ucb:beta=9,xi=0.1") == ("ucb", {"beta": 9, "xi": 0.1})
    assert parse("weight=0.2") == ("front", {"weight": 0.2})
    with pytest.raises(ValueError, match="key=value"):
        parse("ucb:beta")
    with pytest.raises(ValueError, match="unknown alternative"):
        counterfactual(dkl_run.run, "telepathy", out_dir=None)


def test_logstar_counterfactual_shows_another_front_point(logstar_run, tmp_path):
    other = (logstar_run.pick + 1) % logstar_run.front_size
    result = counterfactual(logstar_run.run, f"index={other}", out_dir=tmp_path)
    assert result.summary["front point"] == f"#{other} instead of #{logstar_run.pick}"
    data = unpack_run(logstar_run.run)
    assert len(result.recorded) == len(data.atoms["x"])
    assert len(result.chosen) > 0
    # the recorded point itself finds exactly the recorded atoms
    same = counterfactual(logstar_run.run, f"index={logstar_run.pick}", out_dir=None)
    assert same.agree.all()
    assert len(same.chosen) == len(same.recorded)
    assert np.std(mpimg.imread(result.png)[..., :3]) > 0.05


def test_forensics_replays_where_the_run_computed(dkl_run):
    report = forensics(dkl_run.run)
    assert report.agent["device"] == "cpu"  # the run's agent computed on the CPU
    assert not any("GPU" in note for note in report.notes)
    # the same run as if its agent had computed on a GPU: replayed on the CPU, with a note
    data = unpack_run(dkl_run.documents)
    gpu = {"type": "cuda", "index": 0, "name": "NVIDIA H200"}
    data.decisions["reports"] = [{**r, "device": gpu} for r in data.decisions["reports"]]
    device, note = replay_device(data)
    if torch.cuda.is_available():
        assert (device, note) == ("cuda", None)
    else:
        assert device == "cpu"
        assert "NVIDIA H200" in note
        assert "computes on the CPU" in note
        again = forensics(data)
        assert again.ok
        assert note in again.notes


def test_batches_of_forensics_and_counterfactuals_on_a_cluster(
    dkl_run, edge_run, dask_client, tmp_path
):
    reports = forensics_many([dkl_run.run, edge_run.run], compute=dask_client)
    assert [r.uid for r in reports] == [dkl_run.uid, edge_run.uid]
    assert all(r.ok for r in reports)
    alternatives = ["ucb:beta=9", "random"]
    there = counterfactuals(dkl_run.run, alternatives, out_dir=tmp_path, compute=dask_client)
    here = counterfactuals(dkl_run.run, alternatives, out_dir=None)
    assert [r.alternative for r in there] == alternatives
    for a, b in zip(there, here):
        np.testing.assert_array_equal(a.chosen, b.chosen)
        assert a.png.exists()
