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
        "print('NAMES', sorted(n for n in ('stem', 'scan', 'eels', 'survey', 'agents') "
        "if n in get_ipython().user_ns))"
    )
    result = subprocess.run(
        [sys.executable, "-m", "IPython", f"--profile-dir={PROFILE}", "-c", code],
        env=app_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "SHAPE (2, 2048)" in result.stdout
    assert "NAMES ['agents', 'eels', 'scan', 'stem', 'survey']" in result.stdout
