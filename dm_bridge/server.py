"""The DM bridge server: one instrument, many clients, one instrument command at a time.

Two threads share the work (see ``docs/decisions/0003-bridge-concurrency.md``):

* the **instrument thread** is the one that calls :meth:`Server.serve_forever`. Inside
  DigitalMicrograph that is DM's own script thread, the only one allowed to call the DM API,
  so every backend call except :meth:`~dm_bridge.backends.base.Backend.abort` happens there,
  one at a time, in arrival order;
* the **I/O thread** owns the ZeroMQ ROUTER socket (sockets are not thread-safe, so no other
  thread touches it). It decodes and checks every request, answers ``hello``, ``status`` and
  ``abort`` at once (also during a long acquisition), queues instrument commands (bounded:
  beyond ``queue_limit`` waiting commands the reply is ``busy``) and sends the replies the
  instrument thread hands back over an ``inproc`` PUSH/PULL pair.

``abort`` interrupts the running acquisition (its reply is ``aborted``) and drops every
queued command (each replied ``aborted``): after an abort the instrument is idle.

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

import contextlib
import logging
import platform
import queue
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Union

import zmq

from .backends.base import Backend
from .commands import COMMANDS, acquisition_estimate, check_arguments, run_command
from .errors import Aborted, BridgeError, Busy, TooLarge
from .keys import is_loopback, server_security, start_authenticator
from .protocol import (
    PROTOCOL_VERSION,
    RequestError,
    decode_request,
    encode_error,
    encode_reply,
    peek_request_id,
)

__all__ = [
    "DEFAULT_MAX_REPLY_BYTES",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_PORT",
    "DEFAULT_QUEUE_LIMIT",
    "Server",
    "is_loopback",
]

log = logging.getLogger("dm_bridge.server")

DEFAULT_PORT = 5555
#: instrument commands that may wait behind the running one
DEFAULT_QUEUE_LIMIT = 8
#: requests above this get a ``too_large`` reply (a 100 000-point list is 1.6 MB)
DEFAULT_MAX_REQUEST_BYTES = 64 * 2**20
#: acquisitions whose reply would exceed this are refused before they start
DEFAULT_MAX_REPLY_BYTES = 4 * 2**30

_STOP = b"\x00stop"  # one-frame message on the reply pipe: the instrument thread is done
_BATCH = 64  # messages handled per socket per poll, so neither direction starves


class _Job:
    """An instrument command waiting in the queue."""

    __slots__ = ("args", "command", "envelope", "expires", "id", "received")

    def __init__(
        self,
        envelope: List[bytes],
        rid: Any,
        command: str,
        args: Dict[str, Any],
        received: float,
        expires: Optional[float],
    ) -> None:
        self.envelope = envelope
        self.id = rid
        self.command = command
        self.args = args
        self.received = received
        self.expires = expires


class Server:
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
        max_reply_bytes: acquisitions whose reply would exceed this get ``too_large``
            before they start.

    Raises:
        ValueError: a non-loopback ``host`` without keys, or half a key configuration.
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
    ) -> None:
        if queue_limit < 0 or max_request_bytes <= 0 or max_reply_bytes <= 0:
            raise ValueError("queue_limit must be >= 0 and the size limits > 0")
        self._security = server_security(host, server_secret_key, allowed_clients)
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
        # _lock guards the queue and the current job; _doorbell wakes the instrument thread
        # (a C-level SimpleQueue: cheaper per command than a Condition).
        self._lock = threading.Lock()
        self._doorbell = queue.SimpleQueue()
        self._queue: Deque[_Job] = deque()
        self._current: Optional[_Job] = None
        self._status: Dict[str, Any] = {}
        self._hello: Dict[str, Any] = {}
        self._served = 0
        self._started_at = time.time()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._io_exit = threading.Event()
        self._startup_error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None
        self._used = False
        self._pipe = f"inproc://dm-bridge-replies-{id(self):x}"

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
        with self._lock:
            if self._used:
                raise RuntimeError("a Server serves once; create a new one")
            self._used = True
        context = zmq.Context()
        authenticator = None
        io_thread = None
        try:
            self._hello = self._make_hello()
            encode_reply(None, self._hello, 0.0)  # fail now, not at the first hello, if unsendable
            self._snapshot_status()
            if self._security is not None:
                # The ZAP handler must run before the socket binds, or CURVE would admit anyone.
                authenticator = start_authenticator(context, self._security.allowed)
            io_thread = threading.Thread(
                target=self._io_loop, args=(context,), name="dm-bridge-io", daemon=True
            )
            io_thread.start()
            self._ready.wait()
            if self._startup_error is not None:
                raise self._startup_error
            log.info(
                "serving %s backend at %s (CurveZMQ %s, %d allowed client key(s))",
                self.backend.kind,
                self.endpoint,
                "on" if self.curve else "off, loopback only",
                len(self._security.allowed) if self._security else 0,
            )
            push = context.socket(zmq.PUSH)
            push.connect(self._pipe)
            try:
                if on_ready is not None:
                    on_ready(self)
                self._instrument_loop(push)
            finally:
                self._stopping.set()
                with self._lock:
                    left = list(self._queue)
                    self._queue.clear()
                for job in left:
                    push.send_multipart(
                        job.envelope + encode_error(job.id, "aborted", "server stopping"),
                        copy=False,
                    )
                push.send(_STOP)
                io_thread.join(5.0)
                push.close(linger=0)
        finally:
            self._stopping.set()
            self._ready.set()
            if io_thread is not None and io_thread.is_alive():
                self._io_exit.set()
                io_thread.join(2.0)
            if authenticator is not None:
                authenticator.stop()
            context.destroy(linger=0)
            log.info("server at %s stopped", self.endpoint)

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

        Safe to call from any thread (a signal handler too), and more than once.
        """
        with self._lock:
            self._stopping.set()
            if self._current is not None:
                self.backend.abort()
        self._doorbell.put(True)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---------------------------------------------------------------- instrument thread

    def _instrument_loop(self, push: zmq.Socket) -> None:
        while True:
            with self._lock:
                job = self._queue.popleft() if self._queue else None
                if self._stopping.is_set():
                    if job is not None:
                        self._queue.appendleft(job)  # answered "server stopping" on the way out
                    return
                self._current = job
                if job is not None:
                    self.backend.clear_abort()
            if job is None:
                # A timeout keeps Ctrl-C responsive where lock waits are not interruptible.
                with contextlib.suppress(queue.Empty):
                    self._doorbell.get(timeout=1.0)
                continue
            try:
                parts = self._execute(job)
            finally:
                with self._lock:
                    self._current = None
                self._snapshot_status()
            push.send_multipart(job.envelope + parts, copy=False)

    def _execute(self, job: _Job) -> List[Any]:
        backend = self.backend
        try:
            if job.expires is not None and time.monotonic() > job.expires:
                raise Busy(
                    f"waited {time.monotonic() - job.received:.1f} s in the queue, longer than "
                    "the request's timeout; not executed"
                )
            if job.command.startswith("acquire_"):
                size = acquisition_estimate(
                    job.command, job.args, backend.scan.to_dict(), backend.eels.to_dict()
                )[1]
            else:
                size = 0
            if size > self.max_reply_bytes:
                raise TooLarge(
                    f"the reply would be {size} bytes, above the server's limit of "
                    f"{self.max_reply_bytes}; acquire fewer pixels, points or channels per call"
                )
            result = run_command(backend, job.command, job.args)
            elapsed = time.monotonic() - job.received
            parts = encode_reply(job.id, result, elapsed, job.command)
            self._log(job.command, job.id, "ok", elapsed)
            return parts
        except BridgeError as exc:
            backend.last_error = f"[{exc.kind}] {job.command}: {exc.message}"
            return self._error(job.command, job.id, exc.kind, exc.message, job.received)
        except Exception as exc:
            log.exception("internal error in %s (request %r)", job.command, job.id)
            message = f"{type(exc).__name__}: {exc}"
            backend.last_error = f"[internal_error] {job.command}: {message}"
            return self._error(job.command, job.id, "internal_error", message, job.received)

    def _snapshot_status(self) -> None:
        # backend.status() may talk to DM, so it runs here; the I/O thread reads the copy.
        try:
            status = dict(self.backend.status())
        except Exception as exc:
            status = {"backend_status_error": f"{type(exc).__name__}: {exc}"}
        self._status = status

    def _make_hello(self) -> Dict[str, Any]:
        hello = dict(self.backend.hello())
        hello["protocol"] = PROTOCOL_VERSION
        hello["server"] = {
            "name": "dm_bridge",
            "python": platform.python_version(),
            "pyzmq": zmq.__version__,
            "libzmq": zmq.zmq_version(),
            "curve": self.curve,
            "queue_limit": self.queue_limit,
            "max_request_bytes": self.max_request_bytes,
            "max_reply_bytes": self.max_reply_bytes,
        }
        return hello

    # ---------------------------------------------------------------- I/O thread

    def _io_loop(self, context: zmq.Context) -> None:
        router = pull = None
        try:
            router = context.socket(zmq.ROUTER)
            router.setsockopt(zmq.LINGER, 1000)
            router.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_request_bytes + 2**20)
            if ":" in self.host:
                router.setsockopt(zmq.IPV6, 1)
            if self._security is not None:
                router.curve_publickey = self._security.public
                router.curve_secretkey = self._security.secret
                router.curve_server = True
            host = f"[{self.host}]" if ":" in self.host else self.host
            router.bind(f"tcp://{host}:{self.port if self.port else '*'}")
            self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
            pull = context.socket(zmq.PULL)
            pull.bind(self._pipe)
        except Exception as exc:
            self._startup_error = exc
            for sock in (router, pull):
                if sock is not None:
                    sock.close(linger=0)
            self._ready.set()
            return
        self._ready.set()
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(pull, zmq.POLLIN)
        try:
            while not self._io_exit.is_set():
                for sock, _ in poller.poll(200):
                    if sock is pull:
                        if self._forward_replies(pull, router):
                            return
                    else:
                        self._receive_requests(router)
        except Exception:
            log.exception("the bridge's I/O thread failed; stopping the server")
            self.stop(timeout=0)
        finally:
            router.close()
            pull.close(linger=0)

    def _forward_replies(self, pull: zmq.Socket, router: zmq.Socket) -> bool:
        # EVENTS instead of NOBLOCK + zmq.Again: an exception per wake-up costs more.
        for _ in range(_BATCH):
            if not pull.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                return False
            parts = pull.recv_multipart(copy=False)
            if len(parts) == 1 and parts[0].bytes == _STOP:
                return True
            router.send_multipart(parts, copy=False)
        return False

    def _receive_requests(self, router: zmq.Socket) -> None:
        for _ in range(_BATCH):
            if not router.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                return
            parts = router.recv_multipart()
            try:
                self._handle(router, parts)
            except Exception as exc:  # never let one message take the server down
                log.exception("internal error while handling a request")
                message = f"{type(exc).__name__}: {exc}"
                self._send(router, [*parts[:1], b""], encode_error(None, "internal_error", message))

    def _handle(self, router: zmq.Socket, parts: List[bytes]) -> None:
        received = time.monotonic()
        try:
            split = parts.index(b"") + 1
        except ValueError:
            # No REQ/REP delimiter: answer anyway so that the sender learns why.
            rid = peek_request_id(parts[1]) if len(parts) > 1 else None
            error = "missing the empty delimiter frame before the header (see the protocol)"
            self._send(router, [*parts[:1], b""], encode_error(rid, "bad_request", error))
            return
        envelope, body = parts[:split], parts[split:]
        try:
            request = decode_request(body, self.max_request_bytes)
            args = check_arguments(request.command, request.args, request.arrays)
        except RequestError as exc:
            self._reply_error(router, envelope, exc.request_id, exc.command, exc.error, received)
            return
        except BridgeError as exc:
            command = request.command
            self._reply_error(router, envelope, request.id, command, exc, received)
            return
        command = request.command
        if COMMANDS[command].immediate:
            result = self._immediate(router, command)
            elapsed = time.monotonic() - received
            self._send(router, envelope, encode_reply(request.id, result, elapsed, command))
            self._log(command, request.id, "ok", elapsed)
            return
        expires = None if request.timeout is None else received + request.timeout
        job = _Job(envelope, request.id, command, args, received, expires)
        with self._lock:
            if self._stopping.is_set():
                error: Optional[BridgeError] = Aborted("server stopping")
            elif len(self._queue) >= self.queue_limit and (self._queue or self._current):
                running = f" with {self._current.command}" if self._current else ""
                error = Busy(
                    f"instrument busy{running}, {len(self._queue)} command(s) queued "
                    f"(limit {self.queue_limit}); try again later"
                )
            else:
                error = None
                self._queue.append(job)
                self._served += 1
        if error is None:
            self._doorbell.put(True)
        else:
            self._reply_error(router, envelope, request.id, command, error, received)

    def _immediate(self, router: zmq.Socket, command: str) -> Dict[str, Any]:
        if command == "hello":
            return self._hello
        if command == "status":
            with self._lock:
                current = self._current
                state = {
                    "state": "busy" if current is not None else "idle",
                    "current_command": current.command if current is not None else None,
                    "queue": len(self._queue),
                    "queue_limit": self.queue_limit,
                    "uptime": time.time() - self._started_at,
                    "commands_accepted": self._served,
                }
            state.update(self._status)
            return state
        # abort: the lock makes "take the next job and clear the abort flag" and "drop the
        # queue and raise the flag" exclusive, so an abort never falls between two commands.
        with self._lock:
            dropped = list(self._queue)
            self._queue.clear()
            current = self._current
            if current is not None:
                self.backend.abort()
        for job in dropped:
            err = Aborted("dropped from the queue by an abort request")
            self._reply_error(router, job.envelope, job.id, job.command, err, job.received)
        log.info(
            "abort: interrupted %s, dropped %d queued command(s)",
            current.command if current else "nothing",
            len(dropped),
        )
        return {"aborted": current.command if current else None, "dropped": len(dropped)}

    # ---------------------------------------------------------------- replies

    def _error(
        self, command: Optional[str], rid: Any, kind: str, message: str, received: float
    ) -> List[bytes]:
        elapsed = time.monotonic() - received
        self._log(command, rid, f"error {kind}: {message}", elapsed)
        return encode_error(rid, kind, message, elapsed, command)

    def _reply_error(
        self,
        router: zmq.Socket,
        envelope: List[bytes],
        rid: Any,
        command: Optional[str],
        error: BridgeError,
        received: float,
    ) -> None:
        if not isinstance(command, str) or command not in COMMANDS:
            command = None  # never echo arbitrary client text as a command name
        self._send(router, envelope, self._error(command, rid, error.kind, error.message, received))

    @staticmethod
    def _send(router: zmq.Socket, envelope: List[bytes], parts: List[Any]) -> None:
        router.send_multipart(envelope + parts)

    @staticmethod
    def _log(command: Optional[str], rid: Any, outcome: str, elapsed: float) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info("%s id=%r %s (%.3f ms)", command or "?", rid, outcome, 1e3 * elapsed)
