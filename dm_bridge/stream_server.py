"""The bridge server on the plain-TCP transport (``stream://``): no ZeroMQ, no I/O threads.

The instrument thread (DM's script thread in real use) selects over the listening socket and
its clients' sockets when idle: a small call is read, run and answered by that one thread,
with no hand-off to any other (ZeroMQ adds libzmq's I/O thread on each side; see
``docs/decisions/0017-bridge-stream-transport.md``). Everything else is
:class:`dm_bridge.server.Server`'s: the baton, the standby thread that serves the sockets
while a command runs (hello, status, abort, ``busy`` beyond the queue bound, malformed
requests), the queue, and what is done with each request
(:mod:`dm_bridge.server_requests`). Framing is :mod:`dm_bridge.stream`.

Connections are non-blocking. A reply the client does not read at once waits in that
connection's own buffer (sent as the socket can take it), and no further request is read
from a connection until its replies are out, so a client that stops reading holds back
itself only. A connection that closes (end of file or an error) is gone: its queued
commands are dropped unexecuted (a client must not half-close its connection and wait for
replies). Bytes that are not a message (a wrong part count, a ZeroMQ greeting, a message
declared above twice the request limit plus 1 MiB) get one error reply (``bad_request`` or
``too_large``) and the connection is closed.

Loopback only, without keys: this transport has no authentication or encryption yet (off
loopback the server refuses it; ZeroMQ with CurveZMQ serves there).

Standard library, numpy and pyzmq only, Python 3.8 syntax: this module runs inside
DigitalMicrograph.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, List, Optional

from .protocol import encode_error
from .server_core import _POLL_MS, ServerCore
from .stream import SCHEME, FramingError, pack, parse

__all__ = ["StreamServer"]

log = logging.getLogger("dm_bridge.server")

_RECV_SIZE = 1 << 16  # (requests are small; a larger one arrives in several reads)
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_LISTENER, _WAKE = "listener", "wake"
#: bytes read and discarded from a refused connection before it is closed (so that the
#: refusal reaches a client still sending, instead of a reset)
_DISCARD = 1 << 26
#: scatter-gather sends (not on Windows)
_SENDMSG = hasattr(socket.socket, "sendmsg")


class _Peer:
    """One client connection: its socket, what it has sent so far, what waits to be sent."""

    __slots__ = ("closed", "discard", "inbuf", "number", "out", "refused", "sock")

    def __init__(self, sock: socket.socket, number: int) -> None:
        self.sock = sock
        self.number = number  # names the connection in queued jobs (file numbers are reused)
        self.inbuf = bytearray()
        self.out: Deque[memoryview] = deque()
        self.closed = False
        self.refused = False  # sent its refusal: close once it is out
        self.discard = 0  # bytes discarded since the refusal


class StreamServer(ServerCore):
    """A :class:`~dm_bridge.server.Server` on the plain-TCP transport; build it with
    ``Server(..., transport="stream")`` (the default on loopback without keys)."""

    def serve_forever(self, on_ready: Optional[Callable[[ServerCore], None]] = None) -> None:
        """Serve until :meth:`stop`; run instrument commands in the calling thread (see
        :meth:`dm_bridge.server_zmq.ZmqServer.serve_forever`).

        Raises:
            OSError: the address cannot be bound (port in use, bad host).
            RuntimeError: the server was already started once.
        """
        self._claim()
        self._peers: List[_Peer] = []
        self._numbers = 0
        self._selector: Any = None
        self._listener: Any = None
        self._wake: Any = None
        standby = None
        self._baton.acquire()
        try:
            self._start_up(self._bind_stream)
            standby = threading.Thread(
                target=self._standby,
                args=(self._serve_while_busy_stream,),
                name="dm-bridge-standby",
                daemon=True,
            )
            standby.start()
            log.info(
                "serving %s backend at %s (stream transport, loopback only, no keys)",
                self.backend.kind,
                self.endpoint,
            )
            try:
                if on_ready is not None:
                    on_ready(self)
                self._stream_loop()
            finally:
                self._stopping.set()
                self._abort_queued()
        finally:
            self._stopping.set()
            self._baton.release()
            if standby is not None:
                standby.join(5.0)
            with self._baton:
                self._close_all()
            self._handshakes.close()  # (the refusals not yet summarised)
            log.info("server at %s stopped", self.endpoint)

    def _bind_stream(self) -> None:
        six = ":" in self.host
        family = socket.AF_INET6 if six else socket.AF_INET
        self._listener = socket.create_server((self.host, self.port), family=family)
        self._listener.setblocking(False)
        port = self._listener.getsockname()[1]
        self.endpoint = (
            f"{SCHEME}://[{self.host}]:{port}" if six else f"{SCHEME}://{self.host}:{port}"
        )
        self._wake, waker = socket.socketpair()
        self._wake.setblocking(False)
        self._waker = waker
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, _READ, _LISTENER)

    def _close_all(self) -> None:
        """Close the listener at once (a restart may bind the port right away), give pending
        replies at most 1 s to go out, then close every connection."""
        if self._listener is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._listener)
            self._listener.close()
        deadline = time.monotonic() + 1.0
        for peer in list(self._peers):
            with contextlib.suppress(OSError):
                peer.sock.setblocking(True)
                while peer.out and time.monotonic() < deadline:
                    peer.sock.settimeout(max(deadline - time.monotonic(), 1e-3))
                    peer.sock.sendall(peer.out.popleft())
            self._close_peer(peer)
        for sock in (self._wake, getattr(self, "_waker", None)):
            if sock is not None:
                sock.close()
        if self._selector is not None:
            self._selector.close()

    # ---------------------------------------------------------------- threads

    def _stream_loop(self) -> None:
        queue = self._queue
        serve = self._serve_ready
        ask_back = self._ask_back
        while not self._stopping.is_set():
            if queue:
                self._run_job(queue.popleft(), ask_back)
                if queue:
                    serve(0.0)  # between commands, so hello/status/abort never wait in line
            else:
                serve(_POLL_MS / 1000)

    def _ask_back(self) -> None:
        self._waker.send(b"w")

    def _serve_while_busy_stream(self) -> bool:
        """Serve the sockets (standby thread) until the instrument thread asks for them back
        (True) or the server stops (False)."""
        selector = self._selector
        selector.register(self._wake, _READ, _WAKE)
        try:
            while not self._stopping.is_set():
                if self._serve_ready(_POLL_MS / 1000):
                    return True
            return False
        finally:
            selector.unregister(self._wake)
            with contextlib.suppress(BlockingIOError, InterruptedError):
                while self._wake.recv(64):
                    pass

    def _serve_ready(self, timeout: float) -> bool:
        """Serve what the sockets have ready within ``timeout`` seconds; whether the wake-up
        socket rang (the instrument thread wants the sockets back)."""
        woken = False
        for key, events in self._selector.select(timeout):
            data = key.data
            if data is _LISTENER:
                self._accept()
            elif data is _WAKE:
                woken = True
            else:
                if events & _WRITE:
                    self._flush(data)
                if events & _READ and not data.closed:
                    self._receive(data)
        return woken

    # ---------------------------------------------------------------- connections

    def _accept(self) -> None:
        for _ in range(16):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: keep serving the others
                log.warning("cannot accept a connection: %s", exc)
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._numbers += 1
            peer = _Peer(sock, self._numbers)
            self._peers.append(peer)
            self._selector.register(sock, _READ, peer)

    def _receive(self, peer: _Peer) -> None:
        try:
            data = peer.sock.recv(_RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._gone(peer)
            return
        if peer.refused:
            peer.discard += len(data)
            if peer.discard > _DISCARD:
                self._close_peer(peer)
            return
        inbuf = peer.inbuf
        if inbuf:
            inbuf += data
            buffer: Any = inbuf
        else:
            buffer = data
        start = 0
        limit = 2 * self.max_request_bytes + 2**20  # (as ZeroMQ's ZMQ_MAXMSGSIZE)
        while not peer.closed and not peer.refused:
            try:
                parts, end, _ = parse(buffer, start, limit)
            except FramingError as exc:
                self._refuse(peer, exc)
                return
            if parts is None:
                break
            start = end
            # (slices of bytes and of a bytearray are copies: the buffer may change)
            self._handle_safely([peer, *parts])
        if peer.closed or peer.refused:
            return
        if buffer is inbuf:
            del inbuf[:start]
        elif start < len(buffer):
            peer.inbuf = bytearray(buffer[start:])

    def _refuse(self, peer: _Peer, error: FramingError) -> None:
        self._handshakes._note(
            f"stream {error.kind}", f"refused a stream connection's message: {error.message}"
        )
        self._send([peer, b""], encode_error(None, error.kind, error.message))
        peer.refused = True
        peer.inbuf = bytearray()
        if not peer.out:
            self._finish_refusal(peer)

    def _finish_refusal(self, peer: _Peer) -> None:
        # Say "no more" and read what the client still sends (discarding it) until it closes:
        # closing with unread data would reset the connection and lose the refusal.
        with contextlib.suppress(OSError):
            peer.sock.shutdown(socket.SHUT_WR)

    def _gone(self, peer: _Peer) -> None:
        """The client closed its connection (or it failed): drop its queued work."""
        self._close_peer(peer)
        self._drop_gone(peer.number)

    def _close_peer(self, peer: _Peer) -> None:
        if peer.closed:
            return
        peer.closed = True
        peer.out.clear()
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(peer.sock)
        with contextlib.suppress(OSError):
            peer.sock.close()
        with contextlib.suppress(ValueError):
            self._peers.remove(peer)

    # ---------------------------------------------------------------- replies

    def _origin(self, routing: Any) -> Optional[int]:
        return routing.number

    def _send(self, envelope: List[Any], parts: List[Any]) -> None:
        peer = envelope[0]
        if peer.closed:
            return  # a client that has gone: nobody to answer
        buffers = pack(envelope[1:] + parts)
        if peer.out:  # (behind replies still waiting: in order)
            peer.out.extend(memoryview(b).cast("B") for b in buffers)
            return
        sock = peer.sock
        sent = 0
        try:
            if len(buffers) == 1:
                sent = sock.send(buffers[0])
            elif _SENDMSG:
                sent = sock.sendmsg(buffers)  # the header and the arrays in one system call
            else:
                for buffer in buffers:  # (Windows: no sendmsg)
                    n = sock.send(buffer)
                    sent += n
                    if n < len(buffer):
                        break
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._gone(peer)
            return
        if sent == sum(len(b) for b in buffers):
            return
        for buffer in buffers:  # keep what did not go, for _flush
            view = memoryview(buffer).cast("B")
            if sent >= len(view):
                sent -= len(view)
                continue
            peer.out.append(view[sent:])
            sent = 0
        # wait for room; read nothing more from this client until its replies are out
        self._selector.modify(sock, _WRITE, peer)

    def _flush(self, peer: _Peer) -> None:
        out = peer.out
        while out:
            head = out[0]
            try:
                sent = peer.sock.send(head)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._gone(peer)
                return
            if sent < len(head):
                out[0] = head[sent:]
                return
            out.popleft()
        self._selector.modify(peer.sock, _READ, peer)
        if peer.refused:
            self._finish_refusal(peer)
