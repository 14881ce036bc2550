"""Replay of a run's documents from the catalog, the text table, and the
``ophyd-stem replay`` / ``show`` commands."""

from __future__ import annotations

import collections
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np

from ophyd_stem.app.analysis.replay import RunTable, replay

BIN = Path(sys.executable).parent


def test_replay_sends_the_recorded_documents_in_order(dkl_run):
    seen = []
    count = replay(dkl_run.run, [lambda name, doc: seen.append((name, doc))])
    assert count == len(seen)
    live = collections.Counter(n for n, _ in dkl_run.documents)
    replayed = collections.Counter(n for n, _ in seen)
    assert replayed["start"] == replayed["stop"] == 1
    assert replayed["descriptor"] == live["descriptor"]
    assert seen[0][1]["uid"] == dkl_run.uid
    assert seen[-1][1]["exit_status"] == "success"
    # the same decisions, in the same order, as the RunEngine emitted them
    names = {d["uid"]: d["name"] for n, d in seen if n == "descriptor"}

    def decisions(docs, names):
        out = []
        for n, d in docs:
            if n == "event" and names.get(d["descriptor"]) == "decisions":
                out.append((d["data"]["decision-x"], d["data"]["decision-y"]))
            elif n == "event_page" and names.get(d["descriptor"]) == "decisions":
                out += list(zip(d["data"]["decision-x"], d["data"]["decision-y"]))
        return out

    live_names = {d["uid"]: d["name"] for n, d in dkl_run.documents if n == "descriptor"}
    assert decisions(seen, names) == decisions(dkl_run.documents, live_names)
    assert len(decisions(seen, names)) == 6


def test_run_table_prints_a_line_per_decision(dkl_run):
    out = io.StringIO()
    table = RunTable(file=out)
    replay(dkl_run.documents, [table])
    text = out.getvalue()
    assert table.rows == 6
    assert text.count("\ndecisions ") == 6
    assert "end: success" in text


def _command(catalog_env, *args):
    env = dict(os.environ)
    env.update(
        OPHYD_STEM_DATA_DIR=str(catalog_env.data_dir),
        OPHYD_STEM_CONFIG=str(catalog_env.data_dir / "no-config.toml"),
        MPLBACKEND="Agg",
        PYTHONWARNINGS="ignore",
    )
    for name in ("OPHYD_STEM_BRIDGE", "OPHYD_STEM_CATALOG", "OPHYD_STEM_API_KEY"):
        env.pop(name, None)
    return subprocess.run(
        [str(BIN / "ophyd-stem"), *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_replay_command_table_plot_forensics_counterfactual(dkl_run, catalog_env, tmp_path):
    result = _command(
        catalog_env,
        "replay",
        dkl_run.uid[:8],
        "--callbacks",
        "table",
        "plot",
        "--forensics",
        "--counterfactual",
        "random",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.count("\ndecisions ") == 6
    # the six steps and the zero-loss alignment (on for these low-loss spectra)
    assert re.search(r"7 of 7 decisions match", result.stdout)
    figure = Path(re.search(r"figure: (\S+\.png)", result.stdout).group(1))
    assert np.std(mpimg.imread(figure)[..., :3]) > 0.05
    assert (tmp_path / f"counterfactual-{dkl_run.uid[:8]}-random.png").exists()


def test_show_writes_the_workflow_figure_and_an_html_summary(dkl_run, catalog_env, tmp_path):
    result = _command(catalog_env, "show", dkl_run.uid[:8], "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert re.search(r"best value\s+\S+ counts·eV at \(", result.stdout)  # band:20:30's unit
    assert re.search(r"decisions\s+.*3 seed; scalarizer band:20:30", result.stdout)
    workflow = Path(re.search(r"workflow\s+(\S+\.png)", result.stdout).group(1))
    assert np.std(mpimg.imread(workflow)[..., :3]) > 0.05
    page = Path(re.search(r"summary\s+(\S+\.html)", result.stdout).group(1))
    text = page.read_text()
    assert workflow.name in text
    assert "image file" in text


def test_replay_command_refuses_an_unknown_run(catalog_env):
    result = _command(catalog_env, "replay", "does-not-exist", "--forensics")
    assert result.returncode == 1
    assert result.stderr.startswith("ophyd-stem: ")
    assert "Traceback" not in result.stderr
