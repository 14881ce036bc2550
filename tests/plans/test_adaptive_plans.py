"""Edge-guided and DKL plans on the twin: the goals of the first paper, data and decisions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ophyd_stem import energy_axis_from_configuration
from ophyd_stem.sim import twin_microscope
from plans import adaptive_eels, edge_eels

from .test_logstar_plan import stream_events


@pytest.fixture
def nanowire(RE, tmp_path):
    microscope = twin_microscope("nanowire", mode="local", assets_dir=tmp_path, seed=0)
    yield microscope
    microscope.sim_bridge.close()


@pytest.fixture
def nanoparticles(RE, tmp_path):
    microscope = twin_microscope("nanoparticles", mode="local", assets_dir=tmp_path, seed=2)
    yield microscope
    microscope.sim_bridge.close()


def test_edge_plan_measures_few_pixels_and_covers_the_true_interface(RE, nanowire):
    from agents.edges import EdgeAgent, evaluate_edge_points

    RE(edge_eels(nanowire.scan, nanowire.eels_points, lambda image: EdgeAgent(image, budget=150)))
    spectra = stream_events(RE, "primary")
    points = stream_events(RE, "edge_points")
    assert len(spectra) == len(points) > 0
    # The spectra were taken exactly at the recorded points, in the recorded order.
    np.testing.assert_allclose(
        [[s["stem-beam-x"], s["stem-beam-y"]] for s in spectra],
        [[p["edge_points-x"], p["edge_points-y"]] for p in points],
    )
    edge = stream_events(RE, "edge_map")[0]
    assert edge["edge-edge_map"].shape == (128, 128)
    # the number the progress bar counts to, once the edges are known, is what was measured
    start = next(doc for name, doc in RE.documents if name == "start")
    assert edge[start["num_points_key"]] == len(spectra)

    truth = nanowire.sim_bridge.backend.get_truth()
    label = list(truth["label_names"]).index("interface")
    measured = np.array([[s["stem-beam-x"], s["stem-beam-y"]] for s in spectra])
    score = evaluate_edge_points(truth["labels"], measured, interface_label=label)
    assert score["fraction_measured"] <= 0.01  # the paper: 137 of 16,384
    assert score["interface_within_1px"] >= 0.9


def test_dkl_loop_records_spectra_decisions_and_maps_consistently(RE, nanoparticles):
    from agents.dkl import DKLAgent
    from agents.scalarizers import get_scalarizer
    from agents.zlp import shift_spectra

    scalarizer = get_scalarizer("band:20:30")
    agents = []

    def make_agent(image):
        agents.append(DKLAgent(image, n_seed=3, seed=1, train_iters=40, finetune_iters=10))
        return agents[0]

    RE(
        adaptive_eels(
            nanoparticles.scan,
            nanoparticles.eels_points,
            make_agent,
            scalarizer,
            steps=6,
            maps_every=3,
        )
    )
    spectra = stream_events(RE, "primary")
    decisions = stream_events(RE, "decisions")
    assert len(spectra) == len(decisions) == 6
    # Each decision's value is the scalarizer applied to the spectrum measured at that step,
    # aligned on its zero-loss peak (on by default for low-loss spectra: primary keeps the
    # spectrum as measured, zero_loss the shift applied).
    start = next(d for n, d in RE.documents if n == "descriptor" and d["name"] == "primary")
    axis = energy_axis_from_configuration(start["configuration"]["eels_points"]["data"])
    shifts = [z["zero_loss-shift"] for z in stream_events(RE, "zero_loss")]
    raw = np.array([s["eels-spectrum"] for s in spectra], dtype=np.float32)
    recomputed = [float(scalarizer(a, axis)) for a in shift_spectra(raw, axis, shifts)]
    np.testing.assert_allclose([d["decision-value"] for d in decisions], recomputed, rtol=1e-6)
    np.testing.assert_allclose(agents[0].values, recomputed, rtol=1e-6)
    # Seeds first, then the model's own choices with their acquisition values.
    sources = [d["decision-source"] for d in decisions]
    assert sources[:3] == ["seed"] * 3
    assert "model" in sources[3:]
    model_steps = [d for d in decisions if d["decision-source"] == "model"]
    assert all(np.isfinite(d["decision-acquisition"]) for d in model_steps)
    report = json.loads(decisions[-1]["decision-report"])
    assert report["n_measured"] == 6
    maps = stream_events(RE, "agent_maps")
    assert [m["agent_maps-step"] for m in maps] == [3, 6]
    assert maps[-1]["agent_maps-mean"].shape == maps[-1]["agent_maps-std"].shape
    assert np.all(maps[-1]["agent_maps-std"] >= 0)


def test_a_signal_the_scan_does_not_record_is_named_with_those_it_does(RE, nanowire):
    """A survey signal the instrument does not have (ABF asked, the twin records HAADF...)
    fails the run with the signals it could have asked for, not a bare KeyError."""
    from agents.edges import EdgeAgent

    with pytest.raises(Exception, match=r"no 'ABF' signal \(it recorded: .*HAADF"):
        RE(edge_eels(nanowire.scan, nanowire.eels_points, EdgeAgent, signal="ABF"))
    stop = next(doc for name, doc in reversed(RE.documents) if name == "stop")
    assert stop["exit_status"] == "fail"
