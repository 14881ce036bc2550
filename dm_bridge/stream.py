"""The bridge's plain-TCP transport (``stream://host:port``): framing and the clients' channels.

A message is the same multipart message a ZeroMQ DEALER sends (the empty delimiter, the JSON
header, the raw frames; see ``docs/bridge-protocol.md``), written on a TCP stream as::

    count        8 bytes, unsigned, big-endian: the number of parts (1 to MAX_PARTS)
    lengths      count x 8 bytes, unsigned, big-endian: each part's length in bytes
    parts        each part's bytes, then zero bytes up to the next multiple of 8

Every part thus starts at a multiple of 8 bytes from the message's start, so a reader that
receives a message into aligned memory gets aligned arrays (no copy to align them). Nothing
else travels on the connection: no greeting. The server reads the
lengths before the parts, so a message declared larger than its limit is refused (a
``too_large`` reply, then the connection is closed) before any of it is read.

A client connection carries one request at a time (a *channel*, as with ZeroMQ); concurrent
calls open more connections. A channel whose call timed out, failed or was cancelled is
closed, never reused. Outages behave as on ZeroMQ, which the devices' suspension relies on:
a call that finds no server retries the connection every :data:`RECONNECT_INTERVAL` until
its timeout, and a call whose connection the server closes before replying (a crash, a
restart) ends at its timeout too, in :class:`~dm_bridge.errors.BridgeTimeout` saying so
(the request may or may not have run). An idle pooled connection the server has closed is
noticed before it is used and replaced.

Standard library and numpy only, Python 3.8 syntax: the server side runs inside
DigitalMicrograph.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import struct
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import BridgeConnectionError, BridgeTimeout

__all__ = [
    "MAX_PARTS",
    "SCHEME",
    "AsyncStreamChannel",
    "FramingError",
    "StreamChannel",
    "pack",
    "parse",
    "split_address",
]

#: the address scheme of this transport (``stream://127.0.0.1:5555``)
SCHEME = "stream"
#: most parts in one message (the delimiter, the header and up to this many less two frames)
MAX_PARTS = 1024
#: seconds between connection attempts while a call waits for the server to come (back)
RECONNECT_INTERVAL = 0.1
#: parts at least this large are written from their own buffer instead of being joined
_JOIN_LIMIT = 1 << 16
_RECV_SIZE = 1 << 18
#: bytes a client reads first: a 128² float32 image and its header (below glibc's mmap
#: threshold, so the buffer comes from the heap)
_FIRST_READ = (1 << 16) + (1 << 12)
_COUNT = struct.Struct("!Q")
_ZEROS = bytes(8)
_LENGTHS: Dict[int, struct.Struct] = {}
#: the first byte of a ZeroMQ (ZMTP) greeting: a ZeroMQ peer on a stream port, or the reverse
_ZMTP_SIGNATURE = 0xFF


class FramingError(Exception):
    """The bytes on a connection are not a stream-transport message.

    Attributes:
        kind: the protocol's error kind for the reply: ``too_large`` or ``bad_request``.
        message: what was wrong, for the peer and the log.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _lengths(count: int) -> struct.Struct:
    found = _LENGTHS.get(count)
    if found is None:
        found = _LENGTHS[count] = struct.Struct(f"!{count}Q")
    return found


def _as_bytes(part: Any) -> Any:
    """``part`` as something whose ``len`` is its size in bytes: bytes and bytearrays as
    they are, any other buffer (a memoryview of float32, a 2-D one, a numpy array) as a flat
    byte view of the same memory, uncopied.

    Raises:
        TypeError: ``part`` is not a buffer.
        ValueError: its memory is not one C-contiguous block (it cannot be sent uncopied).
    """
    kind = type(part)
    if kind is bytes or kind is bytearray:
        return part
    view = part if kind is memoryview else memoryview(part)
    if view.format == "B" and view.ndim == 1 and view.c_contiguous:
        return view  # (the frames the protocol makes: already flat bytes)
    if not view.c_contiguous:
        raise ValueError(
            f"a part to send must be one C-contiguous block of memory, got a "
            f"{view.ndim}-d view of format {view.format!r} with strides {view.strides}"
        )
    return view.cast("B")


