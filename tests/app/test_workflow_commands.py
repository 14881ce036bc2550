"""The seed's workflows from the command line: a zero-loss aligned spectrum image, shown,
checked by forensics and drawn in the latent space of its survey."""

from __future__ import annotations

import re

import matplotlib.image as mpimg
import numpy as np

from .test_command import ophyd_stem


def test_run_zlp_then_show_forensics_and_latent_trajectory(app_env, tmp_path):
    run = ophyd_stem(app_env, "run", "zlp", "--rows", "4", "--cols", "4", "--size", "48")
    assert run.returncode == 0, run.stderr[-3000:]
    uid = re.search(r"^run ([0-9a-f-]{36})", run.stdout, re.M).group(1)
    assert "peak found and moved to 0 eV in 16 of 16 spectra" in run.stdout
    raw, after = map(float, re.search(
        r"ZLP position ([0-9.]+) eV rms as measured, ([0-9.]+) eV after", run.stdout
    ).groups())  # fmt: skip
    assert raw > 0.05 > 10 * after  # the twin's spectrometer jitters by 0.1 eV rms
    error = float(re.search(r"truth       aligned peaks ([0-9.]+) eV rms from 0 eV", run.stdout)[1])
    assert error < 0.01

    show = ophyd_stem(app_env, "show", uid[:8], "--latent", "--out", str(tmp_path / "figs"))
    assert show.returncode == 0, show.stderr[-3000:]
    assert re.search(r"zero loss   16 of 16 spectra aligned", show.stdout)
    workflow = re.search(r"workflow    (\S+\.png)", show.stdout).group(1)
    assert np.std(mpimg.imread(workflow)[..., :3]) > 0.05
    assert re.search(r"latent trajectory: (\S+\.png)", show.stdout)

    replay = ophyd_stem(app_env, "replay", uid[:8], "--forensics", "--latent",
                        "--counterfactual", "off", "--out", str(tmp_path / "replay"))  # fmt: skip
    assert replay.returncode == 0, replay.stdout[-2000:] + replay.stderr[-2000:]
    assert "1 of 1 decisions match" in replay.stdout
    assert "ZLP scatter after (eV)" in replay.stdout
    latent = re.search(r"latent trajectory: (\S+\.png)", replay.stdout).group(1)
    assert np.std(mpimg.imread(latent)[..., :3]) > 0.05


def test_run_drift_scores_itself_against_the_twins_drift_and_show_finds_it_by_scan_id(
    app_env, tmp_path
):
    # 30 edge sites of 6 s each: the twin's specimen drifts by a few px meanwhile
    run = ophyd_stem(app_env, "run", "drift", "--budget", "30", "--exposure", "6")
    assert run.returncode == 0, run.stderr[-3000:]
    moved = float(re.search(r"the specimen moved ([0-9.]+) px", run.stdout).group(1))
    estimate = float(re.search(r"truth       drift estimates ([0-9.]+) px from the twin's",
                               run.stdout).group(1))  # fmt: skip
    placed, stayed = map(float, re.search(
        r"placement   beam corrected: spectra ([0-9.]+) px from their sites .*; ([0-9.]+) px "
        r"had the beam stayed", run.stdout).groups())  # fmt: skip
    assert moved > 1.5
    assert estimate < 0.5
    assert placed < 0.5 < stayed
    assert "Retrying" not in run.stderr

    # the first run of this data directory, by its scan_id
    show = ophyd_stem(app_env, "show", "1", "--out", str(tmp_path / "figs"))
    assert show.returncode == 0, show.stderr[-3000:]
    assert "drift_corrected_edge_eels" in show.stdout
    assert re.search(r"drift       \d+ re-scans", show.stdout)


