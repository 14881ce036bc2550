"""The agents on the digital twin, in-process: real spectra, real survey images, known truth."""

from __future__ import annotations

import json

import numpy as np

from agents.dkl import DKLAgent
from agents.edges import EdgeAgent, evaluate_edge_points
from agents.scalarizers import get_scalarizer
from dm_bridge.backends.twin import TwinBackend


def test_edge_agent_meets_the_issue_goals_on_the_nanowire():
    twin = TwinBackend("nanowire", seed=0)
    survey = twin.acquire_image().images["HAADF"]
    truth = twin.get_truth()
    agent = EdgeAgent(survey)
    points = np.array([[s["x"], s["y"]] for s in agent.suggest(len(agent.candidates))])
    spectra = twin.acquire_spectra_at_points(points)
    assert spectra.spectra.shape[0] == len(points)
    score = evaluate_edge_points(
        truth["labels"], points, interface_label=truth["label_names"].index("interface")
    )
    assert score["fraction_measured"] <= 0.01  # the paper: 137 of 16,384
    assert score["interface_within_1px"] >= 0.9


def test_short_dkl_loop_on_the_nanoparticles():
    twin = TwinBackend("nanoparticles", seed=2)
    survey = twin.acquire_image().images["HAADF"]
    target = twin.get_truth()["target_map"]
    scalarize = get_scalarizer("band:20:30")
    agent = DKLAgent(survey, window=16, step=4, seed=0, train_iters=60, finetune_iters=10)
    measured, true_values = [], []
    for _ in range(10):
        s = agent.suggest(1)[0]
        point = np.array([[s["x"], s["y"]]])
        acq = twin.acquire_spectra_at_points(point)
        value = float(scalarize(acq.spectra, acq.energy_axis)[0])
        agent.ingest(point, [value])
        measured.append(value)
        true_values.append(float(target[int(s["y"]), int(s["x"])]))
    # the scalarizer reads the twin's spectra as the truth does (noise aside)
    assert np.corrcoef(measured, true_values)[0, 1] > 0.95
    [(_, _best, outcome)] = agent.get_best_points()
    assert outcome["value"] == max(measured)
    maps = agent.predict_maps()
    assert maps["mean"].shape == (32, 32)
    report = json.loads(json.dumps(agent.report(), allow_nan=False))
    assert report["n_measured"] == 10
    assert report["step"] == 10
