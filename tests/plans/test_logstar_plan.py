"""The LoG* plan on the twin: atoms, front, choice and EELS at the dopants, all in one run."""

from __future__ import annotations

import json

import bluesky.plan_stubs as bps
import numpy as np
import pytest

from agents.metrics import match_atoms
from ophyd_stem.sim import twin_microscope
from plans import logstar


@pytest.fixture
def microscope(RE, tmp_path):
    microscope = twin_microscope(
        "graphene", mode="local", assets_dir=tmp_path, noise_level=0.2, seed=3
    )
    RE(bps.mv(microscope.scan.width, 128, microscope.scan.height, 128))
    yield microscope
    microscope.sim_bridge.close()


def stream_events(RE, name):
    uids = {d["uid"] for n, d in RE.documents if n == "descriptor" and d["name"] == name}
    rows = []
    for n, d in RE.documents:
        if n == "event" and d["descriptor"] in uids:
            rows.append(d["data"])
        elif n == "event_page" and d["descriptor"] in uids:
            keys = list(d["data"])
            rows += [{k: d["data"][k][i] for k in keys} for i in range(len(d["seq_num"]))]
    return rows


def test_logstar_run_records_atoms_front_choice_and_eels(RE, microscope):
    from agents.logstar import LoGStarAgent

    agent = LoGStarAgent("graphene", budget=16, n_initial=10, seed=0)
    RE(logstar(microscope.scan, agent, eels_points=microscope.eels_points, n_eels=2))

    atoms = stream_events(RE, "atoms")
    found = np.array([[a["atoms-x"], a["atoms-y"]] for a in atoms])
    truth = microscope.sim_bridge.backend.get_truth()["atoms"]
    true_xy = np.asarray(truth["xy_px"])
    inside = (true_xy >= 0).all(axis=1) & (true_xy < 127.5).all(axis=1)
    score = match_atoms(found, true_xy[inside], max_distance=3.0)
    assert score.f1 > 0.8, score.as_dict()

    front = stream_events(RE, "logstar_front")
    assert len(front) >= 1
    assert sum(bool(p["logstar_front-chosen"]) for p in front) == 1
    report = json.loads(stream_events(RE, "logstar")[0]["logstar-report"])
    assert report["chosen"]["chooser"] == "agent"

    spectra = stream_events(RE, "primary")
    assert len(spectra) == 2
    positions = {(s["stem-beam-x"], s["stem-beam-y"]) for s in spectra}
    assert positions <= {(a["atoms-x"], a["atoms-y"]) for a in atoms}
    # low-loss spectra: aligned on their zero-loss peaks by default, as in the adaptive plans
    start = next(d for n, d in RE.documents if n == "start")
    assert start["zero_loss"]["mode"] == "auto"
    aligned = stream_events(RE, "zero_loss")
    assert len(aligned) == 2
    assert {(a["zero_loss-x"], a["zero_loss-y"]) for a in aligned} == positions
    assert all(abs(a["zero_loss-zlp"]) < 3.0 for a in aligned)  # found, in eV


def test_logstar_spectra_unaligned_when_asked(RE, microscope):
    from agents.logstar import LoGStarAgent

    agent = LoGStarAgent("graphene", budget=8, n_initial=6, seed=0)
    RE(
        logstar(
            microscope.scan, agent, eels_points=microscope.eels_points, n_eels=2, zero_loss=False
        )
    )
    assert len(stream_events(RE, "primary")) == 2
    assert stream_events(RE, "zero_loss") == []
    with pytest.raises(ValueError, match="zero_loss"):
        RE(logstar(microscope.scan, agent, zero_loss="yes"))


def test_operator_choice_is_applied_to_the_next_run_without_reoptimising(RE, microscope):
    from agents.logstar import LoGStarAgent

    agent = LoGStarAgent("graphene", budget=16, n_initial=10, seed=0)
    RE(logstar(microscope.scan, agent))
    last = len(agent.front) - 1
    agent.select(index=last, chooser="jane")
    RE.documents.clear()
    RE(logstar(microscope.scan, agent))
    record = stream_events(RE, "logstar")[0]
    assert record["logstar-optimised"] is False
    assert record["logstar-chosen"] == last
    report = json.loads(record["logstar-report"])
    assert report["chosen"]["chooser"] == "jane"
    assert report["chosen"]["method"] == "index"


def test_a_lattice_the_image_does_not_show_is_flagged_in_the_run(RE, microscope, caplog):
    """Whatever the count says: atoms that do not sit where the rewards' lattice puts them
    are flagged in the report the run records, and in a logged warning."""
    from agents.logstar import LoGStarAgent

    right = LoGStarAgent("graphene", budget=16, n_initial=10, seed=0, n_clusters=0)
    RE(logstar(microscope.scan, right))
    report = json.loads(stream_events(RE, "logstar")[0]["logstar-report"])
    assert report["plausibility"]["ok"], report["plausibility"]["warnings"]
    assert report["pixel_size"]["source"] == "given"
    assert "warning" not in report["pixel_size"]

    RE.documents.clear()
    wrong = LoGStarAgent("SrTiO3", budget=16, n_initial=10, seed=0, n_clusters=0)
    with caplog.at_level("WARNING", logger="agents.logstar"):
        RE(logstar(microscope.scan, wrong))
    assert "LoG* atoms implausible" in caplog.text
    report = json.loads(stream_events(RE, "logstar")[0]["logstar-report"])
    assert not report["plausibility"]["ok"]
    assert report["plausibility"]["warnings"]
    # the image's own reflections disagree with the calibration for this lattice too
    assert "calibration" in report["pixel_size"]["warning"]
