"""Drift-corrected edge EELS on a drifting twin: estimates recorded, beam follows the specimen."""

import bluesky.plan_stubs as bps
import numpy as np
import pytest

from ophyd_stem.app.views.decor import figure_problems
from ophyd_stem.sim import twin_microscope
from plans.drift import drift_corrected_edge_eels

from .test_logstar_plan import stream_events


@pytest.fixture
def drifting(RE, tmp_path):
    # fast drift (0.2 nm/s = 0.13 px/s) so a short run drifts by several pixels
    microscope = twin_microscope(
        "nanowire", mode="local", assets_dir=tmp_path, seed=1, drift=True,
        drift_velocity=(0.2, -0.1), drift_random_walk=0.0,
    )  # fmt: skip
    yield microscope
    microscope.sim_bridge.close()


@pytest.mark.parametrize("correct", [True, False])
def test_drift_is_measured_recorded_and_corrected(RE, drifting, correct):
    RE(bps.mv(drifting.eels.exposure, 1.0))
    RE(drift_corrected_edge_eels(drifting.scan, drifting.eels_points, budget=40,
                                 every_points=10, correct=correct))  # fmt: skip
    twin = drifting.sim_bridge.backend
    pixel = twin._scan.field_of_view / twin._scan.width
    drift = stream_events(RE, "drift")
    decisions = stream_events(RE, "decisions")
    spectra = stream_events(RE, "primary")
    assert len(drift) == len(stream_events(RE, "drift_images")) >= 3
    assert len(decisions) == len(spectra) == len(stream_events(RE, "edge_points"))
    # the progress bar's total, once the edge sites are known (the budget is the most)
    start = next(doc for name, doc in RE.documents if name == "start")
    assert stream_events(RE, "edge_map")[0][start["num_points_key"]] == len(spectra)
    # each estimate is the specimen's true displacement since the survey (within 0.3 px)
    survey_time = 0.0
    for d in drift:
        true = np.array(twin.drift.peek(d["drift-time"])) - twin.drift.peek(survey_time)
        assert d["drift-dx"] == pytest.approx(true[0] / pixel, abs=0.3)
        assert d["drift-dy"] == pytest.approx(true[1] / pixel, abs=0.3)
    # the beam went where the decisions say, and moved with the drift only when correcting
    beam = np.array([[s["stem-beam-x"], s["stem-beam-y"]] for s in spectra])
    placed = np.array([[d["decision-x"], d["decision-y"]] for d in decisions])
    np.testing.assert_allclose(beam, placed)
    shift = np.array([[d["decision-correction_x"], d["decision-correction_y"]] for d in decisions])
    if correct:
        assert shift[-1, 0] > 2.0  # drifting +x by several px by the end
        assert shift[-1, 1] < -1.0
    else:
        assert np.all(shift == 0)


def test_drift_run_replays_compares_and_draws(RE, drifting):
    from matplotlib.figure import Figure

    from agents.runs import unpack_run
    from ophyd_stem.app.analysis.counterfactual import counterfactual
    from ophyd_stem.app.analysis.forensics import forensics
    from ophyd_stem.app.views import draw

    RE(bps.mv(drifting.eels.exposure, 1.0))
    RE(drift_corrected_edge_eels(drifting.scan, drifting.eels_points, budget=30,
                                 every_points=10))  # fmt: skip
    data = unpack_run(RE.documents)
    # forensics: the edge points, every estimate registered again from the recorded re-scans,
    # every beam position re-derived from them at its planned time
    report = forensics(data)
    assert report.ok, report.text()
    kinds = [c.what for c in report.checks]
    assert kinds.count("drift") == len(stream_events(RE, "drift")) >= 2
    assert kinds.count("positions") == kinds.count("drift") + 1  # before the first re-scan too
    # without correction the beam would have stayed on the survey's sites, pixels away
    uncorrected = counterfactual(data, "uncorrected", out_dir=None)
    assert float(uncorrected.summary["mean distance (px)"]) > 1.0
    intended = np.column_stack([data.decisions["intended_x"], data.decisions["intended_y"]])
    np.testing.assert_allclose(uncorrected.chosen, intended)
    phase = counterfactual(data, "phase", out_dir=None)
    assert "estimates changed by (px)" in phase.summary
    fig = Figure(figsize=(18, 4.8))
    drawn = draw(fig, data)
    assert drawn["trajectory"] == len(stream_events(RE, "drift"))
    assert drawn["correction"] == drawn["beam"] == 30
    assert figure_problems(fig) == []


def test_drift_is_re_measured_by_instrument_time_and_sooner_at_the_start(RE, drifting):
    RE(bps.mv(drifting.eels.exposure, 1.0))
    RE(drift_corrected_edge_eels(drifting.scan, drifting.eels_points, budget=20,
                                 every_points=0, every_seconds=5.0))  # fmt: skip
    start = next(doc for name, doc in RE.documents if name == "start")
    assert start["plan_args"]["every_seconds"] == 5.0
    assert start["plan_args"]["first_points"] == 3
    done = [d["drift-spectra_done"] for d in stream_events(RE, "drift")]
    # the first spectrum times the rest; then 3 and 3 (first_points) until two estimates
    # are in, then as many spectra as fit in 5 s of instrument time
    assert done[:2] == [4, 7]
    gaps = np.diff(done[1:])
    assert len(gaps) >= 2
    assert len(set(gaps.tolist())) == 1
    # the fewest spectra that take 5 s of instrument time (each decision's planned time);
    # a chunk that fell short of 5 s, not due, was followed by another: 10 s, not 5
    planned = np.array([d["decision-planned_time"] for d in stream_events(RE, "decisions")])
    per_spectrum = float(np.median(np.diff(planned[done[1] :])))
    assert gaps[0] == int(np.ceil(5.0 / per_spectrum))
    assert (gaps[0] - 1) * per_spectrum < 5.0 <= gaps[0] * per_spectrum
