"""``import_spool``: write the runs left in the spool into a catalog (the one-word command).

A run lands in the spool and stays there when the catalog was unreachable until its session
ended (or the session was killed). Importing it deletes any partial copy the catalog holds,
writes every document again in order, checks the event counts against the stop document,
and only then deletes the spool files. A run still being written by a live session (its spool
file is locked) is left alone.

A run the catalog refuses while it answers (a spool written by an older version of a plan,
in a layout the catalog cannot store) is reported with its file and the reason, its partial
copy is deleted, its spool files are kept, and the import goes on with the other runs; only
a catalog that stops answering (or refuses the API key) stops the import.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

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
        failed: runs that could not be written: the spool file and why (spool files kept,
            no partial copy left in the catalog).
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
            parts.append(f"{len(self.failed)} failed (kept in the spool):")
        return ", ".join(parts) + "".join(f"\n  {error}" for error in self.failed.values())


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
        # the embedded catalog keeps its event tables in SQLite: a run it cannot store is
        # said so at once, rather than after tiled has retried the refusal for half a minute
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
            documents: List[Tuple[str, dict]] = []
            try:
                documents = list(read_documents(run.path))
                outcome = _import_one(client, run.path, run.run_uid, verify, documents)
            except Exception as error:
                if isinstance(error, _runs.CatalogAuthError) or (
                    _runs.is_transient(error) and not _answers(client)
                ):
                    raise  # the catalog itself is the problem: stop, keep every spool file
                # this run's problem (the catalog answers): say which file and why, leave no
                # half-written copy, keep its spool files, and go on with the others
                logger.debug("import_spool: run %s failed", run.run_uid, exc_info=True)
                report.failed[run.run_uid] = _why(run.path, documents, error)
                with contextlib.suppress(Exception):
                    _runs.delete_run(client, run.run_uid)
                continue
        for path in (run.path, run.state_path):
            path.unlink(missing_ok=True)
        if outcome == "already_there":
            report.already_there.append(run.run_uid)
        else:
            report.imported.append(run.run_uid)
            if outcome == "incomplete":
                report.incomplete.append(run.run_uid)


def _answers(client: Any) -> bool:
    """Whether the catalog answers a plain request now: twice at most, since a connection
    the server dropped after its refusal fails once (tiled's own requests retry a server
    that is away for most of a minute, and the write just did)."""
    for attempt in range(2):
        try:
            response = client.context.http_client.get(client.item["links"]["self"], timeout=10.0)
        except Exception:
            if attempt:
                return False
            time.sleep(0.5)
            continue
        return response.status_code < 500
    return False


def _why(path: Path, documents: List[Tuple[str, dict]], error: BaseException) -> str:
    """Which spool file failed and why, in a microscopist's words."""
    start = documents[0][1] if documents and documents[0][0] == "start" else {}
    run = f"scan {start.get('scan_id')}, {start.get('plan_name')}" if start else "a run"
    what = _runs.describe(error)
    if isinstance(error, _runs.CatalogError) or not documents:
        return what if str(path) in what else f"spool file {path} ({run}): {what}"
    with contextlib.suppress(AttributeError, RuntimeError):  # no request: not HTTP
        what += f" to {error.request.method} {Path(error.request.url.path).name}"
    return f"spool file {path} ({run}): the catalog refused it ({what})"


def _import_one(
    client: Any, path: Path, run_uid: str, verify: bool, documents: List[Tuple[str, dict]]
) -> str:
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
