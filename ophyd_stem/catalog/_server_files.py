"""The files of the embedded catalog server: its configuration, logging, API key, catalog.

Generated in ``server/`` of the data directory by :class:`~ophyd_stem.catalog.EmbeddedServer`
before it starts the server.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from .settings import CatalogSettings

__all__ = ["JSON_SEQ_EXPORTER", "CatalogServerError", "ensure_catalog_initialized"]

#: exporter that ``run.documents()`` relies on (bluesky-tiled-plugins)
JSON_SEQ_EXPORTER = "bluesky_tiled_plugins.exporters:json_seq_exporter"


class CatalogServerError(RuntimeError):
    """The embedded catalog server could not be started or reached."""


def _private_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (created 0600, never wider)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.replace(tmp, path)


def _load_or_create_api_key(settings: CatalogSettings) -> str:
    path = settings.server_dir / "api_key"
    if path.exists():
        key = path.read_text().strip()
        if key.isalnum():
            return key
    key = secrets.token_hex(32)  # tiled accepts alphanumeric keys only
    _private_write(path, key + "\n")
    return key


def _run_tiled(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    # The venv's own interpreter: no reliance on a `tiled` script being on PATH.
    return subprocess.run(
        [sys.executable, "-m", "tiled", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ensure_catalog_initialized(settings: CatalogSettings) -> None:
    """Create the SQLite catalog once with ``tiled catalog init``.

    Done explicitly rather than through the server's ``init_if_not_exists``, which re-checks
    (and may race) on every start. An existing catalog is left as it is.

    Raises:
        CatalogServerError: ``tiled catalog init`` failed (its message is included).
    """
    settings.ensure_dirs()
    if settings.catalog_db.exists():
        return
    result = _run_tiled("catalog", "init", "--if-not-exists", settings.catalog_uri)
    if result.returncode != 0:
        raise CatalogServerError(
            f"could not initialise the catalog {settings.catalog_db}:\n{result.stderr[-2000:]}"
        )


def _server_config(settings: CatalogSettings) -> dict:
    return {
        "trees": [
            {
                "path": "/",
                "tree": "catalog",
                "args": {
                    "uri": settings.catalog_uri,
                    "writable_storage": [str(settings.tables_dir), settings.tables_uri],
                    "readable_storage": [str(settings.assets_dir)],
                    "specs": [{"name": "CatalogOfBlueskyRuns", "version": "3.0"}],
                    # Lets a session recognise its own server behind a recorded port.
                    "metadata": {"ophyd_stem": {"data_dir": str(settings.data_dir)}},
                },
            }
        ],
        "media_types": {"BlueskyRun": {"application/json-seq": JSON_SEQ_EXPORTER}},
        # Live subscriptions (subscribe_to_streams) need a streaming cache; a local server
        # keeps it in memory. Production uses Redis (docs/catalog.md).
        "streaming_cache": {"uri": "memory"},
    }


def _logging_config(log_path: Path) -> dict:
    # Errors and start-up messages go to server/server.log; the per-request access log is
    # dropped (thousands of lines per scan, and it costs the server time per request).
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": str(log_path),
                "formatter": "plain",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["file"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["file"], "level": "WARNING", "propagate": False},
            "tiled": {"handlers": ["file"], "level": "WARNING", "propagate": False},
        },
    }
