"""Sending and receiving multipart messages with as little Python per call as possible.

pyzmq's ``send_multipart``/``recv_multipart`` and ``Socket.poll`` are convenient, but on the
bridge's hot path (a small call is a few tens of microseconds end to end) their overheads
show: flag arithmetic on ``IntFlag`` enums, a new ``Poller`` per ``Socket.poll``, and a
``Frame`` object per received part. These helpers do the same with plain integers, copy only
small parts on sending, and receive frames without copying or asking ``RCVMORE``.

Standard library and pyzmq only, Python 3.8 syntax: the server uses it inside DigitalMicrograph.
"""

from __future__ import annotations

from typing import Any, List, Sequence

import zmq

__all__ = ["EVENTS", "NOBLOCK", "POLLIN", "POLLOUT", "RCVMORE", "SNDMORE", "poll", "recv", "send"]

# Plain ints: the zmq module's constants are IntFlag enums, and every operation on them
# builds a new enum object.
POLLIN = int(zmq.POLLIN)
POLLOUT = int(zmq.POLLOUT)
NOBLOCK = int(zmq.NOBLOCK)
SNDMORE = int(zmq.SNDMORE)
RCVMORE = int(zmq.RCVMORE)
EVENTS = int(zmq.EVENTS)

#: poll a list of ``(socket, events)`` pairs; returns ``[(socket, revents), ...]``
poll = zmq.zmq_poll


COPY_LIMIT = 1 << 20


def send(sock: Any, parts: Sequence[Any], flags: int = 0) -> None:
    """Send ``parts`` as one multipart message. Parts of ``copy_threshold`` bytes or more
    (arrays) are sent without copying; keep them unchanged until sent."""
    last = len(parts) - 1
    limit = COPY_LIMIT
    for i, part in enumerate(parts):
        sock.send(part, (SNDMORE | flags) if i < last else flags, copy=len(part) < limit)


def recv(sock: Any, flags: int = 0) -> List[Any]:
    """Receive one multipart message as ``zmq.Frame`` objects (no copies; ``bytes(frame)``
    or ``memoryview(frame)`` to read one). A frame's ``more`` says whether another follows,
    which costs less than asking the socket (``RCVMORE``) after each part.

    Args:
        sock: the socket.
        flags: ``NOBLOCK`` to raise ``zmq.Again`` instead of waiting for the first part.
    """
    frame = sock.recv(flags, copy=False)
    parts = [frame]
    while frame.more:
        frame = sock.recv(copy=False)
        parts.append(frame)
    return parts
