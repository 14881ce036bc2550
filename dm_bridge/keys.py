"""Who may talk to the DM bridge: CurveZMQ keys (make, load, allow-list) and the bind policy.

Policy: on loopback the server needs no keys; on any other address it refuses to start
without a server key pair and at least one allowed client public key (:func:`server_security`).

Key files are ZeroMQ's own certificate format (``zmq.auth``), so tools from other languages
(``zcert`` in CZMQ) read them too. :func:`generate_keys` writes::

    OUT/server.key                  server public key: give it to every client
    OUT/server.key_secret           server secret key: stays on the microscope PC
    OUT/clients/client-1.key        client public keys: the server's --allowed-clients folder
    OUT/private/client-1.key_secret client 1's key pair: give it to client 1 only

Standard library and pyzmq only, Python 3.8 syntax (the server loads keys inside DM).

Example:
    >>> import tempfile
    >>> paths = generate_keys(tempfile.mkdtemp(), clients=2)
    >>> public, secret = load_key_pair(paths["clients"][0]["secret"])
    >>> public in load_allowed_clients(paths["allowed_clients"])
    True
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Tuple, Union

import zmq
import zmq.auth
from zmq.utils import z85

__all__ = [
    "ServerSecurity",
    "generate_keys",
    "is_loopback",
    "load_allowed_clients",
    "load_key_pair",
    "load_public_key",
    "server_security",
    "start_authenticator",
]

log = logging.getLogger("dm_bridge.server")

KeySource = Union[str, bytes, os.PathLike]

_Z85_LENGTH = 40  # a 32-byte Curve25519 key in Z85 text


def _as_key(text: Union[str, bytes]) -> bytes:
    key = text.encode("ascii") if isinstance(text, str) else bytes(text)
    if len(key) != _Z85_LENGTH:
        raise ValueError(f"a CurveZMQ key is {_Z85_LENGTH} Z85 characters, got {len(key)}")
    try:
        z85.decode(key)
    except Exception as exc:
        raise ValueError(f"not a Z85-encoded key: {exc}") from None
    return key


def _is_path(source: Any) -> bool:
    return isinstance(source, os.PathLike) or (
        isinstance(source, str) and (os.path.exists(source) or len(source) != _Z85_LENGTH)
    )


def load_public_key(source: KeySource) -> bytes:
    """A public key from a ``.key``/``.key_secret`` file, or given as Z85 text.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a valid key.
    """
    if _is_path(source):
        public, _ = zmq.auth.load_certificate(os.fspath(source))
        return _as_key(public)
    return _as_key(source)  # type: ignore[arg-type]


def load_key_pair(source: KeySource) -> Tuple[bytes, bytes]:
    """``(public, secret)`` from a ``.key_secret`` file, or from a Z85 secret key.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no secret key (a ``.key`` public file), or a bad key.
    """
    if _is_path(source):
        path = os.fspath(source)
        public, secret = zmq.auth.load_certificate(path)
        if not secret:
            raise ValueError(f"{path} holds no secret key (use the .key_secret file)")
        return _as_key(public), _as_key(secret)
    secret = _as_key(source)  # type: ignore[arg-type]
    return zmq.curve_public(secret), secret


def load_allowed_clients(source: Union[KeySource, Iterable[KeySource]]) -> List[bytes]:
    """Public keys of the clients allowed to connect.

    Args:
        source: a directory (every ``*.key`` file in it), one key file, one Z85 key, or a
            list of any of these.

    Raises:
        FileNotFoundError: a file or directory does not exist.
        ValueError: a key is malformed.
    """
    if isinstance(source, (str, bytes, os.PathLike)):
        if isinstance(source, bytes) or not os.path.isdir(os.fspath(source)):
            return [load_public_key(source)]
        return [load_public_key(p) for p in sorted(Path(os.fspath(source)).glob("*.key"))]
    keys: List[bytes] = []
    for item in source:
        keys.extend(load_allowed_clients(item))
    return keys


def _next_client_number(*folders: Path) -> int:
    numbers = [0]
    for folder in folders:
        for path in folder.glob("client-*.key*"):
            match = re.match(r"client-(\d+)\.key", path.name)
            if match:
                numbers.append(int(match.group(1)))
    return max(numbers) + 1


def generate_keys(out_dir: Union[str, os.PathLike], clients: int = 1) -> Dict[str, Any]:
    """Write a server key pair (unless one exists) and ``clients`` new client key pairs.

    Existing files are never overwritten: running it again adds clients.

    Args:
        out_dir: folder to write (created if needed).
        clients: number of new client key pairs.

    Returns:
        Paths: ``server_public``, ``server_secret``, ``allowed_clients`` (folder) and
        ``clients`` (a list of ``{"public", "secret"}``).
    """
    if clients < 0:
        raise ValueError("clients must be >= 0")
    out = Path(out_dir)
    allowed = out / "clients"
    private = out / "private"
    for folder in (out, allowed, private):
        folder.mkdir(parents=True, exist_ok=True)
    server_public, server_secret = out / "server.key", out / "server.key_secret"
    if not server_secret.exists():
        zmq.auth.create_certificates(str(out), "server")
        _restrict(server_secret)
    made = []
    first = _next_client_number(allowed, private)
    for n in range(first, first + clients):
        name = f"client-{n}"
        public_file, secret_file = zmq.auth.create_certificates(str(private), name)
        _restrict(Path(secret_file))
        # Only public keys go to the server's folder; the pair stays in private/.
        moved = allowed / Path(public_file).name
        os.replace(public_file, moved)
        made.append({"public": moved, "secret": Path(secret_file)})
    return {
        "server_public": server_public,
        "server_secret": server_secret,
        "allowed_clients": allowed,
        "clients": made,
    }


def _restrict(path: Path) -> None:
    # Windows file systems may not support it; the file is still written.
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)


# ------------------------------------------------------------------------------------ policy


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name, "*", "0.0.0.0": not provably loopback


class ServerSecurity(NamedTuple):
    """The server's CurveZMQ configuration: its key pair and the allowed client keys."""

    public: bytes
    secret: bytes
    allowed: FrozenSet[bytes]