def test_run_physics_and_bandit_print_their_truth_score_and_what_they_learnt(app_env):
    physics = ophyd_stem(app_env, "run", "physics", "--steps", "7", "--size", "64")
    assert physics.returncode == 0, physics.stderr[-3000:]
    assert re.search(r"truth       best measured position holds \d+ % of the true maximum",
                     physics.stdout)  # fmt: skip
    # the physical parameters' posterior, the band's values in their unit
    assert re.search(r"posterior   background \S+ \+- \S+ counts·eV; .*edge_width \S+ \+- \S+ px",
                     physics.stdout)  # fmt: skip

    bandit = ophyd_stem(app_env, "run", "bandit", "--steps", "7", "--size", "64")
    assert bandit.returncode == 0, bandit.stderr[-3000:]
    assert re.search(r"truth       best measured position holds \d+ %", bandit.stdout)
    pulls = re.search(r"pulls per arm \{(.*)\}", bandit.stdout).group(1)
    assert sum(int(p.split(": ")[1]) for p in pulls.split(", ")) == 7
    assert "rVAE training" not in bandit.stderr  # k-means arms: nothing to train

    # latent arms train an rVAE on the survey first: the wait shows counts (issue 17)
    latent = ophyd_stem(app_env, "run", "bandit", "--arms", "latent", "--steps", "3",
                        "--size", "48")  # fmt: skip
    assert latent.returncode == 0, latent.stderr[-3000:]
    assert re.search(r"rVAE training: 100%\|[^|]*\| (\d+)/\1 \[", latent.stderr)
    assert "the latent arms' rVAE trained in" in latent.stdout


def test_run_latent_prints_its_clusters_training_and_the_phases_it_reached(app_env):
    run = ophyd_stem(app_env, "run", "latent", "--size", "48", "--eels", "4", "--clusters", "3")
    assert run.returncode == 0, run.stderr[-3000:]
    # the rVAE's training (seconds) shows a bar with counts on stderr (issue 17)
    assert re.search(r"rVAE training: 100%\|[^|]*\| (\d+)/\1 \[", run.stderr)
    sizes = re.search(r"clusters    sizes \[([0-9, ]+)\], spectra per cluster \[([0-9, ]+)\]",
                      run.stdout)  # fmt: skip
    assert sum(int(v) for v in sizes.group(2).split(",")) == 4
    wall, cpu = map(float, re.search(r"rVAE        trained in ([0-9.]+) s \(([0-9.]+) s of CPU\)",
                                     run.stdout).groups())  # fmt: skip
    assert cpu > 0
    assert wall > 0
    assert re.search(r"truth       spectra on [1-4] of [1-4] phases", run.stdout)


def test_every_workflow_prints_a_truth_score_on_the_twin():
    """Every `run PLAN` that decides something says how it did against the twin's truth
    (the printed lines themselves are checked run by run in test_command.py and
    test_workflow_commands.py); survey and grid decide nothing: they are the baselines."""
    import inspect

    from ophyd_stem.app.registry import PLANS

    for name, entry in PLANS.items():
        if name in ("survey", "grid"):
            continue
        assert entry.summarize is not None, name
        source = inspect.getsource(entry.summarize)
        module = inspect.getmodule(entry.summarize)
        for helper in set(re.findall(r"\b(_\w+)\(", source)):  # its own helpers
            if inspect.isfunction(getattr(module, helper, None)):
                source += inspect.getsource(getattr(module, helper))
        assert 'f"  truth ' in source, f"ophyd-stem run {name} prints no truth line"


def test_run_physics_hypotheses_names_no_winner_while_they_are_equally_probable():
    from ophyd_stem.app.workflows import _most_probable

    def report(**p):
        return {"hypotheses": {name: {"probability": v} for name, v in p.items()}}

    # as after 4 spectra, all seed points: the report's first of equals is no winner
    assert _most_probable(report(peak=0.5, step=0.5)) == "none yet (peak, step equally probable)"
    assert _most_probable(report(step=0.96, peak=0.01, flat=0.03)) == "step"
    assert _most_probable(report(step=1.0)) == "step"
