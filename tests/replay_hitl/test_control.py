"""The operator in the loop, with the real RunEngine, the twin and the catalog: approve mode
(pause, veto, add, change the acquisition and the scalarizer, resume), free mode with a
Ctrl-C, abort after a pause, and the LoG* front pick. Everything lands in the run and
forensics replays it."""

from __future__ import annotations

import numpy as np
import pytest

from agents.runs import unpack_run
from agents.zlp import shift_spectra
from ophyd_stem import energy_axis_from_configuration
from ophyd_stem.app.analysis.forensics import forensics
from ophyd_stem.catalog._runs import verify_run
from plans import OperatorControl, adaptive_eels

from .conftest import (
    dkl_factory,
    press_ctrl_c_once,
    run_until_idle_or_paused,
    stored,
    stream_rows,
    uid_of,
)


def count_spectra(microscope):
    """Counts the backend's multi-point acquisitions (every real measurement)."""
    backend = microscope.sim_bridge.backend
    original = backend.acquire_spectra_at_points
    calls = []

    def counted(points):
        calls.append(len(points))
        return original(points)

    backend.acquire_spectra_at_points = counted
    return calls


def band(spec):
    from agents.scalarizers import get_scalarizer

    return get_scalarizer(spec)


def test_approve_mode_measures_only_what_the_operator_approved(RE, nanoparticles, catalog_env):
    calls = count_spectra(nanoparticles)
    made = []
    control = OperatorControl(mode="approve", operator="jane", notify=None)
    plan = adaptive_eels(
        nanoparticles.scan,
        nanoparticles.eels_points,
        dkl_factory(made),
        band("band:20:30"),
        steps=4,
        maps_every=2,
        control=control,
    )

    run_until_idle_or_paused(RE, plan)
    assert RE.state == "paused"
    assert calls == []  # nothing measured before approval
    first = control.pending
    assert len(first) == 1
    assert first[0]["source"] == "seed"
    # step 1: refuse the agent's point, measure one of ours instead
    assert control.veto(0) == []
    control.add(10.0, 12.0)
    control.approve()
    run_until_idle_or_paused(RE.resume)
    assert RE.state == "paused"  # step 2 waits
    assert calls == [1]
    # resuming without approval measures nothing: the plan asks again
    run_until_idle_or_paused(RE.resume)
    assert calls == [1]
    assert RE.state == "paused"
    control.approve()
    run_until_idle_or_paused(RE.resume)
    # step 3: another acquisition function; the agent is asked again, then approved
    before = control.pending
    control.set_acquisition("ucb", beta=9)
    run_until_idle_or_paused(RE.resume)
    assert RE.state == "paused"
    assert made[0].exploration == {"name": "ucb", "xi": 0.01, "beta": 9.0}
    assert control.pending != before
    control.set_scalarizer("band:5:15")
    control.approve()
    run_until_idle_or_paused(RE.resume)
    # step 4: veto everything: the agent proposes something else, never the vetoed point
    vetoed = control.pending[0]
    control.veto()
    run_until_idle_or_paused(RE.resume)
    assert (control.pending[0]["x"], control.pending[0]["y"]) != (vetoed["x"], vetoed["y"])
    control.approve()
    run_until_idle_or_paused(RE.resume)
    assert RE.state == "idle"

    docs = RE.documents
    decisions = stream_rows(docs, "decisions")
    spectra = stream_rows(docs, "primary")
    assert calls == [1, 1, 1, 1]  # one acquisition per approval: nothing measured twice
    assert len(spectra) == len(decisions) == 4
    assert [s["seq_num"] for s in spectra] == [1, 2, 3, 4]
    assert decisions[0]["decision-source"] == "operator"
    assert (decisions[0]["decision-x"], decisions[0]["decision-y"]) == (10.0, 12.0)
    # the scalarizer change relabelled what the agent knew, and new values use it
    axis = energy_axis_from_configuration(
        next(d for n, d in docs if n == "descriptor" and d["name"] == "primary")["configuration"][
            "eels_points"
        ]["data"]
    )
    new = band("band:5:15")
    # the agent saw the spectra aligned on their zero-loss peak (on for low-loss spectra):
    # primary keeps them as measured, zero_loss the shift of each
    shifts = [r["zero_loss-shift"] for r in stream_rows(docs, "zero_loss")]
    raw = np.array([s["eels-spectrum"] for s in spectra], dtype=np.float32)
    expected = [float(new(a, axis)) for a in shift_spectra(raw, axis, shifts)]
    np.testing.assert_allclose(made[0].values, expected, rtol=1e-9)
    np.testing.assert_allclose([d["decision-value"] for d in decisions[2:]], expected[2:])

    kinds = [row["intervention-kind"] for row in stream_rows(docs, "interventions")]
    assert kinds == [
        "suggested",
        "veto",
        "add",
        "approve",
        "suggested",
        "approve",
        "suggested",
        "set_acquisition",
        "suggested",
        "set_scalarizer",
        "approve",
        "suggested",
        "veto",
        "suggested",
        "approve",
    ]
    who = {row["intervention-who"] for row in stream_rows(docs, "interventions")}
    assert who == {"jane", "agent"}

    # the catalog has the same: every event once, the interventions with who/what/when
    uid = uid_of(docs)
    run = stored(catalog_env, uid)
    stop = run.metadata["stop"]
    assert stop["exit_status"] == "success"
    verify_run(catalog_env.catalog, uid, stop)
    data = unpack_run(run)
    assert [iv["kind"] for iv in data.interventions] == kinds
    veto = data.interventions[1]
    assert veto["who"] == "jane"
    assert veto["before"] == [{k: v for k, v in first[0].items() if k != "index"}]
    assert veto["requested"] <= veto["time"]
    assert data.interventions[7]["after"]["name"] == "ucb"

    # forensics: the same agent, fed the same measurements and the same interventions,
    # makes the same suggestions (including those made after the operator's changes)
    report = forensics(run)
    assert report.ok, report.text()
    assert report.interventions == 2  # the acquisition and the scalarizer changes
    assert [c.what for c in report.checks].count("resuggest") == 2
    assert report.value_error == pytest.approx(0.0, abs=1e-9)


