"""What the DM bridge server does with a request: check it, answer ``hello``, ``status`` and
``abort`` at once, queue instrument commands (bounded; dropped unexecuted when their client's
connection closes), run them on the backend, and write every reply and error.

:class:`RequestHandling` is a part of :class:`dm_bridge.server.Server`, which owns the socket
and the threads (see that module): every method here runs in whichever thread holds the
server's baton, and touches the socket, the queue and the current job only then.

Standard library, numpy and pyzmq only, Python 3.8 syntax: this module runs inside
DigitalMicrograph.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from typing import Any, Deque, Dict, List, Optional

import zmq

from . import transport
from .backends.base import Backend
from .commands import COMMANDS, acquisition_estimate, check_arguments, run_command
from .errors import Aborted, BridgeError, Busy, TooLarge
from .protocol import (
    PROTOCOL_VERSION,
    RequestError,
    decode_request,
    encode_error,
    encode_reply,
    peek_request_id,
)

__all__ = ["RequestHandling"]

# (the server's logger: one name for the whole server)
log = logging.getLogger("dm_bridge.server")

_SRCFD = int(zmq.SRCFD)  # the file descriptor a message came on


class _Job:
    """An instrument command waiting in the queue."""

    __slots__ = ("args", "command", "envelope", "expires", "fd", "id", "received")

    def __init__(
        self,
        envelope: List[Any],
        rid: Any,
        command: str,
        args: Dict[str, Any],
        received: float,
        expires: Optional[float],
        fd: Optional[int],
    ) -> None:
        self.envelope = envelope
        self.id = rid
        self.command = command
        self.args = args
        self.received = received
        self.expires = expires
        self.fd = fd  # the connection it came on (to drop it if that connection closes)


class RequestHandling:
    """The requests' part of :class:`~dm_bridge.server.Server` (a base class of it, not used
    alone): the attributes below are the server's."""

    backend: Backend
    instance: str
    curve: bool
    transport: str
    queue_limit: int
    max_request_bytes: int
    max_reply_bytes: int
    _router: Any
    _queue: Deque[_Job]
    _current: Optional[_Job]
    _status: Dict[str, Any]
    _hello: Dict[str, Any]
    _served: int
    _dropped_gone: int
    _started_at: float
    _stopping: Any

    def _execute(self, job: _Job) -> List[Any]:
        backend = self.backend
        try:
            if job.expires is not None and time.monotonic() > job.expires:
                raise Busy(
                    f"waited {time.monotonic() - job.received:.3g} s in the queue, longer "
                    "than the request's timeout; not executed"
                )
            if job.command.startswith("acquire_"):
                self._check_reply_size(job)
            result = run_command(backend, job.command, job.args)
            elapsed = time.monotonic() - job.received
            parts = encode_reply(job.id, result, elapsed, job.command, self.instance)
            self._log(job.command, job.id, "ok", elapsed)
        except BridgeError as exc:
            backend.last_error = f"[{exc.kind}] {job.command}: {exc.message}"
            parts = self._error(job.command, job.id, exc.kind, exc.message, job.received)
        except Exception as exc:
            log.exception("internal error in %s (request %r)", job.command, job.id)
            message = f"{type(exc).__name__}: {exc}"
            backend.last_error = f"[internal_error] {job.command}: {message}"
            parts = self._error(job.command, job.id, "internal_error", message, job.received)
        return parts

    def _check_reply_size(self, job: _Job) -> None:
        backend = self.backend
        scan, eels = backend.scan.to_dict(), backend.eels.to_dict()
        size = acquisition_estimate(job.command, job.args, scan, eels)[1]
        if size <= self.max_reply_bytes:
            return
        hint = ""
        if job.command == "acquire_spectrum_image":
            row = {"rows": 1, "cols": job.args["cols"]}
            per_row = acquisition_estimate(job.command, row, scan, eels)[1]
            hint = f" (at most {max(0, self.max_reply_bytes // max(per_row, 1))} rows per call)"
        raise TooLarge(
            f"the reply would be {size} bytes, above the server's limit of "
            f"{self.max_reply_bytes} bytes per request (dm-bridge serve --max-reply-mb); "
            f"acquire fewer pixels, points or channels per call{hint}"
        )

    def _snapshot_status(self) -> None:
        # backend.status() may talk to DM, so it runs here; the standby thread reads the copy.
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
            "instance": self.instance,
            "python": platform.python_version(),
            "pyzmq": zmq.__version__,
            "libzmq": zmq.zmq_version(),
            "transport": self.transport,
            "curve": self.curve,
            "queue_limit": self.queue_limit,
            "max_request_bytes": self.max_request_bytes,
            "max_reply_bytes": self.max_reply_bytes,
        }
        return hello

    def _drop_gone(self, fd: int) -> None:
        gone = [job for job in self._queue if job.fd == fd]
        if not gone:
            return
        for job in gone:
            self._queue.remove(job)
        self._dropped_gone += len(gone)
        log.info(
            "a client disconnected: dropped its %d queued command(s) (%s) unexecuted",
            len(gone),
            ", ".join(job.command for job in gone),
        )

    def _handle(self, parts: List[Any]) -> bool:
        """Answer or queue one request; whether it was queued."""
        received = time.monotonic()
        split = 0
        if len(parts) > 2 and not len(parts[1]):
            split = 2  # [routing id, delimiter, header, ...]: every client's layout
        else:
            for i in range(1, len(parts)):
                if not len(parts[i]):
                    split = i + 1
                    break
        if not split:
            # No REQ/REP delimiter: answer anyway so that the sender learns why.
            rid = peek_request_id(parts[1]) if len(parts) > 1 else None
            error = "missing the empty delimiter frame before the header (see the protocol)"
            self._send([parts[0], b""], encode_error(rid, "bad_request", error))
            return False
        envelope = parts[:split]
        try:
            extra = sum(len(p) for p in envelope[1:]) if split > 2 else 0
            request = decode_request(parts[split:], self.max_request_bytes, extra)
            command = request.command
            args = check_arguments(command, request.args, request.arrays)
        except RequestError as exc:
            self._reply_error(envelope, exc.request_id, exc.command, exc.error, received)
            return False
        except BridgeError as exc:
            self._reply_error(envelope, request.id, request.command, exc, received)
            return False
        if COMMANDS[command].immediate:
            result = self._immediate(command)
            elapsed = time.monotonic() - received
            self._send(envelope, encode_reply(request.id, result, elapsed, command, self.instance))
            self._log(command, request.id, "ok", elapsed)
            return False
        queue = self._queue
        waiting = len(queue) + (self._current is not None)
        if self._stopping.is_set():
            error: Optional[BridgeError] = Aborted("server stopping")
        elif waiting > self.queue_limit:
            running = f" with {self._current.command}" if self._current else ""
            error = Busy(
                f"instrument busy{running}, {len(queue)} command(s) queued "
                f"(limit {self.queue_limit}); try again later"
            )
        else:
            expires = None if request.timeout is None else received + request.timeout
            fd: Optional[int] = None
            if self._current is not None or queue:  # it will wait: note its connection
                fd = self._origin(parts[0])
            queue.append(_Job(envelope, request.id, command, args, received, expires, fd))
            self._served += 1
            return True
        self._reply_error(envelope, request.id, command, error, received)
        return False

    def _origin(self, routing: Any) -> Optional[int]:
        """The connection a message came on (its file descriptor, ``ZMQ_SRCFD``), to drop
        its queued work if that connection closes."""
        with contextlib.suppress(zmq.ZMQError):
            return routing.get(_SRCFD)
        return None

    def _immediate(self, command: str) -> Dict[str, Any]:
        if command == "hello":
            return self._hello
        current = self._current
        if command == "status":
            if current is None:
                self._snapshot_status()  # idle: this is the instrument thread, ask live
            state = {
                "state": "busy" if current is not None else "idle",
                "current_command": current.command if current is not None else None,
                "queue": len(self._queue),
                "queue_limit": self.queue_limit,
                "uptime": time.time() - self._started_at,
                "commands_accepted": self._served,
                "dropped_disconnected": self._dropped_gone,
                "instance": self.instance,
            }
            state.update(self._status)
            if current is not None:
                try:  # (thread-safe by contract: no instrument call)
                    state.update(self.backend.live_status())
                except Exception as exc:
                    state["backend_status_error"] = f"{type(exc).__name__}: {exc}"
            return state
        # abort: the baton makes "take the next job and clear the abort flag" and "drop the
        # queue and raise the flag" exclusive, so an abort never falls between two commands.
        dropped = list(self._queue)
        self._queue.clear()
        if current is not None:
            self.backend.abort()
        for job in dropped:
            err = Aborted("dropped from the queue by an abort request")
            self._reply_error(job.envelope, job.id, job.command, err, job.received)
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
        self._log(command, rid, f"error {kind}: {message}", elapsed, logging.INFO)
        return encode_error(rid, kind, message, elapsed, command, self.instance)

    def _reply_error(
        self,
        envelope: List[Any],
        rid: Any,
        command: Optional[str],
        error: BridgeError,
        received: float,
    ) -> None:
        if not isinstance(command, str) or command not in COMMANDS:
            command = None  # never echo arbitrary client text as a command name
        self._send(envelope, self._error(command, rid, error.kind, error.message, received))

    def _send(self, envelope: List[Any], parts: List[Any]) -> None:
        transport.send(self._router, envelope + parts)

    @staticmethod
    def _log(
        command: Optional[str], rid: Any, outcome: str, elapsed: float, level: int = logging.DEBUG
    ) -> None:
        if log.isEnabledFor(level):
            log.log(level, "%s id=%r %s (%.3f ms)", command or "?", rid, outcome, 1e3 * elapsed)
