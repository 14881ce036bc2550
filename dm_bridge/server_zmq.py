"""The bridge server on ZeroMQ (``tcp://``): a ROUTER socket owned by the instrument thread,
CurveZMQ (required off loopback), the socket monitor for closed connections.

The instrument thread owns the ROUTER socket (the only hand-offs are libzmq's own I/O
threads); ZeroMQ sockets may move between threads across a full memory barrier, which the
baton (a lock) provides. Queued work of a client whose connection has closed is dropped
unexecuted (the socket monitor reports the disconnection). The threads and the baton are
:mod:`dm_bridge.server_core`'s; what is done with each request is
:mod:`dm_bridge.server_requests`.

Security: the server binds 127.0.0.1 by default. Any other address needs CurveZMQ (a server
key pair and the public keys of the allowed clients); without them the server refuses to start.

Standard library, numpy and pyzmq only, Python 3.8 syntax: this module runs inside
DigitalMicrograph.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any, Callable, Optional

import zmq
from zmq.utils.monitor import parse_monitor_message

from . import transport
from .keys import start_authenticator
from .server_core import _POLL_MS, ServerCore

__all__ = ["ZmqServer"]

log = logging.getLogger("dm_bridge.server")

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


class ZmqServer(ServerCore):
    """A bridge server on ZeroMQ; build it with ``Server(..., transport="zmq")`` (the
    default with CurveZMQ keys or off loopback)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._router: Any = None
        self._monitor: Any = None
        self._handback = f"inproc://dm-bridge-handback-{id(self):x}"

    def serve_forever(self, on_ready: Optional[Callable[[ServerCore], None]] = None) -> None:
        """Serve until :meth:`stop`; run instrument commands in the calling thread.

        Args:
            on_ready: called (in this thread) once the socket is bound, e.g. to print
                :attr:`endpoint`.

        Raises:
            zmq.ZMQError: the address cannot be bound (port in use, bad host).
            RuntimeError: the server was already started once.
        """
        self._claim()
        # One context per process is ZeroMQ's idiom; in-process clients then share its I/O
        # thread, one wake-up less per message. A CurveZMQ server gets its own: the ZAP
        # handler is per context, and another server in the process may have one.
        own = self.curve
        context = zmq.Context() if own else zmq.Context.instance()
        authenticator = None
        standby = None

        def bind() -> None:
            nonlocal authenticator
            if self._security is not None:
                # The ZAP handler must run before the socket binds, or CURVE would admit
                # anyone.
                authenticator = start_authenticator(
                    context, self._security.allowed, self._handshakes
                )
            self._bind(context)

        self._baton.acquire()
        try:
            self._start_up(bind)
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
                self._abort_queued()
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
            self._handshakes.close()  # (the refusals not yet summarised)
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
        ask_back = functools.partial(handback.send, b"")
        drained = time.monotonic()
        while not self._stopping.is_set():
            if queue:
                self._run_job(queue.popleft(), ask_back)
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

    def _standby_loop(self, context: zmq.Context) -> None:
        pull = context.socket(zmq.PULL)
        pull.bind(self._handback)
        try:
            self._standby(lambda: self._serve_while_busy(pull))
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
