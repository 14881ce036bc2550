"""The atom-finding plans pass the survey detector's name to their agent: an ABF survey
(columns dark) is inverted before the atoms are found, and the run records why."""

from __future__ import annotations

import json

import bluesky.plan_stubs as bps
import numpy as np
import pytest

from agents.metrics import match_atoms
from ophyd_stem.sim import twin_microscope
from plans import logstar
from plans._agents import survey_detector
from plans.dcnn import dcnn

from .test_dcnn_plan import tiny_ensemble  # noqa: F401  (the module's tiny ensemble)
from .test_logstar_plan import stream_events


@pytest.fixture
def srtio3(RE, tmp_path):
    """The twin's SrTiO3 [001], 128² over 2 nm, recording HAADF and ABF at once."""
    microscope = twin_microscope("srtio3", mode="local", assets_dir=tmp_path, seed=3)
    RE(bps.mv(microscope.scan.width, 128, microscope.scan.height, 128))
    RE(bps.mv(microscope.scan.field_of_view, 2.0, microscope.scan.signals, ["HAADF", "ABF"]))
    yield microscope
    microscope.sim_bridge.close()


def test_logstar_on_an_abf_survey_finds_the_haadf_columns(RE, srtio3):
    from agents.logstar import LoGStarAgent

    found = {}
    for signal in ("HAADF", "ABF"):
        RE.documents.clear()
        agent = LoGStarAgent("SrTiO3", budget=12, n_initial=8, seed=0, n_clusters=0)
        RE(logstar(srtio3.scan, agent, signal=signal))
        report = json.loads(stream_events(RE, "logstar")[0]["logstar-report"])
        decided = report["contrast"]
        assert decided["detector"] == signal
        assert decided["source"] == "detector"
        assert decided["contrast"] == ("dark" if signal == "ABF" else "bright")
        assert report["plausibility"]["ok"], report["plausibility"]
        found[signal] = np.array([[a["atoms-x"], a["atoms-y"]] for a in stream_events(RE, "atoms")])
    # the same columns, wherever the detector put them bright or dark
    score = match_atoms(found["ABF"], found["HAADF"], max_distance=2.0)
    assert score.f1 > 0.9, score.as_dict()


def test_dcnn_passes_the_detector_and_records_the_decision(RE, srtio3, tiny_ensemble):  # noqa: F811
    from agents.ensemble import EnsembleAgent

    agent = EnsembleAgent(tiny_ensemble, num_threads=1)
    RE(dcnn(srtio3.scan, agent, signal="ABF"))
    report = json.loads(stream_events(RE, "dcnn")[0]["dcnn-report"])
    assert report["contrast"]["contrast"] == "dark"
    assert report["contrast"]["detector"] == "ABF"
    start = next(doc for name, doc in RE.documents if name == "start")
    assert start["agent"]["config"]["contrast"] == "auto"  # asked: what a replay rebuilds


def test_an_agent_without_a_detector_argument_is_called_as_before():
    class Console:
        def observe(self, image, pixel_size_nm=None):
            return {}

    assert survey_detector(Console(), "ABF") == {}
    assert survey_detector(object(), "ABF") == {}
