"""``ophyd-stem run dkl --replay SI --survey SURVEY``: a recording of any shape, as a user runs
it, and ``replay_microscope(path, survey=...)`` in the console."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from dm_bridge.backends.recording_arrays import write_array_file

from .test_command import ophyd_stem

ROWS, COLS = 20, 36  # not square: the command must take the recording's field as it is


def _recording(folder):
    """A small spectrum image with its survey in a separate file (signal "ABF"): a core-loss
    edge at 450 eV whose strength follows the survey's dark discs, and one cosmic-ray spike."""
    yy, xx = np.mgrid[:ROWS, :COLS]
    discs = np.zeros((ROWS, COLS))
    for cy, cx in ((6, 8), (13, 27), (15, 10)):
        discs = np.maximum(discs, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0))
    survey = 1000.0 - 600.0 * discs  # ABF: the columns are dark
    energy = np.arange(400.0, 520.0)
    background = 1e12 * energy**-3.0
    edge = np.where(energy >= 450, 1.0, 0.0) * (energy / 450.0) ** -2.0
    spectra = background + 3e3 * discs[..., None] * edge
    spectra[2, 30, 70] += 5e5  # a spike at 470 eV, in the post-edge window
    si, sv = folder / "si.npz", folder / "survey.npz"
    write_array_file(si, {"spectra": spectra.astype(np.float32), "energy_axis": energy})
    write_array_file(sv, {"survey": survey.astype(np.float32), "signals": np.array(["ABF"])})
    return si, sv


