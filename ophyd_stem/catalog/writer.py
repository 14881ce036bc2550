"""``CatalogWriter``: the RunEngine's catalog callback, decoupled so that it never waits.

On the RunEngine's thread a document is only appended to the spool (the write-ahead log, see
:mod:`ophyd_stem.catalog.spool`) and put on a queue: well under a millisecond, whatever the
catalog is doing. A background thread takes documents off the queue in order and writes them
with ``bluesky_tiled_plugins.TiledWriter``; each one is marked written in the spool once the
catalog has it.

When the catalog goes away the thread keeps its place and retries with exponential backoff,
while the RunEngine carries on spooling. When the catalog is back, the run is written again
from its spool (its partial copy deleted first, so nothing is doubled) and the thread catches
up in order. A finished run is checked against its stop document's event counts before its
spool is deleted. Whatever is still unwritten when the process ends stays in the spool for
:func:`ophyd_stem.catalog.import_spool`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Union

from . import _runs
from ._runs import DocumentCallback
from .settings import CatalogSettings
from .spool import RunSpool, read_documents, spooled_runs

__all__ = ["CatalogWriter", "WriterStatus"]

logger = logging.getLogger(__name__)

_CLOSE = object()
#: a run is given up on (left in the spool) after this many failures that waiting does not cure
MAX_PERMANENT_FAILURES = 3


@dataclass(frozen=True)
class WriterStatus:
    """What the writer is doing, for a progress line or a test.

    Attributes:
        state: ``"idle"`` (all written), ``"writing"``, ``"retrying"`` (the catalog is away or
            refused; backing off) or ``"closed"``.
        uri: the catalog it writes to (None before the first connection).
        received: documents handed over by the RunEngine in this session.
        written: of those, documents the catalog has confirmed.
        queued: documents waiting for the catalog (every one of them is in the spool).
        held: documents of runs given up on after repeated errors; they stay in the spool
            for ``import_spool``.
        spooled_runs: uids of runs with documents in the spool that the catalog lacks.
        last_error: the most recent error, as text (None if there was none).
        last_error_time: when it happened (``time.time()``).
        busy_since: when the catalog call in progress began (a stalled server shows here
            before the client library gives up); None when not in a call.
    """

    state: str
    uri: Optional[str]
    received: int
    written: int
    queued: int
    held: int
    spooled_runs: Tuple[str, ...]
    last_error: Optional[str]
    last_error_time: Optional[float]
    busy_since: Optional[float]


class _Run:
    """Writer-thread bookkeeping of one run."""

    def __init__(self, spool: RunSpool) -> None:
        self.spool = spool
        self.writer: Optional[DocumentCallback] = None
        self.written = 0  # documents the catalog has, counted from the first
        self.needs_rewrite = False  # the catalog's copy can't be trusted: rewrite from spool
        self.permanent_failures = 0
        self.given_up = False


class CatalogWriter:
    """Write Bluesky documents to a Tiled catalog without ever making the RunEngine wait.

    Subscribe it to a RunEngine: ``RE.subscribe(writer)``.

    Args:
        uri: the catalog container's URI, or a callable returning it (asked again on every
            reconnection: the embedded server may come back on another port).
        api_key: the catalog's API key (default: ``$TILED_API_KEY``).
        settings: where the spool lives (``settings.spool_dir``); default data directory.
        batch_size: events (and image frames) ``TiledWriter`` gathers per request. 1 (the
            default) writes each point as it comes, so the catalog is live and every document
            is confirmed as soon as it is written. Larger values write fast scans many times
            faster, but the catalog lags up to ``batch_size`` points behind and a run is only
            confirmed (and its spool deleted) once its stop document is written.
        writer_factory: makes the per-run document writer from a tiled client; default
            ``TiledWriter(client, batch_size=batch_size)``. A writer that holds documents
            back must come with ``batch_size > 1`` so that nothing is marked written early.
        retry_delay: first and longest wait between retries, seconds (doubling in between).
        verify: after each run, check that the catalog has every event (see
            ``_runs.verify_run``) before deleting its spool.
        exit_timeout: at interpreter exit, seconds to let the catalog catch up; what is not
            written by then stays in the spool.
        keep_spool: keep the spool of runs once written (default: delete it).

    Example:
        >>> from bluesky import RunEngine
        >>> import bluesky.plans as bp
        >>> RE = RunEngine()                                          # doctest: +SKIP
        >>> writer = CatalogWriter.to_embedded()                      # doctest: +SKIP
        >>> RE.subscribe(writer)                                      # doctest: +SKIP
        >>> RE(bp.count([eels], num=10), sample="Au/C")               # doctest: +SKIP
        >>> writer.flush(timeout=30)                                  # doctest: +SKIP
        True
        >>> writer.status().written                                   # doctest: +SKIP
        57
    """

    def __init__(
        self,
        uri: Union[str, Callable[[], str]],
        api_key: Optional[str] = None,
        *,
        settings: Optional[CatalogSettings] = None,
        batch_size: int = 1,
        writer_factory: Optional[Callable[[Any], DocumentCallback]] = None,
        retry_delay: Tuple[float, float] = (0.5, 30.0),
        verify: bool = True,
        exit_timeout: float = 10.0,
        keep_spool: bool = False,
    ) -> None:
        self.settings = (settings or CatalogSettings()).ensure_dirs()
        self._uri = uri if callable(uri) else (lambda: uri)
        self._api_key = api_key
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self._confirm_each = batch_size == 1  # else a run is confirmed at its stop only
        self._factory = writer_factory or (
            lambda client: _runs.default_writer_factory(client, batch_size)
        )
        self._retry_delay = retry_delay
        self._verify = verify
        self._exit_timeout = exit_timeout
        self._keep_spool = keep_spool

        # RunEngine side: which run each document belongs to, and the runs' spools.
        self._spools: Dict[str, RunSpool] = {}
        self._run_of_descriptor: Dict[str, str] = {}
        self._run_of_resource: Dict[str, str] = {}
        self._submit_lock = threading.Lock()

        # Writer side.
        self._queue: queue.Queue = queue.Queue()
        self._runs: Dict[str, _Run] = {}  # changed under self._cond (status() reads it)
        self._held_runs: Dict[str, _Run] = {}
        # Every run with a spool not yet fully confirmed, from its start document on.
        self._unconfirmed: Dict[str, RunSpool] = {}
        self._client: Any = None
        self._connected_uri: Optional[str] = None
        self._cond = threading.Condition()
        self._received = 0
        self._written = 0
        self._held = 0
        self._state = "idle"
        self._last_error: Optional[str] = None
        self._last_error_time: Optional[float] = None
        self._busy_since: Optional[float] = None
        self._closing = threading.Event()
        self._closed = False

        self._thread = threading.Thread(
            target=self._run_forever, name="catalog-writer", daemon=True
        )
        self._thread.start()
        atexit.register(self._close_at_exit)

    @classmethod
    def to_embedded(
        cls, settings: Optional[CatalogSettings] = None, **kwargs: Any
    ) -> CatalogWriter:
        """A writer to the embedded catalog of ``settings.data_dir``, started if not running.

        Args:
            settings: the data directory (default: :class:`CatalogSettings` defaults).
            **kwargs: passed on to :class:`CatalogWriter`.
        """
        from .server import EmbeddedServer

        settings = settings or CatalogSettings()
        server = EmbeddedServer.start(settings)
        last = {"uri": server.uri}

        def current_uri() -> str:
            # After a crash the server may be restarted on another port: look it up again.
            running = EmbeddedServer.find(settings)
            if running is not None:
                last["uri"] = running.uri
            return last["uri"]

        return cls(current_uri, server.api_key, settings=settings, **kwargs)

    # -- RunEngine side ------------------------------------------------------------------

    def __call__(self, name: str, doc: dict) -> None:
        """Take one document from the RunEngine: spool it, queue it, return at once.

        Never raises: a problem is logged and shows in :meth:`status`, the run goes on.
        """
        try:
            self._submit(name, doc)
        except Exception as error:  # the RunEngine must never fail because of the catalog
            logger.exception("catalog writer could not take a %r document", name)
            self._record_error(error)

    def _route(self, name: str, doc: dict) -> Optional[str]:
        if name == "start":
            return doc["uid"]
        run_uid = None
        if name in ("descriptor", "resource", "stream_resource", "stop"):
            run_uid = doc.get("run_start")
        elif name in ("event", "event_page", "stream_datum"):
            run_uid = self._run_of_descriptor.get(doc.get("descriptor", ""))
        elif name in ("datum", "datum_page"):
            resource = doc.get("resource")
            if isinstance(resource, list):  # datum_page
                resource = resource[0] if resource else None
            run_uid = self._run_of_resource.get(resource or "")
        if run_uid is None and len(self._spools) == 1:
            # Older documents may omit run_start; a lone open run is the only candidate.
            run_uid = next(iter(self._spools))
        return run_uid

    def _submit(self, name: str, doc: dict) -> None:
        with self._submit_lock:
            run_uid = self._route(name, doc)
            if run_uid is None or (name != "start" and run_uid not in self._spools):
                logger.warning("catalog writer: %r document outside any run; not written", name)
                return
            if name == "start":
                self._spools[run_uid] = RunSpool(self.settings.spool_dir, run_uid)
                with self._cond:
                    self._unconfirmed[run_uid] = self._spools[run_uid]
            elif name == "descriptor":
                self._run_of_descriptor[doc["uid"]] = run_uid
            elif name in ("resource", "stream_resource"):
                self._run_of_resource[doc["uid"]] = run_uid
            spool = self._spools[run_uid]
            index = spool.append(name, doc)
            if name == "stop":
                del self._spools[run_uid]
                for table in (self._run_of_descriptor, self._run_of_resource):
                    for key in [k for k, v in table.items() if v == run_uid]:
                        del table[key]
            with self._cond:
                self._received += 1
        if self._closed:
            logger.warning("catalog writer is closed: %r document kept in the spool only", name)
            return
        self._queue.put((spool, run_uid, index, name, doc))

    # -- public controls -----------------------------------------------------------------

    def status(self) -> WriterStatus:
        """A snapshot of progress and health (cheap; safe from any thread)."""
        with self._cond:
            spooled = tuple(
                uid for uid, spool in self._unconfirmed.items() if spool.written < spool.count
            )
            return WriterStatus(
                state=self._state,
                uri=self._connected_uri,
                received=self._received,
                written=self._written,
                queued=self._received - self._written - self._held,
                held=self._held,
                spooled_runs=spooled,
                last_error=self._last_error,
                last_error_time=self._last_error_time,
                busy_since=self._busy_since,
            )

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until the catalog has every document received so far.

        Args:
            timeout: seconds to wait at most (None: as long as it takes).

        Returns:
            True if everything is written; False on timeout, or if some run was given up on
            (its documents are in the spool, see :meth:`status`).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._received - self._written - self._held > 0 and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is None else min(remaining, 1.0))
            return self._received == self._written

    def close(self, timeout: Optional[float] = 10.0) -> bool:
        """Let the catalog catch up for up to ``timeout`` seconds, then stop the thread.

        Documents not written by then stay in the spool (``import_spool`` writes them
        later). Further documents are spooled but not written.

        Returns:
            True if everything was written.
        """
        if self._closed:
            return self.status().queued == 0 and self.status().held == 0
        return self._close(timeout, join_timeout=1.0)

    def _close(self, timeout: Optional[float], join_timeout: float) -> bool:
        done = self.flush(timeout)
        self._closing.set()
        self._queue.put(_CLOSE)
        self._thread.join(timeout=join_timeout)
        if self._thread.is_alive():
            # Stuck in a request the client library keeps retrying: cut its connection. The
            # spool already holds everything, so the thread need not be waited for long.
            with contextlib.suppress(Exception):
                self._client.context.http_client.close()
            self._thread.join(timeout=2 * join_timeout)
        if not self._thread.is_alive():
            self._drop_client()
        with self._cond:
            self._closed = True
            self._state = "closed"
            self._cond.notify_all()
        with self._cond:
            runs = list(self._runs.values()) + list(self._held_runs.values())
        for run in runs:
            run.spool.close()
        for spool in list(self._spools.values()):
            spool.close()
        atexit.unregister(self._close_at_exit)
        return done

    def _close_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            # At exit the (daemon) thread is abandoned soon: the spool holds what it lacks.
            if not self._closed and not self._close(self._exit_timeout, join_timeout=0.2):
                logger.warning(
                    "catalog writer: %d documents not written; they are in %s "
                    "(write them with import_spool)",
                    self.status().queued + self.status().held,
                    self.settings.spool_dir,
                )

    def leftover_runs(self) -> list:
        """Runs in the spool from earlier sessions (candidates for ``import_spool``)."""
        with self._cond:
            live = set(self._runs) | set(self._held_runs) | set(self._spools)
        return [run for run in spooled_runs(self.settings.spool_dir) if run.run_uid not in live]

    # -- writer thread -------------------------------------------------------------------

    def _record_error(self, error: BaseException) -> None:
        with self._cond:
            self._last_error = f"{error.__class__.__name__}: {error}"
            self._last_error_time = time.time()

    def _set_state(self, state: str) -> None:
        with self._cond:
            self._state = state

    def _run_forever(self) -> None:
        while True:
            item = self._queue.get()
            if item is _CLOSE or self._closing.is_set():
                return
            spool, run_uid, index, name, doc = item
            with self._cond:
                run = self._runs.get(run_uid) or self._held_runs.get(run_uid)
                if run is None:
                    run = self._runs[run_uid] = _Run(spool)
            self._set_state("writing")
            try:
                self._handle(run, run_uid, index, name, doc)
            except Exception:  # pragma: no cover - a bug here must not kill the thread
                logger.exception("catalog writer: unexpected error")
            with self._cond:
                if self._queue.empty() and self._state == "writing":
                    self._state = "idle"
                self._cond.notify_all()

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.context.close()

    def _connected_client(self) -> Any:
        if self._client is None:
            uri = self._uri()
            self._client = _runs.connect(uri, self._api_key)
            with self._cond:
                self._connected_uri = uri
        return self._client

    def _handle(self, run: _Run, run_uid: str, index: int, name: str, doc: dict) -> None:
        if run.given_up:
            with self._cond:
                self._held += 1
            if name == "stop":
                run.spool.close()  # release the lock: import_spool may take the run now
            return
        if index < run.written:
            # Already written while the run was rewritten from its spool.
            return
        delay = self._retry_delay[0]
        failures = 0
        while not self._closing.is_set():
            try:
                with self._cond:
                    self._busy_since = time.time()
                self._write(run, run_uid, index, name, doc)
                if failures:
                    logger.info("catalog writer: the catalog is back; catching up")
                break
            except Exception as error:
                self._record_error(error)
                # One warning per outage, not one per retry.
                log = logger.warning if failures == 0 else logger.debug
                log("catalog writer: %s (%s document of run %s); spooling and retrying",
                    error, name, run_uid)  # fmt: skip
                failures += 1
                run.needs_rewrite = True
                run.writer = None
                if _runs.is_transient(error):
                    self._drop_client()  # reconnect: the server may have moved or restarted
                else:
                    run.permanent_failures += 1
                    if run.permanent_failures >= MAX_PERMANENT_FAILURES:
                        self._give_up(run, run_uid, index)
                        if name == "stop":
                            run.spool.close()
                        return
                self._set_state("retrying")
                self._closing.wait(delay)
                delay = min(delay * 2, self._retry_delay[1])
            finally:
                with self._cond:
                    self._busy_since = None
        if self._closing.is_set():
            return
        self._set_state("writing")
        if name == "stop":
            self._finish(run, run_uid)

    def _write(self, run: _Run, run_uid: str, index: int, name: str, doc: dict) -> None:
        client = self._connected_client()
        if run.needs_rewrite:
            # Start the run over from its spool: the copy in the catalog may lack documents
            # or hold some twice (a request can succeed on the server and still fail here).
            _runs.delete_run(client, run_uid)
            run.writer = self._factory(client)
            for name_, doc_ in read_documents(run.spool.path, 0, index + 1):
                run.writer(name_, doc_)
            if name == "stop" and self._verify:
                _runs.verify_run(client, run_uid, doc)
            run.needs_rewrite = False
        else:
            if run.writer is None:
                run.writer = self._factory(client)
            run.writer(name, doc)
            if name == "stop" and self._verify:
                _runs.verify_run(client, run_uid, doc)
        if not self._confirm_each and name != "stop":
            return  # the writer may still hold it: confirmed with the stop document
        newly = index + 1 - run.written
        run.written = index + 1
        run.spool.mark_written(run.written)
        with self._cond:
            self._written += newly

    def _finish(self, run: _Run, run_uid: str) -> None:
        if self._keep_spool:
            run.spool.close()
        else:
            run.spool.remove()
        with self._cond:
            del self._runs[run_uid]
            del self._unconfirmed[run_uid]

    def _give_up(self, run: _Run, run_uid: str, index: int) -> None:
        logger.error(
            "catalog writer: giving up on run %s after %d errors; its documents stay in %s",
            run_uid, run.permanent_failures, run.spool.path,
        )  # fmt: skip
        run.given_up = True
        with self._cond:
            # this document and every earlier one the catalog lacks
            self._held += index + 1 - run.written
            self._held_runs[run_uid] = self._runs.pop(run_uid)
