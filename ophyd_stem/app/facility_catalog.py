"""The facility's catalog on PostgreSQL: the database made a Tiled catalog, and the Tiled
configuration that keeps run metadata and event tables there while survey images stay HDF5
files in the data directory (the ``catalog.yml`` docs/facility.md shows).

:mod:`ophyd_stem.app.facility_processes` starts ``tiled serve config`` on what this writes.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["api_key", "prepare_database", "tiled_config", "write_tiled_config"]


def prepare_database(database: str, timeout: float = 120.0) -> None:
    """Make ``database`` (``postgresql://user@host:5432/db``) a Tiled catalog, if it is not
    one yet.

    Raises:
        ValueError: not a PostgreSQL URI.
        RuntimeError: ``tiled catalog init`` failed (its error output is in the message).
    """
    if not database.startswith(("postgresql://", "postgresql+asyncpg://")):
        raise ValueError(f"the catalog database must be postgresql://..., not {database}")
    init = subprocess.run(
        [sys.executable, "-m", "tiled", "catalog", "init", "--if-not-exists", database],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if init.returncode != 0:
        raise RuntimeError(f"tiled catalog init {database} failed:\n{init.stderr[-2000:]}")


def api_key(path: Path) -> str:
    """The catalog server's API key kept in ``path`` (owner-only), made on first use."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip()


def tiled_config(database: str, settings: Any) -> dict[str, Any]:
    """Tiled's server configuration: a catalog of Bluesky runs in ``database`` whose event
    tables go to PostgreSQL too, and which reads the survey images (HDF5) written to
    ``settings.assets_dir`` (a :class:`ophyd_stem.catalog.CatalogSettings`)."""
    tables = database.replace("postgresql+asyncpg://", "postgresql://", 1)
    return {
        "trees": [
            {
                "path": "/",
                "tree": "catalog",
                "args": {
                    "uri": database,
                    "writable_storage": [str(settings.tables_dir), tables],
                    "readable_storage": [str(settings.assets_dir)],
                    "specs": [{"name": "CatalogOfBlueskyRuns", "version": "3.0"}],
                },
            }
        ],
        "media_types": {
            "BlueskyRun": {
                "application/json-seq": "bluesky_tiled_plugins.exporters:json_seq_exporter"
            }
        },
        # one server process: live subscriptions in memory (several workers need a Redis)
        "streaming_cache": {"uri": "memory"},
    }


def write_tiled_config(path: Path, database: str, settings: Any) -> Path:
    """Write :func:`tiled_config` as YAML to ``path``; returns it."""
    import yaml

    path.write_text(yaml.safe_dump(tiled_config(database, settings), sort_keys=False))
    return path
