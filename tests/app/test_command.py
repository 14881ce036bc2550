"""The ``ophyd-stem`` command end to end, as a user runs it: twin bridge + embedded catalog."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import matplotlib.image as mpimg
import numpy as np

from ophyd_stem.catalog import CatalogSettings

from .conftest import BIN


def ophyd_stem(env, *args, timeout=300):
    result = subprocess.run(
        [str(BIN / "ophyd-stem"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    return result


def test_run_survey_then_grid_then_list_and_show(app_env, tmp_path):
    survey = ophyd_stem(app_env, "run", "survey", "--size", "64")
    assert survey.returncode == 0, survey.stderr[-3000:]
    uid_survey = re.search(r"^run ([0-9a-f-]{36})", survey.stdout, re.M).group(1)
    assert "stored      yes" in survey.stdout
    assert "would have taken" in survey.stdout

    grid = ophyd_stem(app_env, "run", "grid", "--rows", "4", "--cols", "5", "--size", "32")
    assert grid.returncode == 0, grid.stderr[-3000:]
    uid_grid = re.search(r"^run ([0-9a-f-]{36})", grid.stdout, re.M).group(1)
    # 20 spectra of the twin's timing model: the microscope would take seconds, not zero.
    took = re.search(r"would have taken ([0-9.]+) s", grid.stdout)
    assert took is not None
    assert float(took.group(1)) > 1.0
    assert "sample nanowire" in grid.stdout

    runs = ophyd_stem(app_env, "runs")
    assert runs.returncode == 0, runs.stderr
    lines = [line for line in runs.stdout.splitlines() if uid_grid[:8] in line]
    assert len(lines) == 1
    assert "spectrum_image" in lines[0]
    # what was acquired, not 41 events (their 20 zero-loss alignments are records, not spectra)
    assert "  20 spectra, 1 image  " in lines[0]
    (line,) = [line for line in runs.stdout.splitlines() if uid_survey[:8] in line]
    assert "  1 image  " in line

    show = ophyd_stem(app_env, "show", uid_grid[:8], "--out", str(tmp_path / "figs"))
    assert show.returncode == 0, show.stderr
    assert "spectra     20 x 2048 channels" in show.stdout
    # The catalog link it prints answers after the command (the server outlives commands),
    # but not to a bare browser: the summary says where the key is and how to add it ...
    link = re.search(r"^  catalog\s+(http\S+)", show.stdout, re.M).group(1)
    settings = CatalogSettings(Path(app_env["OPHYD_STEM_DATA_DIR"]))
    key_file = re.search(r"append \?api_key=KEY, the key in (\S+)\)", show.stdout).group(1)
    assert Path(key_file) == settings.server_dir / "api_key"
    key = Path(key_file).read_text().strip()
    assert httpx.get(link).status_code == 401
    assert httpx.get(f"{link}?api_key={key}").status_code == 200
    assert key not in show.stdout
    # the summary after the run links the same run, with the same help (not the bare server)
    assert re.search(r"^  catalog\s+(http\S+)", grid.stdout, re.M).group(1) == link
    assert f"append ?api_key=KEY, the key in {key_file})" in grid.stdout
    assert key not in grid.stdout
    # ... and the Python line it prints opens the run, pasted as it is
    python = re.search(r"^  in Python   (.+)$", show.stdout, re.M).group(1)
    opened = subprocess.run(
        [str(BIN / "python"), "-c", f"{python}; print(run.metadata['start']['uid'])"],
        env=app_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert opened.stdout.strip() == uid_grid, opened.stderr[-2000:]

    export = ophyd_stem(app_env, "export", uid_grid[:8], "--out", str(tmp_path / "hspy"))
    assert export.returncode == 0, export.stderr
    files = export.stdout.split()
    assert [Path(f).suffix for f in files] == [".hspy", ".hspy"]
    from rsciio.hspy import file_reader

    (spectra,) = file_reader(files[-1])
    assert spectra["data"].shape == (4, 5, 2048)
    assert spectra["metadata"]["Signal"]["signal_type"] == "EELS"
    png = re.search(r"figure: (\S+\.png)", show.stdout).group(1)
    # the HTML page captions each figure with what it shows: a grid has no agent, its
    # second figure is the zero-loss alignment; the long plan line wraps
    page = re.search(r"summary\s+(\S+\.html)", show.stdout).group(1)
    text = Path(page).read_text()
    assert "Zero-loss alignment:" in text
    assert "what the agent saw" not in text
    assert "white-space:pre-wrap" in text
    image = mpimg.imread(png)
    assert image.ndim == 3
    assert image.shape[0] > 100
    # Something was drawn: the figure is not a blank canvas.
    assert np.std(image[..., :3]) > 0.05


def test_bad_input_gives_one_clear_line(app_env):
    result = ophyd_stem(app_env, "show", "does-not-exist")
    assert result.returncode == 1
    # what it is doing (printed at once), then the error in one line
    errors = [line for line in result.stderr.splitlines() if line.startswith("ophyd-stem: ")]
    assert len(errors) == 1, result.stderr
    assert "does-not-exist" in errors[0]
    assert "Traceback" not in result.stderr
    # a run that is not there is the user's lookup, not a fault: no "KeyError", no quotes
    # around the sentence, and where to look
    assert errors[0] == (
        "ophyd-stem: no run with uid 'does-not-exist' in the catalog "
        "(`ophyd-stem runs` lists the runs)"
    )
    assert "OPHYD_STEM_DEBUG" not in result.stderr  # no traceback to look for: a typo
    result = ophyd_stem(app_env, "run", "survey", "--size", "100000")
    assert result.returncode == 1
    assert "width" in result.stderr or "outside" in result.stderr
    assert "AsyncStatus" not in result.stderr  # the device's error, not its status's repr
    result = ophyd_stem(app_env, "run", "dkl", "--device", "gpu")
    assert result.returncode == 1
    assert "device must be one of auto, cpu, cuda, cuda:N" in result.stderr


def test_edge_and_dkl_commands_run_on_the_embedded_default(app_env):
    edge = ophyd_stem(app_env, "run", "edge")
    assert edge.returncode == 0, edge.stderr[-3000:]
    assert "stored      yes" in edge.stdout
    coverage = re.search(r"truth\s+([0-9.]+) % of the \d+ true interface pixels", edge.stdout)
    assert coverage is not None
    assert float(coverage.group(1)) >= 90.0
    fraction = re.search(r"pixels \(([0-9.]+) %\) along the edges", edge.stdout)
    assert float(fraction.group(1)) <= 1.0
    assert "full grid" in edge.stdout

    dkl = ophyd_stem(app_env, "run", "dkl", "--steps", "8", "--seeds", "3", "--device", "cpu")
    assert dkl.returncode == 0, dkl.stderr[-3000:]
    assert "stored      yes" in dkl.stdout
    assert re.search(r"best\s+\S+ at \(", dkl.stdout)
    assert "of the true maximum" in dkl.stdout
    # the twin's survey is HAADF: the plan told the agent, the summary says what went first
    assert "the bright columns or particles first (HAADF survey)" in dkl.stdout


def test_train_ensemble_then_run_dcnn(app_env, tmp_path):
    app_env["OPHYD_STEM_CACHE"] = str(tmp_path / "cache")
    missing = ophyd_stem(app_env, "run", "dcnn", "--ensemble", "tiny", "--size", "64")
    assert missing.returncode == 1
    assert "train-ensemble" in missing.stderr  # the error says how to get one
    train = ophyd_stem(
        app_env,
        "train-ensemble", "--name", "tiny", "--members", "2", "--steps", "10",
        "--images", "4", "--size", "64", "--device", "cpu", "--compute", "local:2",
        "--calibration-images", "3",
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert "saved ensemble 'tiny'" in train.stdout
    assert "calibrating the uncertainty on 3 other twin images" in train.stdout
    # the calibration's predictions (seconds on the default 48 images) show a bar with
    # counts (issue 17)
    assert re.search(r"calibrating: 100%\|[^|]*\| 3/3 \[", train.stderr)
    # one member per worker of the command's own LocalCluster, on the CPU asked for
    metadata = json.loads((tmp_path / "cache" / "ensembles" / "tiny" / "metadata.json").read_text())
    assert metadata["compute"] == "local:2"
    assert metadata["trained_on"] == [{"type": "cpu", "index": None, "name": "cpu"}] * 2
    run = ophyd_stem(app_env, "run", "dcnn", "--ensemble", "tiny", "--size", "64", "--eels", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "found by 2 U-Nets" in run.stdout
    assert re.search(r"truth\s+F1 [0-9.]+", run.stdout)


def test_logstar_command_prints_its_truth_score_and_where_eels_landed(app_env):
    run = ophyd_stem(
        app_env, "run", "logstar", "--size", "96", "--fov", "0.75", "--budget", "10",
        "--eels", "3", "--target", "brightest",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(r"truth\s+F1 [0-9.]+ \(TP \d+, FP \d+, FN \d+", run.stdout)
    # each EELS position named by the true atom it landed on, and what the field holds
    assert re.search(r"EELS on\s+.*in the field: \d+ C", run.stdout)


def test_logstar_command_says_where_the_pixel_size_came_from_and_flags_a_wrong_lattice(
    app_env, tmp_path
):
    # nanoparticles have no graphene lattice for the FFT to find: one clear line, no
    # traceback on the screen (it is in the log file), and the next run works
    none = ophyd_stem(
        app_env, "run", "logstar", "--sample", "nanoparticles", "--lattice", "graphene",
        "--size", "64", "--budget", "8", "--pixel-size", "fft",
    )  # fmt: skip
    assert none.returncode == 1, none.stderr[-3000:]
    errors = [line for line in none.stderr.splitlines() if line.startswith("ophyd-stem: ")]
    assert len(errors) == 1, none.stderr
    assert "does not show the lattice graphene" in errors[0]
    assert "too few regular atoms to measure their spacing" in errors[0]  # nor its atoms
    assert errors[0].endswith("give the pixel size")
    assert "Traceback" not in none.stderr
    assert "Run aborted" not in none.stderr
    # connecting..., the error, the hint (and, on a slow start, how long it is taking)
    said = [
        line for line in none.stderr.splitlines() if not line.startswith(("  still ", "  done "))
    ]
    assert len(said) <= 3, none.stderr
    log = (tmp_path / "data" / "ophyd-stem.log").read_text()
    assert "Run aborted" in log
    assert "Traceback" in log

    fft = ophyd_stem(
        app_env, "run", "logstar", "--size", "192", "--fov", "1.5", "--budget", "10",
        "--pixel-size", "fft",
    )  # fmt: skip
    assert fft.returncode == 0, fft.stderr[-3000:]
    line = re.search(r"pixel size\s+([0-9.]+) nm/px \(from the image's FFT; its calibration "
                     r"([0-9.]+), FFT/calibration ([0-9.]+)", fft.stdout)  # fmt: skip
    assert line is not None, fft.stdout
    assert abs(float(line.group(1)) / float(line.group(2)) - 1) < 0.01  # 1.5 nm / 192 px
    assert "plausible   the atoms sit on columns" in fft.stdout
    # graphene imaged, SrTiO3 typed: whatever the count says, the run warns
    wrong = ophyd_stem(
        app_env, "run", "logstar", "--size", "96", "--fov", "0.75", "--budget", "10",
        "--lattice", "SrTiO3",
    )  # fmt: skip
    assert wrong.returncode == 0, wrong.stderr[-3000:]
    assert re.search(r"WARNING .*bright columns have no atom", wrong.stdout), wrong.stdout
    assert "plausible" not in wrong.stdout


def test_run_dkl_defaults_are_the_agents_the_benchmark_measures():
    # the command chose with UCB beta 4 while the agent (and so the benchmark) used beta 1
    import inspect

    from agents.dkl import DKLAgent
    from ophyd_stem.app.cli import build_parser

    args = build_parser().parse_args(["run", "dkl"])
    agent = inspect.signature(DKLAgent).parameters
    for option, name in (("acquisition", "acquisition"), ("xi", "xi"), ("beta", "beta"),
                         ("seeds", "n_seed"), ("window", "window"), ("step", "step")):  # fmt: skip
        assert getattr(args, option) == agent[name].default, option


def test_import_spool_says_what_happened_what_is_safe_and_what_to_do(app_env):
    away = ["--catalog", "http://127.0.0.1:9", "--api-key", "k"]
    run = ophyd_stem(app_env, "run", "survey", "--size", "32", *away, "--catalog-timeout", "2")
    assert run.returncode == 3, run.stderr[-2000:]
    assert "safe in the local spool" in run.stdout
    # the catalog still does not answer: what happened, that the runs are safe, what to do
    still = ophyd_stem(app_env, "import-spool", *away)
    assert still.returncode == 3
    assert "no catalog server answers at http://127.0.0.1:9" in still.stderr
    assert "Nothing was lost: the runs stay in" in still.stderr
    assert "again once the catalog answers" in still.stderr
    done = ophyd_stem(app_env, "import-spool")  # into the embedded catalog
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 run(s) imported" in done.stdout
    again = ophyd_stem(app_env, "import-spool")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "nothing to import: the spool" in again.stdout
    assert "every run reached the catalog" in again.stdout
