"""``import_spool``: write the runs left in the spool into a catalog (the one-word command).

A run lands in the spool and stays there when the catalog was unreachable until its session
ended (or the session was killed). Importing it deletes any partial copy the catalog holds,
writes every document again in order, checks the event counts against the stop document,
and only then deletes the spool files. A run still being written by a live session (its spool
file is locked) is left alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from . import _runs
from .settings import CatalogSettings
from .spool import claim, read_documents, spooled_runs

__all__ = ["ImportReport", "import_spool"]

logger = logging.getLogger(__name__)


@dataclass
class ImportReport:
    """What :func:`import_spool` did, run by run (start uids).

    Attributes:
        imported: runs written to the catalog (spool files deleted).
        incomplete: of those, runs without a stop document (their session died mid-run).
        already_there: runs the catalog already had complete (spool files deleted).
        in_use: runs a live session is still writing (left alone).
        failed: runs that could not be written, with the error (spool files kept).
    """

    imported: List[str] = field(default_factory=list)
    incomplete: List[str] = field(default_factory=list)
    already_there: List[str] = field(default_factory=list)
    in_use: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no run failed (runs in use by a live session are not failures)."""
        return not self.failed

    def __str__(self) -> str:
        parts = [f"{len(self.imported)} run(s) imported"]
        if self.incomplete:
            parts.append(f"{len(self.incomplete)} of them without a stop document")
        if self.already_there:
            parts.append(f"{len(self.already_there)} already in the catalog")
        if self.in_use:
            parts.append(f"{len(self.in_use)} still being written by a running session")
        if self.failed:
            parts.append(f"{len(self.failed)} failed: " + "; ".join(
                f"{uid[:8]}: {error}" for uid, error in self.failed.items()))  # fmt: skip
        return ", ".join(parts)


def import_spool(
    settings: Optional[CatalogSettings] = None,
    uri: Optional[str] = None,
    api_key: Optional[str] = None,
    *,
    verify: bool = True,
    client: Any = None,
) -> ImportReport:
    """Write every run left in the spool of ``settings.data_dir`` into a catalog.

    Args:
        settings: whose spool to import (default data directory).
        uri: the catalog to write to; None: the embedded catalog of the same data directory
            (started if it is not running).
        api_key: the catalog's API key (for a remote ``uri``).
        verify: check each finished run's event counts before deleting its spool.
        client: an already connected catalog client (then ``uri`` is not used).

    Returns:
        An :class:`ImportReport` (``str()`` of it is a one-line summary).

    Raises:
        CatalogUnreachable, CatalogAuthError: the catalog cannot be reached or refuses the key.

    Example:
        >>> report = import_spool()   # doctest: +SKIP
        >>> print(report)             # doctest: +SKIP
        2 run(s) imported
    """
    from .client import open_catalog

    settings = settings or CatalogSettings()
    report = ImportReport()
    runs = spooled_runs(settings.spool_dir)
    if not runs:
        return report
    owned = client is None
    if owned:
        client = open_catalog(uri, api_key, settings)
    try:
        _import_all(client, runs, report, verify)
    finally:
        if owned:
            client.context.close()
    return report


def _import_all(client: Any, runs: list, report: ImportReport, verify: bool) -> None:
    for run in runs:
        with claim(run) as ours:
            if not ours:
                report.in_use.append(run.run_uid)
                continue
            try:
                outcome = _import_one(client, run.path, run.run_uid, verify)
            except Exception as error:
                if _runs.is_transient(error) or isinstance(error, _runs.CatalogAuthError):
                    raise  # the catalog itself is the problem: stop, keep every spool file
                logger.exception("import_spool: run %s failed", run.run_uid)
                report.failed[run.run_uid] = f"{error.__class__.__name__}: {error}"
                continue
        for path in (run.path, run.state_path):
            path.unlink(missing_ok=True)
        if outcome == "already_there":
            report.already_there.append(run.run_uid)
        else:
            report.imported.append(run.run_uid)
            if outcome == "incomplete":
                report.incomplete.append(run.run_uid)


def _import_one(client: Any, path, run_uid: str, verify: bool) -> str:
    documents = list(read_documents(path))
    if not documents or documents[0][0] != "start":
        raise _runs.CatalogError(f"spool file {path} does not begin with a start document")
    stop = documents[-1][1] if documents[-1][0] == "stop" else None
    if stop is not None and _runs.find_run(client, run_uid) is not None:
        try:
            _runs.verify_run(client, run_uid, stop)
        except _runs.CatalogMismatch:
            pass  # a partial copy: written again below
        else:
            return "already_there"
    _runs.delete_run(client, run_uid)
    # Big batches (whatever an unfinished run still holds back is written at its end).
    _runs.write_documents(client, documents)
    if stop is None:
        return "incomplete"
    if verify:
        _runs.verify_run(client, run_uid, stop)
    return "imported"
