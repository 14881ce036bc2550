"""Where the catalog keeps its files: one data directory, persistent across sessions.

Layout of ``data_dir`` (created on demand)::

    catalog.db        the SQLite catalog (run metadata, the tree of nodes)
    tables/           writable storage: event tables (tables.sqlite) and inline arrays (zarr)
    assets/           files the detectors write (survey images as HDF5); readable storage
    spool/            the writer's write-ahead log: every document before the catalog has it
    server/           the embedded server's config, API key (mode 0600), state and log
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

#: environment variable that moves the data directory (an absolute or ``~`` path)
DATA_DIR_ENV = "OPHYD_STEM_DATA_DIR"

__all__ = ["DATA_DIR_ENV", "CatalogSettings", "default_data_dir"]


def default_data_dir() -> Path:
    """The data directory used when none is given.

    ``$OPHYD_STEM_DATA_DIR`` when set, else the per-user data directory of the platform
    (``~/.local/share/ophyd-stem`` on Linux, ``~/Library/Application Support/ophyd-stem`` on
    macOS, ``%LOCALAPPDATA%\\ophyd-stem`` on Windows).

    Example:
        >>> isinstance(default_data_dir(), Path)
        True
    """
    configured = os.environ.get(DATA_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(platformdirs.user_data_dir("ophyd-stem", appauthor=False)).resolve()


@dataclass(frozen=True)
class CatalogSettings:
    """The files of the embedded catalog, all under one ``data_dir``.

    Args:
        data_dir: root of the catalog's files; None (the default) means
            :func:`default_data_dir`.

    Example:
        >>> settings = CatalogSettings("/tmp/stem-data")
        >>> settings.assets_dir  # where the ScanEngine writes survey images (HDF5)
        PosixPath('/tmp/stem-data/assets')
    """

    data_dir: Path = field(default_factory=default_data_dir)

    def __post_init__(self) -> None:
        # Accept None, str paths and "~", and keep one absolute spelling: the server config
        # and the file:// URIs in StreamResource documents must agree on where assets lie.
        directory = default_data_dir() if self.data_dir is None else self.data_dir
        object.__setattr__(self, "data_dir", Path(directory).expanduser().resolve())

    @property
    def catalog_db(self) -> Path:
        """The SQLite catalog file (created once with ``tiled catalog init``)."""
        return self.data_dir / "catalog.db"

    @property
    def catalog_uri(self) -> str:
        """SQLAlchemy URI of :attr:`catalog_db`."""
        return f"sqlite:///{self.catalog_db.as_posix()}"

    @property
    def tables_dir(self) -> Path:
        """Writable storage of the server: event tables and inline arrays (zarr)."""
        return self.data_dir / "tables"

    @property
    def tables_uri(self) -> str:
        """SQL storage for appendable event tables, inside :attr:`tables_dir`."""
        return f"sqlite:///{(self.tables_dir / 'tables.sqlite').as_posix()}"

    @property
    def assets_dir(self) -> Path:
        """Where detectors write their files (survey images as HDF5).

        The server may only read external files under this directory (its
        ``readable_storage``), so the ScanEngine's path provider must point here.
        """
        return self.data_dir / "assets"

    @property
    def spool_dir(self) -> Path:
        """The writer's write-ahead log: one JSON-lines file per run."""
        return self.data_dir / "spool"

    @property
    def server_dir(self) -> Path:
        """The embedded server's generated config, API key, state file and log."""
        return self.data_dir / "server"

    def ensure_dirs(self) -> CatalogSettings:
        """Create the directory layout (idempotent) and return ``self``.

        ``server/`` is private to the user (mode 0700): it holds the API key.
        """
        for directory in (self.data_dir, self.tables_dir, self.assets_dir, self.spool_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.server_dir.mkdir(parents=True, exist_ok=True)
        if os.name == "posix":
            os.chmod(self.server_dir, 0o700)
        return self
