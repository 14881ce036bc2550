"""The libraries' own retry lines stay off the screen and land in the log file: tiled's
"Retrying…" (written straight to stderr when a request is retried) and TiledWriter's
"forcing a retry"; our own warnings still reach the person."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import logging, sys
    import httpx
    from tiled.client.utils import retry_context
    from ophyd_stem.app.logs import route_library_logs

    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # as `run` does
    print(route_library_logs(sys.argv[1]))
    failures = []
    for attempt in retry_context():  # tiled's own retry, as a catalog request uses it
        with attempt:
            if not failures:
                failures.append(1)
                raise httpx.ConnectError("the catalog did not answer")
    logging.getLogger("bluesky_tiled_plugins.writing.tiled_writer").warning(
        "Appending 3 rows to the internal table of stream 'primary' failed; forcing a retry"
    )
    logging.getLogger("ophyd_stem.catalog.writer").warning("catalog writer: the catalog is away")
    """
)


def test_library_retry_lines_go_to_the_log_file_ours_to_the_screen(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Retrying" not in done.stderr
    assert "forcing a retry" not in done.stderr
    assert "catalog writer: the catalog is away" in done.stderr
    log = (tmp_path / "data" / "ophyd-stem.log").read_text()
    assert done.stdout.strip().endswith("ophyd-stem.log")
    assert "tiled retries it" in log
    assert "forcing a retry" in log
    assert "catalog writer" not in log  # ours are for the person, not repeated there