def test_free_mode_ctrl_c_then_interventions_apply_from_the_next_step(
    RE, nanoparticles, catalog_env
):
    calls = count_spectra(nanoparticles)
    made = []
    control = OperatorControl(mode="free", operator="ali", notify=None)
    plan = adaptive_eels(
        nanoparticles.scan,
        nanoparticles.eels_points,
        dkl_factory(made),
        band("band:20:30"),
        steps=5,
        maps_every=0,
        control=control,
    )
    run_until_idle_or_paused(RE, press_ctrl_c_once(plan, at_decision=4))
    assert RE.state == "paused"
    assert len(calls) == 4  # paused at the end of step 4, the step complete
    with pytest.raises(RuntimeError, match="nothing waits for approval"):
        control.approve()
    control.set_acquisition("ucb", beta=9)
    control.add(30.0, 20.0)
    run_until_idle_or_paused(RE.resume)
    assert RE.state == "idle"

    decisions = stream_rows(RE.documents, "decisions")
    assert [d["decision-step"] for d in decisions] == [1, 2, 3, 4, 5, 5]
    assert decisions[-1]["decision-source"] == "operator"
    assert [s["seq_num"] for s in stream_rows(RE.documents, "primary")] == list(range(1, 7))
    interventions = stream_rows(RE.documents, "interventions")
    assert [
        (i["intervention-step"], i["intervention-phase"], i["intervention-kind"])
        for i in interventions
    ] == [(5, "prepare", "set_acquisition"), (5, "review", "add")]
    # step 5's model choice was made with UCB: its recorded acquisition is UCB's number
    model = decisions[4]
    assert model["decision-source"] == "model"
    assert model["decision-acquisition"] == pytest.approx(
        model["decision-predicted_mean"] + 3.0 * model["decision-predicted_std"], rel=1e-6
    )
    report = forensics(stored(catalog_env, uid_of(RE.documents)))
    assert report.ok, report.text()
    assert report.interventions == 1