def server_security(
    host: str,
    server_secret_key: Optional[KeySource],
    allowed_clients: Optional[Union[KeySource, Iterable[KeySource]]],
) -> Optional[ServerSecurity]:
    """Apply the bind policy; load the keys.

    Returns:
        ``None`` for a loopback server without keys; the loaded keys otherwise.

    Raises:
        ValueError: a non-loopback ``host`` without keys, half a key configuration, an empty
            allow-list, or a public key file given as the server's secret key.
        FileNotFoundError: a key file or folder does not exist.
    """
    if (server_secret_key is None) != (allowed_clients is None):
        raise ValueError("CurveZMQ needs both the server's secret key and the allowed client keys")
    if server_secret_key is None or allowed_clients is None:
        if not is_loopback(host):
            raise ValueError(
                f"refusing to bind {host!r} without authentication: off loopback the bridge "
                "requires CurveZMQ. Make keys with 'dm-bridge keys --out DIR', then pass "
                "--server-key DIR/server.key_secret --allowed-clients DIR/clients/"
            )
        return None
    public, secret = load_key_pair(server_secret_key)
    allowed = frozenset(load_allowed_clients(allowed_clients))
    if not allowed:
        raise ValueError("no allowed client keys found: no client could connect")
    return ServerSecurity(public, secret, allowed)


class _AllowList:
    """ZAP credentials provider: a client may connect if its public key is listed."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        self.keys = frozenset(keys)

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in self.keys
        if not allowed:
            log.warning("refused a client with unknown public key %s", key.decode("ascii"))
        return allowed


def start_authenticator(context: zmq.Context, allowed: Iterable[bytes]) -> Any:
    """Start a ZAP handler on ``context`` admitting exactly the ``allowed`` client keys.

    Start it before binding: a CURVE socket without a ZAP handler admits any client.
    Stop it with ``.stop()`` after closing the sockets.
    """
    from zmq.auth.thread import ThreadAuthenticator

    authenticator = ThreadAuthenticator(context, log=log)
    authenticator.start()
    authenticator.configure_curve_callback("*", _AllowList(allowed))
    return authenticator
