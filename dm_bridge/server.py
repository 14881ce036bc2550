"""The DM bridge server: one instrument, many clients, one instrument command at a time.

Threads (see ``docs/decisions/0009-bridge-instrument-thread-owns-the-socket.md``):

* the **instrument thread** is the one that calls :meth:`Server.serve_forever`. Inside
  DigitalMicrograph that is DM's own script thread, the only one allowed to call the DM API.
  It owns the ZeroMQ ROUTER socket: it receives a request, checks it, runs it on the backend
  and sends the reply itself, so a small call crosses no thread of ours (the only hand-offs
  are libzmq's own I/O threads);
* a **standby thread** never calls the backend (except :meth:`Backend.abort`, which only
  raises a flag). When an instrument command has kept the instrument thread away from the
  socket for :data:`TAKEOVER` seconds, the standby thread takes the socket over: it answers
  ``hello``, ``status`` and ``abort`` at once, queues instrument commands (bounded: beyond
  ``queue_limit`` waiting commands the reply is ``busy``) and answers malformed requests.
  When the command ends, the instrument thread asks for the socket back.

The socket changes hands under a lock (the *baton*): ZeroMQ sockets may move between
threads across a full memory barrier, which a lock provides, and only the baton's holder
touches the socket. ``abort`` interrupts the running acquisition (its reply is ``aborted``)
and drops every queued command (each replied ``aborted``). Queued work of a client whose
connection has closed is dropped unexecuted (the socket monitor reports the disconnection).

What is done with each request (checks, the immediate answers, the queue, running a command,
replies and errors) is :mod:`dm_bridge.server_requests`; this module owns the socket and the
threads.

Security: the server binds 127.0.0.1 by default. Any other address needs CurveZMQ (a server
key pair and the public keys of the allowed clients); without them the server refuses to start.

Standard library, numpy and pyzmq only, Python 3.8 syntax: this module runs inside
DigitalMicrograph.

Example:
    >>> from dm_bridge.backends.minimal import MinimalBackend
    >>> server = Server(MinimalBackend(), port=0).start()   # background thread, free port
    >>> server.endpoint.startswith("tcp://127.0.0.1:")
    True
    >>> server.stop()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple, Union

import zmq
from zmq.utils.monitor import parse_monitor_message

from . import transport
from .backends.base import Backend
from .keys import HandshakeLog, is_loopback, server_security, start_authenticator
from .protocol import encode_error, encode_reply
from .server_requests import RequestHandling, _Job

__all__ = [
    "DEFAULT_MAX_REPLY_BYTES",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_PORT",
    "DEFAULT_QUEUE_LIMIT",
    "TAKEOVER",
    "Server",
    "is_loopback",
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

_POLL_MS = 100  # how often an idle loop looks at the stop flag
_DRAIN = 0.05  # seconds between drains of the connection events while requests keep coming
_BATCH = 64  # messages handled per wake-up, so that a flood cannot starve the instrument
# (CLOSED: the listening socket, when the server stops; see Server._release_port)
_MONITORED = (
    zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_CLOSED
)
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
)


class Server(RequestHandling):
    """Serve one backend over ZeroMQ.

    Args:
        backend: the instrument.
        host: address to bind; anything but loopback requires CurveZMQ keys.
        port: TCP port; 0 picks a free one (read it back from :attr:`endpoint`).
        server_secret_key: the server's ``.key_secret`` file (or z85 secret key). Turns
            CurveZMQ on, also on loopback.
        allowed_clients: directory of client public ``.key`` files, one file, or a list of
            z85 public keys/files; required with ``server_secret_key``.
        queue_limit: instrument commands that may wait behind the running one; beyond it
            the reply is ``busy``. 0 means "busy whenever the instrument is".
        max_request_bytes: requests above this get ``too_large``; ZeroMQ drops the connection
            of a peer sending one frame above twice this (``ZMQ_MAXMSGSIZE``).
        max_reply_bytes: the memory the server may hold for one reply: acquisitions whose
            reply would exceed it get ``too_large`` (with the limit) before they start.
        insecure_keys: start even if the secret key is readable by other users or the
            allow-list folder is writable by them (logged as an error instead of refused).

    Raises:
        ValueError: a non-loopback ``host`` without keys, half a key configuration, or key
            files other users could read or change.
    """

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
    ) -> None:
        if queue_limit < 0 or max_request_bytes <= 0 or max_reply_bytes <= 0:
            raise ValueError("queue_limit must be >= 0 and the size limits > 0")
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
        self._router: Any = None
        self._monitor: Any = None
        self._handshakes = HandshakeLog(log)
        self._handback = f"inproc://dm-bridge-handback-{id(self):x}"

    # ---------------------------------------------------------------- running

    def serve_forever(self, on_ready: Optional[Callable[[Server], None]] = None) -> None:
        """Serve until :meth:`stop`; run instrument commands in the calling thread.

        Args:
            on_ready: called (in this thread) once the socket is bound, e.g. to print
                :attr:`endpoint`.

        Raises:
            zmq.ZMQError: the address cannot be bound (port in use, bad host).
            RuntimeError: the server was already started once.
        """
        with self._baton:
            if self._used:
                raise RuntimeError("a Server serves once; create a new one")
            self._used = True
        # One context per process is ZeroMQ's idiom; in-process clients then share its I/O
        # thread, one wake-up less per message. A CurveZMQ server gets its own: the ZAP
        # handler is per context, and another server in the process may have one.
        own = self.curve
        context = zmq.Context() if own else zmq.Context.instance()
        authenticator = None
        standby = None
        self._baton.acquire()
        try:
            try:
                self._hello = self._make_hello()
                encode_reply(None, self._hello, 0.0)  # fail now, not at the first hello
                self._snapshot_status()
                if self._security is not None:
                    # The ZAP handler must run before the socket binds, or CURVE would admit
                    # anyone.
                    authenticator = start_authenticator(
                        context, self._security.allowed, self._handshakes
                    )
                self._bind(context)
            except BaseException as exc:
                self._startup_error = exc
                raise
            finally:
                self._ready.set()
            handback = context.socket(zmq.PUSH)
            handback.connect(self._handback)
            standby = threading.Thread(
                target=self._standby_loop, args=(context,), name="dm-bridge-standby", daemon=True
            )
            standby.start()
            log.info(
                "serving %s backend at %s (CurveZMQ %s, %d allowed client key(s))",
                self.backend.kind,
                self.endpoint,
                "on" if self.curve else "off, loopback only",
                len(self._security.allowed) if self._security else 0,
            )
            try:
                if on_ready is not None:
                    on_ready(self)
                self._instrument_loop(handback)
            finally:
                self._stopping.set()
                for job in self._queue:
                    self._send(job.envelope, encode_error(job.id, "aborted", "server stopping"))
                self._queue.clear()
                handback.close(linger=0)
        finally:
            self._stopping.set()
            self._baton.release()
            if standby is not None:
                standby.join(5.0)
            with self._baton:
                if self._monitor is not None:
                    self._release_port()
                    # Stop the monitor before closing its receiving end: stopping sends a
                    # last event, and a send to a closed PAIR can block for ever.
                    self._router.disable_monitor()
                    self._monitor.close(linger=0)
                if self._router is not None:
                    self._router.close(linger=1000)
            if authenticator is not None:
                authenticator.stop()
            if own:
                context.destroy(linger=0)
            log.info("server at %s stopped", self.endpoint)

    def _bind(self, context: zmq.Context) -> None:
        router = context.socket(zmq.ROUTER)
        try:
            router.setsockopt(zmq.LINGER, 1000)
            router.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_request_bytes + 2**20)
            # The idle instrument thread waits in a receive (see _instrument_loop); the
            # standby thread and _read only receive what a poll or EVENTS said is there.
            router.setsockopt(zmq.RCVTIMEO, _POLL_MS)
            if ":" in self.host:
                router.setsockopt(zmq.IPV6, 1)
            if self._security is not None:
                router.curve_publickey = self._security.public
                router.curve_secretkey = self._security.secret
                router.curve_server = True
            host = f"[{self.host}]" if ":" in self.host else self.host
            router.bind(f"tcp://{host}:{self.port if self.port else '*'}")
        except BaseException:
            router.close(linger=0)
            raise
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._router = router
        events = _MONITORED | (
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            if self.curve
            else 0
        )
        self._monitor = router.get_monitor_socket(events)

    def _release_port(self) -> None:
        """Close the listening socket and wait (at most 1 s) until libzmq says it is closed,
        so that a server started on the same port right after this one stops can bind
        (closing a socket of a shared context frees its port later, in libzmq's threads)."""
        try:
            self._router.unbind(self.endpoint)
        except zmq.ZMQError:
            return
        deadline = time.monotonic() + 1.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._monitor.poll(int(left * 1000) + 1):
                log.warning("the listening socket at %s did not close within 1 s", self.endpoint)
                return
            if parse_monitor_message(self._monitor.recv_multipart())["event"] == zmq.EVENT_CLOSED:
                return

    def start(self, timeout: float = 10.0) -> Server:
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

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---------------------------------------------------------------- instrument thread

    def _instrument_loop(self, handback: zmq.Socket) -> None:
        """Run while holding the baton; lend it out while a command runs.

        Idle, the thread waits in a receive on the router rather than in ``zmq_poll``: libzmq
        asks the kernel once per wait instead of six times (``zmq_poll`` on the router and
        the monitor polls without waiting first, then looks at both sockets' ``EVENTS``
        before and after the wait, one ``poll`` system call each). Connection events are
        drained when the wait times out and at least every :data:`_DRAIN` seconds. Not
        draining them before an idle request is read is safe: that request runs at once,
        it is never queued (only queued work is dropped for a closed connection), and every
        read that may queue (:meth:`_read`) drains them first.
        """
        router, monitor = self._router, self._monitor
        recv, again = router.recv, zmq.Again
        queue = self._queue
        drained = time.monotonic()
        while not self._stopping.is_set():
            if queue:
                job = queue.popleft()
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
                        handback.send(b"")  # the standby thread has it: ask for it back
                        self._baton.acquire()
                        self._snapshot_status()  # (it answered status meanwhile: renew)
                    self._away = None
                    self._current = None
                self._send(job.envelope, parts)
                if queue:
                    self._read()  # between commands, so hello/status/abort never wait in line
            else:
                try:
                    frame = recv(0, copy=False)  # (RCVTIMEO: _POLL_MS)
                except again:
                    self._connection_events(monitor)
                    drained = time.monotonic()
                    continue
                parts = [frame]
                while frame.more:
                    frame = recv(0, copy=False)
                    parts.append(frame)
                if time.monotonic() - drained > _DRAIN:
                    self._connection_events(monitor)
                    drained = time.monotonic()
                self._handle_safely(parts)

    # ---------------------------------------------------------------- standby thread

    def _standby_loop(self, context: zmq.Context) -> None:
        pull = context.socket(zmq.PULL)
        pull.bind(self._handback)
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
                    if away is not None and away[0] != served and self._serve_while_busy(pull):
                        served = away[0]
                finally:
                    self._baton.release()
        except Exception:
            log.exception("the bridge's standby thread failed; stopping the server")
            self._stopping.set()
            self.backend.abort()
        finally:
            pull.close(linger=0)

    def _serve_while_busy(self, pull: zmq.Socket) -> bool:
        """Serve the socket until the instrument thread asks for it back (True) or the
        server stops (False)."""
        items = [
            (pull, transport.POLLIN),
            (self._router, transport.POLLIN),
            (self._monitor, transport.POLLIN),
        ]
        while not self._stopping.is_set():
            ready = transport.poll(items, _POLL_MS)
            if ready and ready[0][0] is pull:
                pull.recv()
                return True
            if ready:
                self._read()
        return False

    # ---------------------------------------------------------------- either thread (baton)

    def _read(self) -> None:
        """Handle what is waiting on the socket, up to :data:`_BATCH` requests. Connection
        events first, before each request, so that a closed connection's queued work is
        dropped before a new connection reusing its file descriptor is read."""
        router, monitor = self._router, self._monitor
        events, pollin = transport.EVENTS, transport.POLLIN
        for _ in range(_BATCH):
            if monitor.getsockopt(events) & pollin:
                self._connection_events(monitor)
            if not router.getsockopt(events) & pollin:
                return
            self._handle_safely(transport.recv(router))

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

    def _connection_events(self, monitor: zmq.Socket) -> None:
        while True:
            try:
                event = parse_monitor_message(monitor.recv_multipart(transport.NOBLOCK))
            except zmq.Again:
                return
            kind = event["event"]
            if kind == zmq.EVENT_DISCONNECTED:
                self._drop_gone(int(event["value"]))
            elif kind in _HANDSHAKE_FAILED:
                self._handshakes.failed(kind, event["endpoint"])