def test_abort_after_a_pause_keeps_the_stop_document_and_the_data(RE, nanoparticles, catalog_env):
    control = OperatorControl(mode="approve", notify=None)
    plan = adaptive_eels(
        nanoparticles.scan,
        nanoparticles.eels_points,
        dkl_factory([]),
        band("band:20:30"),
        steps=5,
        control=control,
    )
    run_until_idle_or_paused(RE, plan)
    control.approve()
    run_until_idle_or_paused(RE.resume)
    control.approve()
    run_until_idle_or_paused(RE.resume)
    assert RE.state == "paused"  # step 3 waits for approval
    assert control.waiting
    RE.abort("the operator has seen enough")
    assert RE.state == "idle"
    assert not control.waiting  # a remote operator's status no longer shows step 3's points
    assert control.pending == []
    uid = uid_of(RE.documents)
    run = stored(catalog_env, uid)
    stop = run.metadata["stop"]
    assert stop["exit_status"] == "abort"
    assert stop["num_events"]["primary"] == 2
    verify_run(catalog_env.catalog, uid, stop)
    data = unpack_run(run)
    assert len(data.spectra) == 2
    assert list(data.decisions["step"]) == [1, 2]
    # the pending suggestion of step 3 was recorded before the pause: not lost
    assert data.interventions[-1]["kind"] == "suggested"
    assert data.interventions[-1]["step"] == 3
    report = forensics(run)
    assert report.ok, report.text()
    assert any("abort" in note for note in report.notes)


def test_logstar_front_pick_in_approve_mode_is_recorded_and_replayed(logstar_run):
    assert logstar_run.front_size >= 2
    docs = logstar_run.documents
    front = stream_rows(docs, "logstar_front")
    assert [bool(p["logstar_front-chosen"]) for p in front].index(True) == logstar_run.pick
    record = stream_rows(docs, "logstar")[0]
    assert record["logstar-chosen"] == logstar_run.pick
    assert record["logstar-n_atoms"] == len(stream_rows(docs, "atoms"))
    # the approved EELS points, and only those, were measured
    spectra = stream_rows(docs, "primary")
    assert [(s["stem-beam-x"], s["stem-beam-y"]) for s in spectra] == [
        (p["x"], p["y"]) for p in logstar_run.pending
    ]
    data = unpack_run(logstar_run.run)
    assert [iv["kind"] for iv in data.interventions] == [
        "front",
        "pick_front",
        "suggested",
        "approve",
    ]
    assert data.interventions[1]["before"] == logstar_run.automatic
    assert data.interventions[1]["who"] == "jane"
    report = forensics(logstar_run.run)
    assert report.ok, report.text()
    # the spectra at the atoms are low-loss: their zero-loss alignment is replayed too
    assert {c.what for c in report.checks} == {"front", "choice", "atoms", "zero_loss"}


def test_console_calls_check_their_input():
    control = OperatorControl(notify=None)
    with pytest.raises(ValueError, match="mode"):
        OperatorControl(mode="sometimes")
    with pytest.raises(RuntimeError, match="approve mode"):
        control.veto(0)
    with pytest.raises(ValueError, match="finite"):
        control.add(float("nan"), 3)
    with pytest.raises(ValueError, match="index= or weight="):
        control.pick_front()
    with pytest.raises(ValueError, match="unknown scalarizer"):
        control.set_scalarizer("bandwidth:1:2")
    with pytest.raises(ValueError, match="acquisition name"):
        control.set_acquisition()
