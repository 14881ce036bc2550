"""EnsembleAgent: observe a survey image, suggest EELS positions, report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.base import Agent
from agents.ensemble import CACHE_ENV, EnsembleAgent, EnsembleNotFoundError, save_ensemble


@pytest.fixture
def survey(make_images):
    images, atoms = make_images(1, seed=11, size=48)
    return images[0], atoms[0]


def test_observe_finds_atoms_with_uncertainty(tiny_ensemble, survey):
    agent = EnsembleAgent(tiny_ensemble, num_threads=1)
    assert isinstance(agent, Agent)
    prediction = agent.observe(survey[0])
    assert len(prediction.atoms) > 0
    table = agent.atoms()
    assert set(table) == {"x", "y", "probability", "uncertainty", "intensity", "featureless"}
    assert table["x"] == prediction.atoms[:, 1].tolist()
    assert table["y"] == prediction.atoms[:, 0].tolist()
    json.dumps(table)


def test_suggest_returns_the_most_uncertain_sites_first(tiny_ensemble, survey):
    agent = EnsembleAgent(tiny_ensemble, target="uncertain", min_separation=0, num_threads=1)
    p = agent.observe(survey[0])
    n = min(4, len(p.atoms))
    suggestions = agent.suggest(n)
    expected = np.argsort(-p.uncertainty, kind="stable")[:n]
    assert [s["atom"] for s in suggestions] == expected.tolist()
    for s, i in zip(suggestions, expected):
        assert (s["x"], s["y"]) == (p.atoms[i, 1], p.atoms[i, 0])
        assert s["uncertainty"] == p.uncertainty[i]
    uncertainties = [s["uncertainty"] for s in suggestions]
    assert uncertainties == sorted(uncertainties, reverse=True)
    assert len({s["_id"] for s in suggestions}) == n


def test_suggest_walks_down_the_list_and_skips_measured_sites(tiny_ensemble, survey):
    agent = EnsembleAgent(tiny_ensemble, num_threads=1)
    p = agent.observe(survey[0])
    first = agent.suggest(2)
    second = agent.suggest(2)
    assert not {s["atom"] for s in first} & {s["atom"] for s in second}
    agent.ingest([[second[0]["x"], second[0]["y"]]], [1.0])
    agent.observe(survey[0])  # a new survey: pending suggestions are forgotten...
    again = agent.suggest(len(p.atoms))
    atoms = [s["atom"] for s in again]
    assert second[0]["atom"] not in atoms  # ...but measured sites are not
    assert first[0]["atom"] in atoms
    assert agent.suggest(1) == []  # every atom suggested


def test_brightest_target_finds_the_dopant(tiny_ensemble, survey):
    image, atoms = survey
    dopant = atoms[np.argmin(np.hypot(*(atoms - [24, 24]).T))]
    rows, cols = np.mgrid[0:48, 0:48]
    bright = image + 2.0 * np.exp(-((rows - dopant[0]) ** 2 + (cols - dopant[1]) ** 2) / 2.9)
    agent = EnsembleAgent(tiny_ensemble, target="brightest", num_threads=1)
    agent.observe(bright)
    (best,) = agent.suggest(1)
    assert np.hypot(best["y"] - dopant[0], best["x"] - dopant[1]) < 1.5
    assert best["target"] == "brightest"


def test_report_is_small_and_json_able(tiny_ensemble, survey):
    agent = EnsembleAgent(tiny_ensemble, num_threads=1)
    assert agent.report()["images_observed"] == 0
    agent.observe(survey[0])
    agent.suggest(2)
    report = agent.report()
    assert report["members"] == 2
    assert report["suggested"] == 2
    assert report["atoms"] > 0
    assert report["image_uncertainty"] > 0
    assert len(json.dumps(report)) < 1500  # with the plausibility's reasons, in words


def test_config_records_the_atom_rules_and_the_calibration_used(tiny_ensemble):
    from agents.ensemble import EVIDENCE, AtomCalibration

    config = EnsembleAgent(tiny_ensemble, num_threads=1).config()
    # filled in, so a replay finds the same atoms whatever the defaults become
    assert config["predict"] == {"min_spacing": 0.6, "exclude_edge": True, "max_false": 0.5}
    assert config["calibration"] is None  # the tiny ensemble was never calibrated
    n = len(EVIDENCE)
    cal = AtomCalibration(EVIDENCE, (0.0,) * n, (1.0,) * n, (0.5,) * n, -2.0)
    config = EnsembleAgent(tiny_ensemble, calibration=cal, min_spacing=None).config()
    assert config["predict"] == {"min_spacing": None, "exclude_edge": True, "max_false": 0.5}
    assert AtomCalibration.from_dict(config["calibration"]) == cal
    json.dumps(config)


def test_agent_loads_a_saved_ensemble_by_name(tmp_path, monkeypatch, tiny_ensemble, survey):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    with pytest.raises(EnsembleNotFoundError, match="train-ensemble"):
        EnsembleAgent("default")
    save_ensemble(tiny_ensemble.clone(), "default")
    agent = EnsembleAgent(num_threads=1)
    assert agent.report()["ensemble"] == "default"
    assert len(agent.observe(survey[0]).atoms) > 0


def test_agent_rejects_bad_use(tiny_ensemble):
    with pytest.raises(ValueError, match="target"):
        EnsembleAgent(tiny_ensemble, target="heaviest")
    agent = EnsembleAgent(tiny_ensemble)
    with pytest.raises(RuntimeError, match="observe"):
        agent.suggest(1)
    with pytest.raises(ValueError, match="survey_image"):
        agent.observe(np.zeros((3, 3, 3)))