def pack(parts: Sequence[Any]) -> List[Any]:
    """The buffers to write for one message of ``parts`` (bytes or any C-contiguous buffer).

    Small parts are joined with the length prefix into one buffer (one system call for a
    small message); large ones (arrays) are written from their own memory, uncopied. Each
    length counts bytes, also for a memoryview of wider items or of several dimensions
    (whose ``len`` counts items or rows).

    Raises:
        ValueError: a part whose memory is not C-contiguous.

    Example:
        >>> import numpy as np
        >>> buffers = pack([b"", memoryview(np.zeros(3, np.float32))])
        >>> parts, end, _ = parse(b"".join(buffers), 0, 1 << 20)
        >>> [len(p) for p in parts], end
        ([0, 12], 40)
    """
    count = len(parts)
    parts = [_as_bytes(p) for p in parts]
    sizes = [len(p) for p in parts]
    prefix = _COUNT.pack(count) + _lengths(count).pack(*sizes)
    if sum(sizes) < _JOIN_LIMIT:
        pieces = [prefix]
        for part, size in zip(parts, sizes):
            pieces.append(part)
            if size & 7:
                pieces.append(_ZEROS[: -size & 7])
        return [b"".join(pieces)]
    buffers: List[Any] = []
    pending = bytearray(prefix)
    for part, size in zip(parts, sizes):
        if size >= _JOIN_LIMIT:
            if pending:
                buffers.append(pending)
                pending = bytearray()
            buffers.append(part)
        else:
            pending += part
        if size & 7:
            pending += _ZEROS[: -size & 7]
    if pending:
        buffers.append(pending)
    return buffers


def parse(buffer: Any, start: int, limit: int) -> Tuple[Optional[List[Any]], int, int]:
    """Read one message from ``buffer[start:]``.

    Args:
        buffer: the bytes received so far (bytes, bytearray or memoryview).
        start: where the message begins.
        limit: the most bytes its parts may hold together.

    Returns:
        ``(parts, end, needed)``: the parts (slices of ``buffer``) and where the message
        ends; or ``(None, start, needed)`` when ``buffer`` holds only part of it, with the
        whole message's size once its lengths are known (else 0).

    Raises:
        FramingError: a part count outside 1..MAX_PARTS (a ZeroMQ greeting, for one) or
            parts declared larger than ``limit`` together.
    """
    available = len(buffer) - start
    if available < 8:
        return None, start, 0
    (count,) = _COUNT.unpack_from(buffer, start)
    _check_count(count, buffer[start])
    head = 8 + 8 * count
    if available < head:
        return None, start, 0
    sizes = _lengths(count).unpack_from(buffer, start + 8)
    total = _padded_total(sizes)
    if total > limit:
        raise FramingError(
            "too_large",
            f"a message declares {total} bytes, above the limit of {limit} bytes; "
            "closing the connection",
        )
    end = start + head + total
    if len(buffer) < end:
        return None, start, head + total
    return _split(buffer, start + head, sizes), end, head + total


def _padded_total(sizes: Sequence[int]) -> int:
    """Bytes the parts of these sizes take on the wire, each padded to a multiple of 8."""
    return sum(sizes) + sum(-size & 7 for size in sizes)


def _split(buffer: Any, offset: int, sizes: Sequence[int]) -> List[Any]:
    """The parts of these sizes in ``buffer`` from ``offset`` on (slices, no copies)."""
    parts = []
    for size in sizes:
        parts.append(buffer[offset : offset + size])
        offset += size + (-size & 7)
    return parts


def _check_count(count: int, first_byte: int) -> None:
    if 0 < count <= MAX_PARTS:
        return
    if first_byte == _ZMTP_SIGNATURE:
        raise FramingError(
            "bad_request",
            "this looks like ZeroMQ (a ZMTP greeting) on a stream-transport connection: "
            "a tcp:// client must talk to a server started with --transport zmq, a "
            "stream:// client to one started with --transport stream",
        )
    raise FramingError(
        "bad_request",
        f"a message declares {count} parts; the stream transport allows 1 to {MAX_PARTS} "
        "(8-byte big-endian part count, then 8-byte lengths, then the parts)",
    )