def test_dkl_runs_on_a_recording_of_any_shape_with_its_survey(app_env, tmp_path):
    si, survey = _recording(tmp_path)
    run = ophyd_stem(
        app_env,
        "run", "dkl", "--replay", str(si), "--survey", str(survey),
        "--scalarizer", "edge:420:445:452:500", "--step", "2", "--window", "7",
        "--steps", "6", "--seeds", "3",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "instrument  replay of si.npz + survey.npz" in run.stdout
    assert "stored      yes" in run.stdout
    # despiking is on for a replay, and the run records it in the scalarizer's name
    assert "(despike:edge:420:445:452:500)" in run.stdout
    agent = re.search(r"agent\s+window (\d+) px, candidates every (\d+) px \((\d+)\)", run.stdout)
    assert agent is not None
    assert agent.groups() == ("7", "2", str((ROWS // 2) * (COLS // 2)))
    uid = re.search(r"^run ([0-9a-f-]{36})", run.stdout, re.M).group(1)
    show = ophyd_stem(app_env, "show", uid[:8], "--out", str(tmp_path / "figs"))
    assert show.returncode == 0, show.stderr[-2000:]
    assert "despike:edge:420:445:452:500" in show.stdout


def test_a_survey_without_a_spectrum_image_is_refused(app_env, tmp_path):
    _, survey = _recording(tmp_path)
    run = ophyd_stem(app_env, "run", "dkl", "--survey", str(survey))
    assert run.returncode != 0
    assert "--survey needs --replay" in run.stderr


def test_replay_microscope_takes_the_survey_file(RE, tmp_path):
    from ophyd_stem.app.analysis.replay import replay_microscope

    si, survey = _recording(tmp_path)
    microscope = replay_microscope(si, survey=survey, assets_dir=tmp_path / "assets")
    try:
        backend = microscope.sim_bridge.backend
        scan = backend.get_scan_parameters()
        assert (scan["width"], scan["height"]) == (COLS, ROWS)
        assert list(backend.recording.survey) == ["ABF"]
        assert backend.describe()["files"] == [str(si), str(survey)]
    finally:
        microscope.sim_bridge.close()


def test_a_spectrum_without_a_number_does_not_stop_a_run_on_a_recording(RE, tmp_path):
    """A dead read-out (all zeros) gives a ratio over zero counts, NaN: the run records it
    and goes on, and the agent does not go back to that pixel."""
    from agents.dkl import DKLAgent
    from agents.scalarizers import get_scalarizer
    from ophyd_stem.app.analysis.replay import replay_microscope
    from plans import adaptive_eels

    si, survey = _recording(tmp_path)
    data = dict(np.load(si))
    dead = [(y, x) for y in range(0, ROWS, 2) for x in range(0, COLS, 2)]  # a quarter of it
    for y, x in dead:
        data["spectra"][y, x] = 0.0
    write_array_file(si, data)
    ratio = get_scalarizer("ratio:455:475:400:440")
    microscope = replay_microscope(si, survey=survey, assets_dir=tmp_path / "assets")
    agents = []

    def make(image):
        agents.append(DKLAgent(image, n_seed=4, seed=0, train_iters=20, finetune_iters=5))
        return agents[0]

    try:
        RE(
            adaptive_eels(
                microscope.scan, microscope.eels_points, make, ratio, steps=12, signal="ABF"
            )
        )
    finally:
        microscope.sim_bridge.close()
    stops = [d for n, d in RE.documents if n == "stop"]
    assert stops[-1]["exit_status"] == "success"
    streams = {d["uid"]: d["name"] for n, d in RE.documents if n == "descriptor"}
    rows = []
    for n, d in RE.documents:
        if n not in ("event", "event_page") or streams[d["descriptor"]] != "decisions":
            continue
        data = {k: np.atleast_1d(v) for k, v in d["data"].items()}
        key = {k.split("-")[-1]: k for k in data}
        rows += list(zip(data[key["x"]], data[key["y"]], data[key["value"]]))
    assert len(rows) == 12
    unusable = [(x, y) for x, y, v in rows if not np.isfinite(v)]
    assert unusable  # a quarter of the field is dead: some were measured
    assert all((int(y), int(x)) in dead for x, y in unusable)
    assert agents[0].report()["n_unusable"] == len(unusable)
    assert len({(x, y) for x, y, _ in rows}) == 12  # no pixel twice


LSMO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "LSMO_STO_linescan.hspy"


@pytest.mark.skipif(not LSMO.is_file(), reason=f"real data missing: {LSMO}")
def test_dkl_on_a_real_core_loss_line_scan_chooses_an_edge_and_is_stored(app_env, tmp_path):
    """The default scalarizer on a real recording whose window (395-906 eV) has no plasmon
    band: once an error at the first spectrum ("band 20-30 eV lies outside the energy
    axis"); and a 10-position line scan's agent maps (10 values each) once went to the
    catalog's event table, which SQLite cannot hold: the run stayed in the spool."""
    run = ophyd_stem(app_env, "run", "dkl", "--replay", str(LSMO), "--steps", "4")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "stored      yes" in run.stdout
    chosen = re.search(r"\(despike:auto: despike:edge:([\d.:]+)\)", run.stdout)
    assert chosen is not None, run.stdout
    onset = np.mean([float(e) for e in chosen.group(1).split(":")[1:3]])
    # an edge of the interface's elements: Ti L2,3 456, O K 532, Mn L2,3 640, La M4,5 832 eV
    assert min(abs(onset - edge) for edge in (456, 532, 640, 832)) < 15, onset
    # the choice is recorded with the decisions: show (and the figures) name it
    uid = re.search(r"^run ([0-9a-f-]{36})", run.stdout, re.M).group(1)
    show = ophyd_stem(app_env, "show", uid[:8], "--out", str(tmp_path / "figs"))
    assert show.returncode == 0, show.stderr[-2000:]
    assert f"scalarizer despike:auto: despike:edge:{chosen.group(1)}" in show.stdout


ABF = LSMO.parent / "stem_abf_data.hspy"


@pytest.mark.skipif(not (LSMO.is_file() and ABF.is_file()), reason="real data missing")
def test_a_plan_in_the_console_takes_a_survey_whose_detector_is_not_named(RE, tmp_path):
    """The plans' default signal was "HAADF": on a recording whose survey names no detector
    (the real ABF file; served as "survey") a console plan then stopped ('the survey image
    has no HAADF signal'). Now the default is the instrument's: HAADF when it records one,
    else its first detector."""
    from ophyd_stem.app.analysis.replay import replay_microscope
    from plans import edge_eels

    microscope = replay_microscope(LSMO, survey=ABF, assets_dir=tmp_path / "assets")
    starts = []
    try:
        RE(
            edge_eels(microscope.scan, microscope.eels_points, agent_kwargs={"budget": 3}),
            lambda name, doc: starts.append(doc) if name == "start" else None,
        )
    finally:
        microscope.sim_bridge.close()
    assert starts[0]["plan_args"]["signal"] == "survey"
