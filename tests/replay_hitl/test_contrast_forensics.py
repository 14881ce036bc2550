"""The atom finders' bright/dark decision is recorded with the run and replayed: a LoG* run
on the real ABF recording (served by the replay backend), and runs from before the option."""

from __future__ import annotations

import pytest

from agents.runs import RunData, unpack_run
from ophyd_stem.app.analysis.counterfactual import counterfactual
from ophyd_stem.app.analysis.forensics import forensics
from ophyd_stem.app.analysis.rebuild import agent_factory
from ophyd_stem.sim import twin_microscope

from .conftest import stored, uid_of


def test_a_logstar_run_on_the_real_abf_recording_replays_its_contrast(RE, catalog_env, shared_data):
    pytest.importorskip("rsciio")
    from agents.logstar import LoGStarAgent
    from plans import logstar

    microscope = twin_microscope(
        mode="local",
        assets_dir=catalog_env.settings.assets_dir,
        backend="replay",
        file=str(shared_data / "stem_abf_data.hspy"),
        signal="ABF",
    )
    try:
        agent = LoGStarAgent("SrTiO3[110]", budget=10, n_initial=6, seed=0, n_clusters=0)
        RE(logstar(microscope.scan, agent, signal="ABF"))
    finally:
        microscope.sim_bridge.close()
    data = unpack_run(stored(catalog_env, uid_of(RE.documents)))  # read back once
    assert data.start["agent"]["config"]["contrast"] == "auto"  # asked
    recorded = data.logstar[0]["report"]["contrast"]  # decided, and why
    assert (recorded["contrast"], recorded["source"], recorded["detector"]) == (
        "dark",
        "detector",
        "ABF",
    )
    assert data.logstar[0]["report"]["plausibility"]["ok"]

    report = forensics(data)
    assert report.ok, report.text()
    assert [c.what for c in report.checks] == ["contrast", "front", "choice", "atoms"]
    assert report.agent["contrast"] == "auto"
    # the same agent told to take the image as it comes does not make the same decisions
    changed = forensics(
        data, make_agent=lambda image: LoGStarAgent(
            "SrTiO3[110]", budget=10, n_initial=6, seed=0, n_clusters=0, contrast="bright"
        ),
    )  # fmt: skip
    assert not changed.ok
    assert next(c.what for c in changed.mismatches) == "contrast"
    # a counterfactual takes the image the way round the run did: the recorded point again
    # gives the recorded atoms
    same = counterfactual(data, f"index={data.logstar[0]['chosen']}", out_dir=None)
    assert same.summary["shared (1.5 px)"] == same.summary["atoms recorded"] > 300


def test_runs_from_before_the_option_are_rebuilt_taking_images_as_they_came(tmp_path, monkeypatch):
    start = {"plan_name": "logstar", "agent": {"config": {"lattice": "graphene", "budget": 8}}}
    data = RunData(uid="old", start=start, stop={}, streams={})
    make, description = agent_factory(data)
    assert description["contrast"] == "bright"
    assert make(None).contrast == "bright"
    start["agent"]["config"]["contrast"] = "auto"
    assert agent_factory(data)[1]["contrast"] == "auto"

    from agents.ensemble import save_ensemble

    from .test_dcnn_forensics import train_tiny

    monkeypatch.setenv("OPHYD_STEM_CACHE", str(tmp_path / "cache"))
    save_ensemble(train_tiny(seed=2), "tiny")
    config = {"ensemble": "tiny", "target": "uncertain", "predict": {}, "calibration": None}
    dcnn = RunData(
        uid="old-dcnn",
        start={"plan_name": "dcnn"},
        stop={},
        streams={},
        dcnn=[{"image": 0, "report": {"config": config}}],
    )
    make, description = agent_factory(dcnn)
    assert description["contrast"] == "bright"
    assert make(None).contrast == "bright"
    config["contrast"] = "dark"
    assert agent_factory(dcnn)[0](None).contrast == "dark"
