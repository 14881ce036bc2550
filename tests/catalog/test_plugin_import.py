"""bluesky-tiled-plugins imported again after an import cut short by another thread.

Run in a child process: the test forgets and re-imports the package, which must not touch
the classes the rest of the test session holds.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib._bootstrap as bootstrap
    import sys

    class CutShort:
        # Fails the first import of one of the package's inner modules, as Python does when
        # two threads' imports wait for each other (a _DeadlockError in one of them).
        failed = False

        def find_spec(self, name, path=None, target=None):
            if name == "bluesky_tiled_plugins.writing.validator" and not self.failed:
                self.failed = True
                raise bootstrap._DeadlockError("deadlock detected by _ModuleLock(...)")
            return None

    sys.meta_path.insert(0, CutShort())
    from ophyd_stem.catalog._runs import import_bluesky_tiled_plugins

    import_bluesky_tiled_plugins()
    assert sys.meta_path[0].failed  # the first import was indeed cut short
    from bluesky_tiled_plugins import TiledWriter
    from bluesky_tiled_plugins.clients.catalog_of_bluesky_runs import CatalogOfBlueskyRuns
    print("IMPORTED", TiledWriter.__name__, CatalogOfBlueskyRuns.__name__)
    """
)


def test_an_import_cut_short_by_another_thread_is_tried_again() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "IMPORTED TiledWriter CatalogOfBlueskyRuns" in result.stdout
    assert "importing bluesky-tiled-plugins failed" in result.stderr  # said, not hidden