def split_address(address: str) -> Tuple[str, int]:
    """``(host, port)`` of ``stream://host:port`` (IPv6 hosts in brackets).

    Raises:
        ValueError: not a ``stream://host:port`` address.
    """
    rest = address[len(SCHEME) + 3 :] if address.startswith(SCHEME + "://") else ""
    host, _, port = rest.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit():
        raise ValueError(f"address must look like 'stream://127.0.0.1:5555', got {address!r}")
    return host, int(port)


def _readable(sock: Any) -> bool:
    """Whether ``sock`` has something to read (or an end of file) right now."""
    return bool(select.select([sock], [], [], 0)[0])


class _ConnectionLost(Exception):
    """The server closed the connection (or it failed) before the reply was complete."""


def _lost_message(address: str, timeout: float, why: object) -> str:
    return (
        f"no reply from {address} within {timeout:.3g} s: the server closed the connection "
        f"before replying (stopped or restarted? the request may or may not have run): {why}"
    )


def _no_connection(address: str, timeout: float, command: str) -> BridgeTimeout:
    return BridgeTimeout(
        f"no reply from {address} within {timeout:.3g} s: no connection: "
        "the server is down or unreachable",
        command,
    )


def _no_reply(address: str, timeout: float, command: str) -> BridgeTimeout:
    return BridgeTimeout(
        f"no reply from {address} within {timeout:.3g} s: connected, but no "
        "reply (a long acquisition? raise timeout=)",
        command,
    )


def _not_a_bridge(address: str, error: FramingError) -> BridgeConnectionError:
    return BridgeConnectionError(f"{address} did not answer as a stream bridge: {error.message}")


# ---------------------------------------------------------------------------- blocking


class StreamChannel:
    """One blocking TCP connection to a stream-transport server; one request at a time."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.host, self.port = split_address(address)
        self.sock: Optional[socket.socket] = None
        #: a connection has been made (for the timeout message)
        self.connected = False
        self.auth_failure: Optional[str] = None  # (no authentication on this transport)
        self._poll: Any = None

    def _connect(self, deadline: float, command: str, timeout: float) -> socket.socket:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _no_connection(self.address, timeout, command)
            try:
                sock = socket.create_connection((self.host, self.port), timeout=remaining)
            except OSError:
                time.sleep(min(RECONNECT_INTERVAL, max(remaining, 0.0)))
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock, self.connected = sock, True
            if hasattr(select, "poll"):
                self._poll = select.poll()
                self._poll.register(sock, select.POLLIN)
            return sock

    def _stale(self) -> bool:
        """Whether the idle connection has something to read: the server closed it (a
        restart), or sent what no request asked for. Either way it must not be reused."""
        sock = self.sock
        if sock is None:
            return False
        if self._poll is not None:
            return bool(self._poll.poll(0))
        return _readable(sock)

    def exchange(self, frames: Sequence[Any], command: str, timeout: float) -> List[Any]:
        """Send one request (``frames``: the delimiter, the header, the raw frames) and
        return the reply's parts (the delimiter first).

        Raises:
            BridgeTimeout: no connection or no reply within ``timeout`` seconds (also when
                the server closed the connection before replying).
            BridgeConnectionError: the peer is not a stream bridge.
        """
        deadline = time.monotonic() + timeout
        if self.sock is not None and self._stale():
            self.close()
        sock = self.sock if self.sock is not None else self._connect(deadline, command, timeout)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 1e-3))
            for buffer in pack(frames):
                sock.sendall(buffer)
            return self._receive(sock, deadline, command, timeout)
        except socket.timeout:
            raise _no_reply(self.address, timeout, command) from None
        except (OSError, _ConnectionLost) as exc:
            # As on ZeroMQ: the call waits out its timeout (a restarted server never
            # answers a request sent to the one before it).
            self.close()
            time.sleep(max(deadline - time.monotonic(), 0.0))
            raise BridgeTimeout(_lost_message(self.address, timeout, exc), command) from None

    def _receive(self, sock: socket.socket, deadline: float, command: str, timeout: float) -> Any:
        # Into memory of this reply's own (numpy: not zero-filled), which the arrays decoded
        # from it share, writable and uncopied: a small reply and a 128² image in one read.
        buffer = np.empty(_FIRST_READ, np.uint8)
        view = memoryview(buffer)
        got = sock.recv_into(view)
        while True:
            if not got:
                raise _ConnectionLost("end of file")
            try:
                parts, _, needed = parse(view[:got], 0, 1 << 62)
            except FramingError as exc:
                raise _not_a_bridge(self.address, exc) from None
            if parts is not None:
                return parts
            if needed > len(view):  # the lengths are known: one buffer for the whole reply
                larger = np.empty(needed, np.uint8)
                larger[:got] = buffer[:got]
                buffer, view = larger, memoryview(larger)
            sock.settimeout(max(deadline - time.monotonic(), 1e-3))
            n = sock.recv_into(view[got:])
            got = got + n if n else 0

    def close(self) -> None:
        """Close the connection (anything unsent is dropped)."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock, self._poll = None, None


