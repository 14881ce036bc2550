"""The Tiled catalog: an embedded local server by default, a decoupled writer that loses nothing.

>>> from ophyd_stem.catalog import CatalogWriter, open_catalog, import_spool
>>> writer = CatalogWriter.to_embedded()      # doctest: +SKIP
>>> RE.subscribe(writer)                      # doctest: +SKIP
>>> catalog = open_catalog()                  # doctest: +SKIP
>>> catalog[-1].documents()                   # doctest: +SKIP

See docs/catalog.md for where data lives, remote servers, the spool, and deployment.
"""

from ._clients import RunInProgress
from ._runs import CatalogAuthError, CatalogError, CatalogMismatch, CatalogUnreachable
from .client import RunSummary, get_run, open_catalog, recent_runs
from .recovery import ImportReport, import_spool
from .server import CatalogServerError, EmbeddedServer, ServerStatus, server_status, stop_server
from .settings import DATA_DIR_ENV, CatalogSettings, default_data_dir
from .writer import CatalogWriter, WriterStatus

__all__ = [
    "DATA_DIR_ENV",
    "CatalogAuthError",
    "CatalogError",
    "CatalogMismatch",
    "CatalogServerError",
    "CatalogSettings",
    "CatalogUnreachable",
    "CatalogWriter",
    "EmbeddedServer",
    "ImportReport",
    "RunInProgress",
    "RunSummary",
    "ServerStatus",
    "WriterStatus",
    "default_data_dir",
    "get_run",
    "import_spool",
    "open_catalog",
    "recent_runs",
    "server_status",
    "stop_server",
]
