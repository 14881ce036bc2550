"""The catalog writer's background thread: batches, retries, rewrites from the spool.

:class:`WriterThread` is the half of :class:`~ophyd_stem.catalog.CatalogWriter` that runs on
its own thread (the other half takes documents from the RunEngine). It takes documents off
the queue in order and hands them to a per-run writer (TiledWriter's, batching: see
:mod:`ophyd_stem.catalog._batching`); events and frames are written when ``batch_size`` of
them wait or the oldest has waited ``batch_seconds``. A failure that waiting cures (the
catalog is away) is retried with backoff; then the run is written again from its spool, so
the catalog holds nothing twice. Each document is confirmed in the spool once the catalog
has it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from . import _runs
from ._runs import DocumentCallback
from .spool import RunSpool, read_documents

logger = logging.getLogger("ophyd_stem.catalog.writer")

_CLOSE = object()
_FLUSH = object()  # "write what is held back now" (flush() puts it on the queue)
#: a run is given up on (left in the spool) after this many failures that waiting does not cure
MAX_PERMANENT_FAILURES = 3


class _Run:
    """Writer-thread bookkeeping of one run."""

    def __init__(self, spool: RunSpool) -> None:
        self.spool = spool
        self.writer: Optional[DocumentCallback] = None
        self.fed = 0  # documents handed to the writer, counted from the first
        self.written = 0  # documents the catalog has, counted from the first
        self.events: List[int] = []  # events per document, by index
        self.pending_since: Optional[float] = None  # when the batch held back began
        self.needs_rewrite = False  # the catalog's copy can't be trusted: rewrite from spool
        self.permanent_failures = 0
        self.given_up = False


def _events_in(name: str, doc: dict) -> int:
    if name == "event":
        return 1
    if name == "event_page":
        return len(doc.get("seq_num", ()))
    return 0


class WriterThread:
    """The writing half of :class:`~ophyd_stem.catalog.CatalogWriter` (a mixin: it uses the
    state that ``CatalogWriter.__init__`` sets up: the queue, the per-run bookkeeping under
    ``_cond``, the counters, the factory and the batch and retry settings)."""

    _queue: queue.Queue
    _cond: threading.Condition
    _closing: threading.Event
    _runs: Dict[str, _Run]
    _held_runs: Dict[str, _Run]
    _unconfirmed: Dict[str, RunSpool]
    _factory: Callable[[Any], DocumentCallback]
    _uri: Callable[[], str]
    _api_key: Optional[str]
    _client: Any
    _connected_uri: Optional[str]
    _keepalive: Optional[Callable[[], Any]]
    _keepalive_period: float
    _retry_delay: Any
    _verify: bool
    _keep_spool: bool
    batch_size: int
    batch_seconds: float

    def _record_error(self, error: BaseException) -> None:
        with self._cond:
            self._last_error = f"{error.__class__.__name__}: {error}"
            self._last_error_time = time.time()

    def _set_state(self, state: str) -> None:
        with self._cond:
            self._state = state

    def _next_deadline(self) -> Optional[float]:
        """Seconds until the oldest held-back batch is due (None: nothing held back)."""
        with self._cond:
            since = [run.pending_since for run in self._runs.values() if run.pending_since]
        if not since:
            return None
        return max(0.0, min(since) + self.batch_seconds - time.monotonic())

    def _warm_up(self) -> None:
        """Import the writer and connect now, while the session sets up, rather than when
        the first run starts (importing bluesky-tiled-plugins takes seconds on a busy
        machine, and the catalog would start that far behind). A failure is left to the
        first document, which retries."""
        with contextlib.suppress(Exception):
            _runs.import_bluesky_tiled_plugins()

            with self._cond:
                self._busy_since = time.time()
            try:
                self._connected_client()
            finally:
                with self._cond:
                    self._busy_since = None

    def _run_forever(self) -> None:
        self._warm_up()
        last_activity = time.monotonic()
        while True:
            due = self._next_deadline()
            wait = due
            if wait is None and self._keepalive is not None:
                wait = max(0.0, last_activity + self._keepalive_period - time.monotonic())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                if due is not None:
                    self._flush_runs(due_only=True)
                elif self._keepalive is not None:
                    with contextlib.suppress(Exception):
                        self._keepalive()
                last_activity = time.monotonic()
                self._idle_if_done()
                continue
            last_activity = time.monotonic()
            if item is _CLOSE or self._closing.is_set():
                self._drop_client()  # the thread's own connection, however late it came
                return
            if item is _FLUSH:
                self._flush_runs(due_only=False)
                self._idle_if_done()
                continue
            spool, run_uid, index, name, doc, events = item
            with self._cond:
                run = self._runs.get(run_uid) or self._held_runs.get(run_uid)
                if run is None:
                    run = self._runs[run_uid] = _Run(spool)
            self._set_state("writing")
            try:
                self._handle(run, run_uid, index, name, doc, events)
            except Exception:  # pragma: no cover - a bug here must not kill the thread
                logger.exception("catalog writer: unexpected error")
            self._idle_if_done()

    def _idle_if_done(self) -> None:
        with self._cond:
            settled = all(run.pending_since is None for run in self._runs.values())
            if self._queue.empty() and self._state == "writing" and settled:
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

    def _handle(
        self, run: _Run, run_uid: str, index: int, name: str, doc: dict, events: int
    ) -> None:
        if index == len(run.events):
            run.events.append(events)
        if run.given_up:
            with self._cond:
                self._held += 1
            if name == "stop":
                run.spool.close()  # release the lock: import_spool may take the run now
            return
        if index < run.fed:
            # Already written while the run was rewritten from its spool.
            return
        if not self._attempt(run, run_uid, index, name, lambda: self._write(run, index, name, doc)):
            return
        if name == "stop":
            self._finish(run, run_uid)
        elif self._pending(run) >= self.batch_size:
            self._flush_run(run, run_uid)

    def _flush_runs(self, due_only: bool) -> None:
        now = time.monotonic()
        with self._cond:
            runs = list(self._runs.items())
        for run_uid, run in runs:
            if run.pending_since is None or run.given_up:
                continue
            if due_only and run.pending_since + self.batch_seconds > now:
                continue
            self._set_state("writing")
            self._flush_run(run, run_uid)

    def _flush_run(self, run: _Run, run_uid: str) -> None:
        self._attempt(run, run_uid, run.fed - 1, "batch", lambda: self._write_batch(run))

    def _attempt(
        self, run: _Run, run_uid: str, index: int, name: str, action: Callable[[], None]
    ) -> bool:
        """Run ``action`` until it succeeds, retrying while the catalog is away; False when
        the writer is closing or the run was given up on."""
        delay = self._retry_delay[0]
        failures = 0
        while not self._closing.is_set():
            try:
                with self._cond:
                    self._busy_since = time.time()
                action()
                if failures:
                    logger.info("catalog writer: the catalog is back; catching up")
                return True
            except Exception as error:
                self._record_error(error)
                # One warning per outage, not one per retry.
                log = logger.warning if failures == 0 else logger.debug
                if _runs.is_transient(error):
                    log("catalog writer: %s; run %s goes on, its documents are safe in the "
                        "local spool and are sent when the catalog answers",
                        _runs.describe(error), run_uid[:8])  # fmt: skip
                else:
                    log("catalog writer: the catalog refused a %s document of run %s (%s); it "
                        "is safe in the local spool; trying again (at most %d times)",
                        name, run_uid[:8], _runs.describe(error),
                        MAX_PERMANENT_FAILURES)  # fmt: skip
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
                        return False
                self._set_state("retrying")
                self._closing.wait(delay)
                delay = min(delay * 2, self._retry_delay[1])
            finally:
                with self._cond:
                    self._busy_since = None
        return False

    @staticmethod
    def _pending(run: _Run) -> int:
        return int(getattr(run.writer, "pending", 0) or 0)

    def _rewrite(self, run: _Run, upto: int) -> None:
        """Start the run over from its spool, documents ``0 .. upto - 1``: the copy in the
        catalog may lack documents or hold some twice (a request can succeed on the server
        and still fail here)."""
        client = self._connected_client()
        _runs.delete_run(client, run.spool.run_uid)
        run.writer = self._factory(client)
        flush = getattr(run.writer, "flush", None)
        for name_, doc_ in read_documents(run.spool.path, 0, upto):
            run.writer(name_, doc_)
            if flush is not None and self._pending(run) >= self.batch_size:
                flush()
        run.fed = upto
        run.needs_rewrite = False

    def _write(self, run: _Run, index: int, name: str, doc: dict) -> None:
        client = self._connected_client()
        if run.needs_rewrite:
            self._rewrite(run, index + 1)
        else:
            if run.writer is None:
                run.writer = self._factory(client)
            run.writer(name, doc)
            run.fed = index + 1
        if name == "stop" and self._verify:
            _runs.verify_run(client, run.spool.run_uid, doc)
        self._after_write(run, name)

    def _write_batch(self, run: _Run) -> None:
        if run.needs_rewrite:
            self._rewrite(run, run.fed)
        flush = getattr(run.writer, "flush", None)
        if flush is not None:
            flush()
        self._after_write(run, "batch")

    def _after_write(self, run: _Run, name: str) -> None:
        """Confirm what the catalog now has, and time the batch held back."""
        if hasattr(run.writer, "pending"):
            held_back = self._pending(run) > 0
        else:
            # A writer that says nothing about batches: it writes each document as it comes
            # when batch_size is 1, else everything at the stop document.
            held_back = self.batch_size > 1 and name != "stop"
        if held_back:
            if run.pending_since is None and hasattr(run.writer, "pending"):
                run.pending_since = time.monotonic()
            return
        run.pending_since = None
        self._confirm(run, run.fed)

    def _confirm(self, run: _Run, upto: int) -> None:
        if upto <= run.written:
            return
        newly, events = upto - run.written, sum(run.events[run.written : upto])
        run.written = upto
        run.spool.mark_written(upto)
        with self._cond:
            self._written += newly
            self._written_events += events

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
            "catalog writer: the catalog refused run %s %d times; its documents stay safe in "
            "%s; once the cause is fixed, `ophyd-stem import-spool` writes them",
            run_uid[:8], run.permanent_failures, run.spool.path,
        )  # fmt: skip
        run.given_up = True
        run.pending_since = None
        with self._cond:
            # this document and every earlier one the catalog lacks
            self._held += index + 1 - run.written
            self._held_runs[run_uid] = self._runs.pop(run_uid)
