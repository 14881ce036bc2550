"""What every bridge server shares, whatever its transport: the settings, the threads and
the baton, and starting and stopping.

Threads (see ``docs/decisions/0009-bridge-instrument-thread-owns-the-socket.md``):

* the **instrument thread** is the one that calls ``serve_forever``. Inside
  DigitalMicrograph that is DM's own script thread, the only one allowed to call the DM API.
  It owns the sockets: it receives a request, checks it, runs it on the backend and sends
  the reply itself, so a small call crosses no thread of ours;
* a **standby thread** never calls the backend (except :meth:`Backend.abort`, which only
  raises a flag). When an instrument command has kept the instrument thread away from the
  sockets for :data:`TAKEOVER` seconds, the standby thread takes them over: it answers
  ``hello``, ``status`` and ``abort`` at once, queues instrument commands (bounded: beyond
  ``queue_limit`` waiting commands the reply is ``busy``) and answers malformed requests.
  When the command ends, the instrument thread asks for the sockets back.

The sockets change hands under a lock (the *baton*): only its holder touches them, the
queue and the current job. The transports' servers are :mod:`dm_bridge.server_zmq` and
:mod:`dm_bridge.stream_server`; :class:`dm_bridge.server.Server` builds the chosen one.

Standard library, numpy and pyzmq only, Python 3.8 syntax: this module runs inside
DigitalMicrograph.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple, Union

from .backends.base import Backend
from .keys import HandshakeLog, is_loopback, server_security
from .protocol import encode_error, encode_reply
from .server_requests import RequestHandling, _Job

__all__ = [
    "DEFAULT_MAX_REPLY_BYTES",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_PORT",
    "DEFAULT_QUEUE_LIMIT",
    "DEFAULT_TRANSPORT",
    "TAKEOVER",
    "TRANSPORTS",
    "ServerCore",
    "address_for",
    "transport_for",
]

log = logging.getLogger("dm_bridge.server")

DEFAULT_PORT = 5555
#: instrument commands that may wait behind the running one
DEFAULT_QUEUE_LIMIT = 8
#: requests above this get a ``too_large`` reply (a 100 000-point list is 1.6 MB)
DEFAULT_MAX_REQUEST_BYTES = 64 * 2**20
#: the memory the server may hold for one reply (its arrays); acquisitions whose reply
#: would exceed it are refused with ``too_large`` before they start
DEFAULT_MAX_REPLY_BYTES = 2**30
#: seconds an instrument command may keep the instrument thread away from the socket before
#: the standby thread takes it over (so hello/status/abort wait at most about this long)
TAKEOVER = 0.01

#: the transports a server speaks: ``stream`` (plain TCP, length-framed; loopback only, see
#: :mod:`dm_bridge.stream`) and ``zmq`` (ZeroMQ, with CurveZMQ off loopback)
TRANSPORTS = ("stream", "zmq")
#: ``auto``: ``stream`` on loopback without keys, ``zmq`` with CurveZMQ keys or off loopback.
#: The environment variable ``DM_BRIDGE_TRANSPORT`` (``auto``, ``stream`` or ``zmq``) changes
#: it for the process.
DEFAULT_TRANSPORT = os.environ.get("DM_BRIDGE_TRANSPORT", "auto")

_POLL_MS = 100  # how often an idle loop looks at the stop flag


def _chosen_transport(
    backend: Any = None,
    host: str = "127.0.0.1",
    port: Any = None,
    server_secret_key: Any = None,
    *args: Any,
    transport: Optional[str] = None,
    **kwargs: Any,
) -> str:
    """The transport a :class:`Server` built with these arguments speaks."""
    choice = DEFAULT_TRANSPORT if transport is None else transport
    if choice not in (*TRANSPORTS, "auto"):
        raise ValueError(f"transport must be 'stream', 'zmq' or 'auto', not {choice!r}")
    keys = server_secret_key is not None or kwargs.get("allowed_clients") is not None
    if choice == "auto" or (transport is None and choice == "stream"):
        # (a default of stream is "stream where it may": keys or an open host need zmq)
        return "zmq" if keys or not is_loopback(host) else "stream"
    if choice == "stream" and (keys or not is_loopback(host)):
        raise ValueError(
            f"the stream transport has no authentication: it serves loopback only, without "
            f"keys (host {host!r}{', keys given' if keys else ''}). Off loopback use "
            "transport 'zmq' (--transport zmq) with CurveZMQ keys"
        )
    return choice


def transport_for(
    host: str = "127.0.0.1", keys: bool = False, transport: Optional[str] = None
) -> str:
    """The transport a server on ``host`` (with CurveZMQ ``keys`` or not) speaks:
    ``"stream"`` or ``"zmq"`` (``transport`` and :data:`DEFAULT_TRANSPORT` as for
    :class:`Server`); its address scheme is ``stream://`` or ``tcp://`` respectively.

    Raises:
        ValueError: ``transport="stream"`` with keys or off loopback.
    """
    return _chosen_transport(None, host, None, "keys" if keys else None, transport=transport)


def address_for(host: str, port: int, transport: str) -> str:
    """The address clients use for a server of ``transport`` at ``host:port``."""
    host = f"[{host}]" if ":" in host else host
    return f"{'stream' if transport == 'stream' else 'tcp'}://{host}:{port}"


class ServerCore(RequestHandling):
    """A bridge server, less its transport (see :class:`dm_bridge.server.Server` for the
    arguments); subclasses own the sockets: ``serve_forever``, ``_send``."""

    def __init__(
        self,
        backend: Backend,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        server_secret_key: Optional[Union[str, bytes]] = None,
        allowed_clients: Optional[Union[str, bytes, Iterable[Any]]] = None,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        insecure_keys: bool = False,
        transport: Optional[str] = None,
    ) -> None:
        if queue_limit < 0 or max_request_bytes <= 0 or max_reply_bytes <= 0:
            raise ValueError("queue_limit must be >= 0 and the size limits > 0")
        #: ``"stream"`` or ``"zmq"``
        self.transport = _chosen_transport(
            backend, host, port, server_secret_key, transport=transport
        )
        self._security = server_security(
            host, server_secret_key, allowed_clients, insecure_ok=insecure_keys
        )
        #: whether CurveZMQ is on
        self.curve = self._security is not None
        self.backend = backend
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = int(port)
        self.queue_limit = int(queue_limit)
        self.max_request_bytes = int(max_request_bytes)
        self.max_reply_bytes = int(max_reply_bytes)
        #: the bound address, e.g. ``"tcp://127.0.0.1:5555"`` (set once serving)
        self.endpoint: Optional[str] = None
        #: names this run of the server in every reply (``instance``), so that clients see
        #: a restart, after which the instrument's settings are the backend's defaults again
        self.instance = os.urandom(6).hex()
        # Whoever holds the baton owns the socket, the queue and the current job.
        self._baton = threading.Lock()
        self._queue: Deque[_Job] = deque()
        self._current: Optional[_Job] = None
        # (number, start) of the command the instrument thread is away on, or None; each
        # away period is served by the standby thread at most once (see _standby_loop)
        self._away: Optional[Tuple[int, float]] = None
        self._aways = 0
        self._status: Dict[str, Any] = {}
        self._hello: Dict[str, Any] = {}
        self._served = 0
        self._dropped_gone = 0
        self._started_at = time.time()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._startup_error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None
        self._used = False
        self._handshakes = HandshakeLog(log)

    # ---------------------------------------------------------------- running

    def serve_forever(self, on_ready: Optional[Callable[[ServerCore], None]] = None) -> None:
        raise NotImplementedError

    # the steps every transport's serve_forever takes, in this order

    def _claim(self) -> None:
        """A server serves once: the second serve_forever is an error."""
        with self._baton:
            if self._used:
                raise RuntimeError("a Server serves once; create a new one")
            self._used = True

    def _start_up(self, bind: Callable[[], None]) -> None:
        """Make ``hello`` and the first status, then ``bind`` the transport; whatever fails
        is kept for :meth:`start` to raise, and :meth:`start` is released either way."""
        try:
            self._hello = self._make_hello()
            encode_reply(None, self._hello, 0.0)  # fail now, not at the first hello
            self._snapshot_status()
            bind()
        except BaseException as exc:
            self._startup_error = exc
            raise
        finally:
            self._ready.set()

    def _abort_queued(self) -> None:
        """Answer every queued request ``aborted``: the server is stopping."""
        for job in self._queue:
            self._send(job.envelope, encode_error(job.id, "aborted", "server stopping"))
        self._queue.clear()

    def start(self, timeout: float = 10.0) -> ServerCore:
        """Serve from a background thread (tests, demos); return once bound.

        Inside DigitalMicrograph call :meth:`serve_forever` from DM's thread instead.

        Raises:
            zmq.ZMQError: binding failed.
            TimeoutError: not bound within ``timeout`` seconds.
        """
        self._thread = threading.Thread(
            target=self._serve_in_thread, name="dm-bridge-instrument", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"bridge server did not start within {timeout} s")
        if self._startup_error is not None:
            self._thread.join(timeout)
            raise self._startup_error
        return self

    def _serve_in_thread(self) -> None:
        try:
            self.serve_forever()
        except Exception:
            if self._startup_error is None:
                log.exception("bridge server failed")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: abort the running command, answer queued ones ``aborted``.

        Safe to call from any thread (a signal handler too), and more than once. The
        instrument thread notices within 0.1 s.
        """
        self._stopping.set()
        if self._current is not None:
            self.backend.abort()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> ServerCore:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run_job(self, job: _Job, ask_back: Callable[[], None]) -> None:
        """Run ``job`` (the baton held on entry and on return), lending the baton out while
        the backend works; ``ask_back`` tells the standby thread to give the socket back."""
        self._current = job
        self.backend.clear_abort()
        if job.command.startswith("acquire_"):
            # status during a long command reads this copy (with live_status): the
            # standby thread must not call the backend, which may call DM
            self._snapshot_status()
        self._aways += 1
        self._away = (self._aways, time.monotonic())
        self._baton.release()  # away: the standby thread may take the socket
        try:
            parts = self._execute(job)
        finally:
            if not self._baton.acquire(False):
                ask_back()  # the standby thread has it: ask for it back
                self._baton.acquire()
                self._snapshot_status()  # (it answered status meanwhile: renew)
            self._away = None
            self._current = None
        self._send(job.envelope, parts)

    def _standby(self, serve_while_busy: Callable[[], bool]) -> None:
        """Take the socket over while a command keeps the instrument thread away;
        ``serve_while_busy`` serves it until asked to give it back (True) or stopping."""
        served = 0  # the last away period served: never take the socket twice for one
        try:
            while not self._stopping.wait(TAKEOVER):
                away = self._away
                if away is None or away[0] == served or time.monotonic() - away[1] < TAKEOVER:
                    continue
                if not self._baton.acquire(False):
                    continue
                try:
                    # (The command may have ended meanwhile.) Once the instrument thread has
                    # asked for the socket back it waits for the baton: taking it again for
                    # the same period would leave both waiting for each other.
                    away = self._away
                    if away is not None and away[0] != served and serve_while_busy():
                        served = away[0]
                finally:
                    self._baton.release()
        except Exception:
            log.exception("the bridge's standby thread failed; stopping the server")
            self._stopping.set()
            self.backend.abort()

    def _handle_safely(self, parts: List[Any]) -> bool:
        """:meth:`_handle`, answering ``internal_error`` if it fails (never let one message
        take the server down); whether the request was queued."""
        try:
            return self._handle(parts)
        except Exception as exc:
            log.exception("internal error while handling a request")
            message = f"{type(exc).__name__}: {exc}"
            self._send([parts[0], b""], encode_error(None, "internal_error", message))
            return False
