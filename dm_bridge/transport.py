"""Sending and receiving multipart messages with as little Python per call as possible.

pyzmq's ``send_multipart``/``recv_multipart`` and ``Socket.poll`` are convenient, but on the
bridge's hot path (a small call is a few tens of microseconds end to end) their overheads
show: flag arithmetic on ``IntFlag`` enums, a new ``Poller`` per ``Socket.poll``, and a
``Frame`` object per received part. These helpers do the same with plain integers, receive
the small leading parts (envelope, delimiter, header) as ``bytes`` and only array frames
without copying.

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


def send(sock: Any, parts: Sequence[Any], flags: int = 0) -> None:
    """Send ``parts`` as one multipart message. Parts of ``copy_threshold`` bytes or more
    (arrays) are sent without copying; keep them unchanged until sent."""
    last = len(parts) - 1
    for i, part in enumerate(parts):
        sock.send(part, (SNDMORE | flags) if i < last else flags, copy=len(part) < 65536)


def recv(sock: Any, flags: int = 0, small: int = 3, first_frame: bool = False) -> List[Any]:
    """Receive one multipart message: the first ``small`` parts as ``bytes`` (the routing
    envelope, delimiter and header), the rest as ``zmq.Frame`` (arrays, not copied).

    Args:
        sock: the socket.
        flags: ``NOBLOCK`` to raise ``zmq.Again`` instead of waiting for the first part.
        small: how many leading parts to copy into ``bytes``.
        first_frame: receive the first part as a ``zmq.Frame`` anyway (a ROUTER's routing
            id, to ask which connection it came on).
    """
    get = sock.getsockopt
    parts = [sock.recv(flags, copy=not first_frame)]
    while get(RCVMORE):
        parts.append(sock.recv(copy=len(parts) < small))
    return parts
