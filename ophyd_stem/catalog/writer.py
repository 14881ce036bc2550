"""``CatalogWriter``: the RunEngine's catalog callback, decoupled so that it never waits.

On the RunEngine's thread a document is only appended to the spool (the write-ahead log, see
:mod:`ophyd_stem.catalog.spool`) and put on a queue: well under a millisecond, whatever the
catalog is doing. A background thread takes documents off the queue in order and writes them
with bluesky-tiled-plugins' TiledWriter, in batches: documents that make nodes (start,
descriptors, resources, stop) at once, events and image frames gathered until ``batch_size``
of them wait or the oldest has waited ``batch_seconds``, whichever comes first. So a small run
is in the catalog within about a second, and a fast one never builds a backlog: when the
catalog is slower than the RunEngine, batches simply grow (up to ``batch_size``). Each
document is marked written in the spool once the catalog has it.

When the catalog goes away the thread keeps its place and retries with exponential backoff,
while the RunEngine carries on spooling. When the catalog is back (the embedded one is
restarted by the writer itself), the run is written again from its spool (its partial copy
deleted first, so nothing is doubled) and the thread catches up in order. A finished run is
checked against its stop document's event counts before its spool is deleted. Whatever is
still unwritten when the process ends stays in the spool for
:func:`ophyd_stem.catalog.import_spool`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Union

from . import _runs
from ._runs import DocumentCallback
from ._writer_thread import _CLOSE, _FLUSH, WriterThread, _events_in, _Run
from .settings import CatalogSettings
from .spool import RunSpool, spooled_runs

__all__ = ["CatalogWriter", "WriterStatus"]


def _flush_at_exit(writer: CatalogWriter) -> None:
    """Close ``writer`` when the interpreter exits, *before* ``concurrent.futures`` stops
    its executors. A plain ``atexit`` handler runs after that (``concurrent.futures``
    registers its own stop with ``threading._register_atexit``, which runs first), so the
    last documents of a session that ended right after a run (``ophyd-stem console -- -c``,
    ``exit`` at once) failed with 'cannot schedule new futures after interpreter shutdown'
    and the run stayed in the spool. Handlers registered there run last-registered first,
    so this one, registered after ``concurrent.futures`` was imported, runs before its.
    Held by a weak reference: a writer closed and dropped is not kept alive to the end.
    """
    ref = weakref.ref(writer)

    def close() -> None:
        alive = ref()
        if alive is not None:
            alive._close_at_exit()

    import concurrent.futures.thread  # noqa: F401  (its exit handler first, then ours)

    register = getattr(threading, "_register_atexit", None)
    try:
        if register is None:
            raise RuntimeError("no threading._register_atexit in this Python")
        register(close)
    except RuntimeError:  # the interpreter is already shutting down, or an older Python
        atexit.register(close)


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriterStatus:
    """What the writer is doing, for a progress line or a test.

    Attributes:
        state: ``"idle"`` (all written), ``"writing"``, ``"retrying"`` (the catalog is away or
            refused; backing off) or ``"closed"``.
        uri: the catalog it writes to (None before the first connection).
        received: documents handed over by the RunEngine in this session.
        written: of those, documents the catalog has confirmed.
        queued: documents waiting for the catalog (every one of them is in the spool),
            including those gathered in a batch not yet written.
        held: documents of runs given up on after repeated errors; they stay in the spool
            for ``import_spool``.
        spooled_runs: uids of runs with documents in the spool that the catalog lacks.
        last_error: the most recent error, as text (None if there was none).
        last_error_time: when it happened (``time.time()``).
        busy_since: when the catalog call in progress began (a stalled server shows here
            before the client library gives up); None when not in a call.
        received_events: events (rows of event pages included) handed over in this session.
        written_events: of those, events the catalog has confirmed.
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
    received_events: int = 0
    written_events: int = 0


