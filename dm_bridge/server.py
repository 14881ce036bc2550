"""The DM bridge server: one instrument, many clients, one instrument command at a time.

:class:`Server` builds the server of the chosen transport: :mod:`dm_bridge.stream_server`
(``stream://``: plain TCP, length-framed; loopback only, the default there) or
:mod:`dm_bridge.server_zmq` (``tcp://``: ZeroMQ, with CurveZMQ required off loopback). Both
share :mod:`dm_bridge.server_core` (settings, the instrument and standby threads, the baton;
see ``docs/decisions/0009-bridge-instrument-thread-owns-the-socket.md`` and
``docs/decisions/0017-bridge-stream-transport.md``) and :mod:`dm_bridge.server_requests`
(what is done with each request).

Standard library, numpy and pyzmq only, Python 3.8 syntax: this module runs inside
DigitalMicrograph.

Example:
    >>> from dm_bridge.backends.minimal import MinimalBackend
    >>> server = Server(MinimalBackend(), port=0).start()   # background thread, free port
    >>> server.endpoint.startswith("stream://127.0.0.1:")
    True
    >>> server.stop()
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Union

from .backends.base import Backend
from .keys import is_loopback
from .server_core import (
    DEFAULT_MAX_REPLY_BYTES,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_PORT,
    DEFAULT_QUEUE_LIMIT,
    TAKEOVER,
    TRANSPORTS,
    ServerCore,
    _chosen_transport,
    address_for,
    transport_for,
)
from .server_zmq import ZmqServer
from .stream_server import StreamServer

__all__ = [
    "DEFAULT_MAX_REPLY_BYTES",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_PORT",
    "DEFAULT_QUEUE_LIMIT",
    "TAKEOVER",
    "TRANSPORTS",
    "Server",
    "ServerCore",
    "StreamServer",
    "ZmqServer",
    "address_for",
    "is_loopback",
    "transport_for",
]


class Server:
    """Serve one backend: builds a :class:`StreamServer` or a :class:`ZmqServer`.

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
        transport: ``"stream"`` (plain TCP, length-framed: the fastest, loopback only and
            without keys), ``"zmq"`` (ZeroMQ; CurveZMQ with keys, required off loopback) or
            ``"auto"`` (stream on loopback without keys, zmq otherwise). Default:
            :data:`DEFAULT_TRANSPORT`. The :attr:`endpoint`'s scheme names it
            (``stream://`` or ``tcp://``), and the clients choose theirs by it.

    Raises:
        ValueError: a non-loopback ``host`` without keys, half a key configuration, key
            files other users could read or change, or the stream transport with keys or
            off loopback.
    """

    def __new__(  # type: ignore[misc]
        cls,
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
    ) -> ServerCore:
        chosen = _chosen_transport(
            backend, host, port, server_secret_key, allowed_clients=allowed_clients,
            transport=transport,
        )  # fmt: skip
        kind = StreamServer if chosen == "stream" else ZmqServer
        return kind(
            backend,
            host,
            port,
            server_secret_key,
            allowed_clients,
            queue_limit,
            max_request_bytes,
            max_reply_bytes,
            insecure_keys,
            chosen,
        )