# ---------------------------------------------------------------------------- asyncio


class AsyncStreamChannel:
    """One asyncio TCP connection to a stream-transport server; one request at a time."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.host, self.port = split_address(address)
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None
        self.connected = False
        self.auth_failure: Optional[str] = None

    async def _connect(self, deadline: float, command: str, timeout: float) -> None:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _no_connection(self.address, timeout, command)
            try:
                self.reader, self.writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, limit=_RECV_SIZE), remaining
                )
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(min(RECONNECT_INTERVAL, max(remaining, 0.0)))
                continue
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connected = True
            return

    def _stale(self) -> bool:
        # (as StreamChannel._stale; the event loop may not have read the end of file yet)
        assert self.reader is not None
        assert self.writer is not None
        if self.reader.at_eof() or self.writer.is_closing():
            return True
        sock = self.writer.get_extra_info("socket")
        return sock is not None and _readable(sock)

    async def exchange(self, frames: Sequence[Any], command: str, timeout: float) -> List[Any]:
        """As :meth:`StreamChannel.exchange`, awaiting instead of blocking."""
        deadline = time.monotonic() + timeout
        if self.writer is not None and self._stale():
            self.close()  # the server closed it while it was idle (a restart)
        if self.writer is None:
            await self._connect(deadline, command, timeout)
        assert self.reader is not None
        assert self.writer is not None
        try:
            for buffer in pack(frames):
                self.writer.write(buffer)
            if self.writer.transport.get_write_buffer_size():
                await asyncio.wait_for(self.writer.drain(), max(deadline - time.monotonic(), 1e-3))
            return await asyncio.wait_for(
                self._receive(self.reader, command), max(deadline - time.monotonic(), 1e-3)
            )
        except asyncio.TimeoutError:
            raise _no_reply(self.address, timeout, command) from None
        except (asyncio.IncompleteReadError, OSError) as exc:
            # (as StreamChannel.exchange: wait out the timeout, as on ZeroMQ)
            self.close()
            await asyncio.sleep(max(deadline - time.monotonic(), 0.0))
            raise BridgeTimeout(_lost_message(self.address, timeout, exc), command) from None

    async def _receive(self, reader: asyncio.StreamReader, command: str) -> List[Any]:
        head = await reader.readexactly(8)
        (count,) = _COUNT.unpack(head)
        try:
            _check_count(count, head[0])
        except FramingError as exc:
            raise _not_a_bridge(self.address, exc) from None
        sizes = _lengths(count).unpack(await reader.readexactly(8 * count))
        total = _padded_total(sizes)
        # (writable memory, aligned parts: the arrays decoded from it share it, uncopied)
        body = memoryview(np.frombuffer(await reader.readexactly(total), np.uint8).copy())
        return _split(body, 0, sizes)

    def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        self.reader = self.writer = None