class CatalogWriter(WriterThread):
    """Write Bluesky documents to a Tiled catalog without ever making the RunEngine wait.

    Subscribe it to a RunEngine: ``RE.subscribe(writer)``.

    Args:
        uri: the catalog container's URI, or a callable returning it (asked again on every
            reconnection: the embedded server may come back on another port).
        api_key: the catalog's API key (default: ``$TILED_API_KEY``).
        settings: where the spool lives (``settings.spool_dir``); default data directory.
        batch_size: events and image frames gathered before a batch is written (an event
            page counts as its events). A backlog never grows past one batch per stream.
        batch_seconds: longest time an event waits in a batch, seconds: the catalog is at
            most about this far behind a RunEngine it keeps up with.
        writer_factory: makes the per-run document writer from a tiled client; default
            :class:`~ophyd_stem.catalog._batching.BatchingRunWriter`. A writer with
            ``pending`` and ``flush()`` is batched as above; any other callable is taken to
            write each document as it comes when ``batch_size`` is 1 (e.g.
            ``TiledWriter(client, batch_size=1)``, the writer before batching), else to hold
            documents until the stop document.
        retry_delay: first and longest wait between retries, seconds (doubling in between).
        verify: after each run, check that the catalog has every event (see
            ``_runs.verify_run``) before deleting its spool.
        exit_timeout: at interpreter exit, seconds to let the catalog catch up; what is not
            written by then stays in the spool.
        keep_spool: keep the spool of runs once written (default: delete it).
        keepalive: called from the writer's thread every ``keepalive_period`` seconds while it
            has nothing to write (the embedded server stops after a long idle time; an open
            session keeps it up this way).
        keepalive_period: seconds between keepalive calls.

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
        batch_size: int = 500,
        batch_seconds: float = 0.5,
        writer_factory: Optional[Callable[[Any], DocumentCallback]] = None,
        retry_delay: Tuple[float, float] = (0.5, 30.0),
        verify: bool = True,
        exit_timeout: float = 10.0,
        keep_spool: bool = False,
        keepalive: Optional[Callable[[], Any]] = None,
        keepalive_period: float = 120.0,
    ) -> None:
        self.settings = (settings or CatalogSettings()).ensure_dirs()
        self._uri = uri if callable(uri) else (lambda: uri)
        self._api_key = api_key
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if not batch_seconds >= 0:
            raise ValueError(f"batch_seconds must be >= 0, not {batch_seconds}")
        self.batch_size = int(batch_size)
        self.batch_seconds = float(batch_seconds)
        self._factory = writer_factory or _runs.batching_writer_factory
        self._retry_delay = retry_delay
        self._verify = verify
        self._exit_timeout = exit_timeout
        self._keep_spool = keep_spool
        self._keepalive = keepalive
        self._keepalive_period = keepalive_period

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
        self._received_events = 0
        self._written_events = 0
        self._state = "idle"
        self._last_error: Optional[str] = None
        self._last_error_time: Optional[float] = None
        self._busy_since: Optional[float] = None
        self._closing = threading.Event()
        self._closed = False

        # bluesky-tiled-plugins imported here, in the thread that makes the writer, before
        # the writer's own thread starts: imported there while this thread goes on importing
        # (a console's start, a session opening the catalog: tiled loads the run clients
        # from entry points), two threads each inside a module the other needs left
        # 'CatalogOfBlueskyRuns' partially initialized, and the writer refused every run
        # (seen in full test runs, test_console_starts_and_counts_the_eels_camera). A
        # failure here is left to the first document, which tries again.
        with contextlib.suppress(Exception):
            _runs.import_bluesky_tiled_plugins()

        self._thread = threading.Thread(
            target=self._run_forever, name="catalog-writer", daemon=True
        )
        self._thread.start()
        _flush_at_exit(self)

    @classmethod
    def to_embedded(
        cls, settings: Optional[CatalogSettings] = None, **kwargs: Any
    ) -> CatalogWriter:
        """A writer to the embedded catalog of ``settings.data_dir``, started if not running.

        If the server dies (or stops after a long idle time), the writer starts it again
        on its next attempt, then rewrites the run in progress from the spool.

        Args:
            settings: the data directory (default: :class:`CatalogSettings` defaults).
            **kwargs: passed on to :class:`CatalogWriter`.
        """
        from .server import EmbeddedServer

        settings = settings or CatalogSettings()
        server = EmbeddedServer.start(settings)
        made: list = []  # the writer, once made (its thread may ask for the uri before)

        def current_uri() -> str:
            # The server may have died or stopped when idle: reuse or restart it (it may
            # come back on another port). Never once the writer is closing: at a process's
            # end its server is stopped right after, and a writer thread still connecting
            # (its warm-up) would start a new one that outlives the process
            if made and made[0]._closing.is_set():
                raise _runs.CatalogUnreachable(
                    "the catalog writer is closing: its embedded server is not started again"
                )
            try:
                return EmbeddedServer.start(settings).uri
            except Exception as error:
                raise _runs.CatalogUnreachable(
                    f"the embedded catalog server could not be restarted: {error}"
                ) from None

        def keepalive() -> None:
            EmbeddedServer.find(settings)  # a request: the server is in use, not idle

        kwargs.setdefault("keepalive", keepalive)
        writer = cls(current_uri, server.api_key, settings=settings, **kwargs)
        made.append(writer)
        return writer

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
            events = _events_in(name, doc)
            with self._cond:
                self._received += 1
                self._received_events += events
        if self._closed:
            logger.warning("catalog writer is closed: %r document kept in the spool only", name)
            return
        self._queue.put((spool, run_uid, index, name, doc, events))

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
                received_events=self._received_events,
                written_events=self._written_events,
            )

    def flush(
        self,
        timeout: Optional[float] = None,
        progress: Optional[Callable[[WriterStatus], Any]] = None,
    ) -> bool:
        """Wait until the catalog has every document received so far.

        Batches held back are written at once rather than when their time is up.

        Args:
            timeout: seconds to wait at most (None: as long as it takes).
            progress: called with the :meth:`status` about once a second while waiting
                (for a progress line).

        Returns:
            True if everything is written; False on timeout, or if some run was given up on
            (its documents are in the spool, see :meth:`status`).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._closed:
            self._queue.put(_FLUSH)
        while True:
            if progress is not None:
                progress(self.status())
            with self._cond:
                if not (self._received - self._written - self._held > 0 and not self._closed):
                    return self._received == self._written
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(1.0 if remaining is None else min(remaining, 1.0))

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
