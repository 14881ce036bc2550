"""bluesky-tiled-plugins' clients and writer import each other: a session's thread opening a
catalog and a CatalogWriter's thread importing the writer at the same moment deadlocked
(Python raised ``_DeadlockError`` in the catalog fixture of a test). Both import it under
one lock."""

from __future__ import annotations

import threading

from ophyd_stem.catalog import _runs
from ophyd_stem.catalog._clients import run_clients


def test_the_run_clients_wait_while_another_thread_imports_bluesky_tiled_plugins():
    done = threading.Event()

    def open_clients() -> None:
        run_clients()
        done.set()

    with _runs._IMPORT_LOCK:  # as the writer's thread holds it while importing
        opener = threading.Thread(target=open_clients, daemon=True)
        opener.start()
        assert not done.wait(0.5)  # waits for the import to finish
    assert done.wait(60)
    opener.join(timeout=10)
