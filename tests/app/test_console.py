"""The console: the IPython profile starts and runs RE(bp.count([eels])) into the catalog."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROFILE = Path(__file__).resolve().parents[2] / "profile_collection" / "profile_ophyd_stem"


def test_console_starts_and_counts_the_eels_camera(app_env):
    code = (
        "uids = RE(bp.count([eels], num=2)); "
        "assert session.writer.flush(timeout=60); "
        "run = session.catalog()[uids[0]]; "
        "print('SHAPE', run['primary']['eels-spectrum'].read().shape); "
        "print('NAMES', sorted(n for n in ('stem', 'scan_engine', 'eels', 'survey', 'agents') "
        "if n in get_ipython().user_ns)); "
        "print('SCAN IS THE PLAN', scan is bp.scan)"
    )
    # as the operator starts it: the ophyd-stem command, IPython's options after "--"
    result = subprocess.run(
        [sys.executable, "-m", "ophyd_stem.app.cli", "console", "--", "-c", code],
        env=app_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "SHAPE (2, 2048)" in result.stdout
    assert "NAMES ['agents', 'eels', 'scan_engine', 'stem', 'survey']" in result.stdout
    assert "SCAN IS THE PLAN True" in result.stdout


def test_adaptive_workflows_and_the_pareto_pick_from_the_console(app_env):
    app_env["OPHYD_STEM_SAMPLE"] = "graphene"
    code = "\n".join(
        [
            "import json",
            "RE(bps.mv(scan_engine.width, 96, scan_engine.height, 96))",
            # LoG*: optimise, then the operator picks a front point by weight; the next run
            # uses it without optimising again, and records who chose.
            "agent = agents.LoGStarAgent('graphene', budget=12, n_initial=8)",
            "RE(logstar(scan_engine, agent))",
            "agent.select(weight=0.9, chooser='operator')",
            "uids = RE(logstar(scan_engine, agent, eels_points=eels_points, n_eels=2))",
            "assert session.writer.flush(timeout=60)",
            "run = session.catalog()[uids[0]]",
            "rep = json.loads(run['logstar']['logstar-report'].read()[0])",
            "print('CHOOSER', rep['chosen']['chooser'])",
            "print('CLUSTERS', len(run['atoms']['atoms-cluster'].read()) > 0)",
            "print('EELS', len(run['primary']['eels-spectrum'].read()))",
            # DKL from the console: the agent factory and a named scalarizer.
            "make = lambda image: agents.DKLAgent(image, n_seed=3, train_iters=30)",
            "band = agents.get_scalarizer('band:20:30')",
            "uids = RE(adaptive_eels(scan_engine, eels_points, make, band, steps=4, maps_every=2))",
            "assert session.writer.flush(timeout=60)",
            "print('DECISIONS', len(session.catalog()[uids[0]]['decisions']['decision-x'].read()))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-m", "IPython", f"--profile-dir={PROFILE}", "-c", code],
        env=app_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "CHOOSER operator" in result.stdout
    assert "CLUSTERS True" in result.stdout
    assert "EELS 2" in result.stdout
    assert "DECISIONS 4" in result.stdout
