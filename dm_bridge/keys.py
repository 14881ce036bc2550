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
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, List, NamedTuple, Optional, Set, Tuple, Union

import zmq
import zmq.auth
from zmq.utils import z85

__all__ = [
    "HandshakeLog",
    "ServerSecurity",
    "check_key_permissions",
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
    # (new folders writable by their owner only, whatever the umask: the server refuses a
    # key folder or allow-list that other users could change)
    for folder, mode in ((out, 0o755), (allowed, 0o755), (private, 0o700)):
        folder.mkdir(mode=mode, parents=True, exist_ok=True)
    server_public, server_secret = out / "server.key", out / "server.key_secret"
    if not server_secret.exists():
        zmq.auth.create_certificates(str(out), "server")
        _restrict(server_secret)
        _owner_writes(server_public)
    made = []
    first = _next_client_number(allowed, private)
    for n in range(first, first + clients):
        name = f"client-{n}"
        public_file, secret_file = zmq.auth.create_certificates(str(private), name)
        _restrict(Path(secret_file))
        # Only public keys go to the server's folder; the pair stays in private/.
        moved = allowed / Path(public_file).name
        os.replace(public_file, moved)
        _owner_writes(moved)
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


def _owner_writes(path: Path) -> None:
    # A public key others may read but not rewrite (a group-writable umask would let them
    # rewrite an allowed client's key, which the server then refuses to load).
    with contextlib.suppress(OSError):
        os.chmod(path, os.stat(path).st_mode & ~(stat.S_IWGRP | stat.S_IWOTH))


# ------------------------------------------------------------------------------------ policy


def is_loopback(host: str) -> bool:
    """Whether ``host`` is exactly a loopback address: ``localhost``, ``127.0.0.0/8`` or
    ``::1``. Anything else (``0.0.0.0``, ``::``, host names, IPv4-mapped IPv6 such as
    ``::ffff:127.0.0.1``) is not, whatever the Python version says about the last."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name, "*": not provably loopback
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return False
    return address.is_loopback


class ServerSecurity(NamedTuple):
    """The server's CurveZMQ configuration: its key pair and the allowed client keys."""

    public: bytes
    secret: bytes
    allowed: FrozenSet[bytes]


def check_key_permissions(secret_key: Any, allowed_clients: Any) -> List[str]:
    """What is wrong with who may read the server's secret key or change its allow-list.

    A secret key that other users can read lets them impersonate the microscope; so does a
    folder holding it that other users can write (they replace the key with one of their
    own, then the server speaks with a key they know). An allow-list folder (or key file)
    that other users can write lets them admit themselves. POSIX permission bits only: on
    Windows (no such bits; access is by ACL) nothing is checked.

    Returns:
        One line per problem (empty: fine).
    """
    if sys.platform.startswith("win"):
        return []
    problems = []
    candidates = [(secret_key, "read", stat.S_IRWXG | stat.S_IRWXO)]
    if isinstance(secret_key, (str, os.PathLike)) and os.path.isfile(secret_key):
        folder = os.path.dirname(os.path.abspath(os.fspath(secret_key)))
        # (a sticky folder such as /tmp lets others add files, not replace this one)
        if not os.stat(folder).st_mode & stat.S_ISVTX:
            candidates.append((folder, "replace", stat.S_IWGRP | stat.S_IWOTH))
    sources = allowed_clients if isinstance(allowed_clients, (list, tuple)) else [allowed_clients]
    for source in sources:
        candidates.append((source, "write", stat.S_IWGRP | stat.S_IWOTH))
        if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
            # the key files the server will read from it: one writable by others admits
            # whoever rewrites it, however well the folder itself is protected
            for path in sorted(Path(os.fspath(source)).glob("*.key")):
                candidates.append((path, "write", stat.S_IWGRP | stat.S_IWOTH))
    for source, verb, bits in candidates:
        if not isinstance(source, (str, os.PathLike)) or not os.path.exists(source):
            continue  # a key given as text: nothing on disk to protect
        mode = os.stat(source).st_mode
        if mode & bits:
            if verb == "read":
                what, done, fix = "secret key", "read", "600"
            elif verb == "replace":
                what, done, fix = "folder of the secret key", "written (the key replaced)", "go-w"
            else:
                what, done, fix = "allowed-clients folder or key", "changed", "go-w"
            problems.append(
                f"{what} {os.fspath(source)} can be {done} by other users "
                f"(mode {stat.filemode(mode)}); run: chmod {fix} {os.fspath(source)}"
            )
    return problems


def server_security(
    host: str,
    server_secret_key: Optional[KeySource],
    allowed_clients: Optional[Union[KeySource, Iterable[KeySource]]],
    insecure_ok: bool = False,
) -> Optional[ServerSecurity]:
    """Apply the bind policy; check the key files' permissions; load the keys.

    Args:
        host: the address the server binds.
        server_secret_key: the server's key pair (file or Z85 secret key).
        allowed_clients: the allowed client public keys (folder, file, key, or a list).
        insecure_ok: start although other users could read the secret key or change the
            allow-list (logged as an error instead of refused).

    Returns:
        ``None`` for a loopback server without keys; the loaded keys otherwise.

    Raises:
        ValueError: a non-loopback ``host`` without keys, half a key configuration, an empty
            allow-list, a public key file given as the server's secret key, or key files
            other users could read or change (unless ``insecure_ok``).
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
    problems = check_key_permissions(server_secret_key, allowed_clients)
    if problems and not insecure_ok:
        raise ValueError("refusing to start: " + "; ".join(problems) + " (or pass --insecure-keys)")
    for problem in problems:
        log.error("INSECURE KEYS: %s", problem)
    public, secret = load_key_pair(server_secret_key)
    allowed = frozenset(load_allowed_clients(allowed_clients))
    if not allowed:
        raise ValueError("no allowed client keys found: no client could connect")
    return ServerSecurity(public, secret, allowed)


class HandshakeLog:
    """Logs refused CurveZMQ handshakes without flooding the log.

    The first refusal of each client key (and of each kind of failed handshake) is logged
    at once, at most ``first_lines`` of them per ``interval``; repeats, and new keys beyond
    that, are counted and summarised at most once per ``interval`` seconds: when the next
    refusal comes after the interval, or when the interval ends (a timer), or at
    :meth:`close` (the server stopping), whichever is first, so that the last refusals of a
    burst are never left unsaid. A hostile client retrying every few milliseconds costs one
    line per interval, not one per attempt, also when it makes a fresh key pair for every
    attempt; and the keys remembered are bounded. Thread-safe (the ZAP handler and the
    server's socket monitor both report).

    Args:
        logger: where to write.
        interval: seconds between summaries of repeated refusals.
        first_lines: refusals of sources not seen before logged one by one per interval.
        remembered: distinct sources remembered at most (beyond: counted, not named).
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        first_lines: int = 10,
        remembered: int = 1024,
    ) -> None:
        self.logger = logger
        self.interval = float(interval)
        self.first_lines = int(first_lines)
        self.remembered = int(remembered)
        self._lock = threading.Lock()
        self._seen: Set[str] = set()  # sources logged by name once
        self._sources: Set[str] = set()  # sources of the repeats not yet summarised
        self._named = 0  # sources logged by name since the last summary
        self._repeats = 0
        self._last_summary = time.monotonic()
        self._timer: Optional[threading.Timer] = None  # says the repeats when the interval ends
        self._closed = False
        #: refusals seen in total (for status and tests)
        self.total = 0

    def refused_key(self, key: str) -> None:
        """The ZAP handler refused a client public key."""
        self._note(f"key {key}", f"refused a client with unknown public key {key}")

    def failed(self, event: int, endpoint: Any) -> None:
        """The socket monitor saw a failed handshake (wrong server key, CURVE on one side)."""
        name = zmq.Event(event).name if hasattr(zmq, "Event") else str(event)
        self._note(
            f"event {name}",
            f"a CurveZMQ handshake failed ({name}) on {endpoint!r}: wrong server key, or a "
            "client without CurveZMQ",
        )

    def _note(self, what: str, first_line: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.total += 1
            if not self._repeats and now - self._last_summary >= self.interval:
                self._named, self._last_summary = 0, now  # a quiet interval: a new one
            first = what not in self._seen and self._named < self.first_lines
            if first:
                self._named += 1
                if len(self._seen) < self.remembered:
                    self._seen.add(what)
            else:
                self._repeats += 1
                if len(self._sources) < self.remembered:
                    self._sources.add(what)
            summary = None
            if self._repeats and now - self._last_summary >= self.interval:
                summary = self._take_summary(now)
            elif self._repeats and self._timer is None and not self._closed:
                # no refusal may follow: say these when the interval ends all the same
                wait = self._last_summary + self.interval - now
                self._timer = threading.Timer(wait, self._interval_over)
                self._timer.daemon = True
                self._timer.name = "dm-bridge-handshake-log"
                self._timer.start()
        if first:
            self.logger.warning("%s (repeats are summarised every %g s)", first_line, self.interval)
        self._say(summary)

    def _take_summary(self, now: float) -> Tuple[int, int]:
        """The repeats to summarise, counting afresh from ``now`` (the lock held)."""
        summary = (self._repeats, len(self._sources))
        self._repeats, self._named, self._last_summary = 0, 0, now
        self._sources.clear()
        return summary

    def _say(self, summary: Optional[Tuple[int, int]]) -> None:
        if summary is not None:
            self.logger.warning(
                "%d more refused CurveZMQ handshake(s) in the last %g s (%d distinct source(s))",
                summary[0],
                self.interval,
                summary[1],
            )

    def _interval_over(self) -> None:
        with self._lock:
            self._timer = None
            summary = self._take_summary(time.monotonic()) if self._repeats else None
        self._say(summary)

    def close(self) -> None:
        """Say the repeats not yet summarised (the server is stopping) and stop the timer.
        Refusals reported afterwards are counted and summarised at the next refusal only."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
            summary = self._take_summary(time.monotonic()) if self._repeats else None
        if timer is not None:
            timer.cancel()
        self._say(summary)


class _AllowList:
    """ZAP credentials provider: a client may connect if its public key is listed."""

    def __init__(self, keys: Iterable[bytes], handshakes: Optional[HandshakeLog] = None) -> None:
        self.keys = frozenset(keys)
        self.handshakes = handshakes or HandshakeLog(log)

    def callback(self, domain: str, key: bytes) -> bool:
        allowed = key in self.keys
        if not allowed:
            self.handshakes.refused_key(key.decode("ascii", "replace"))
        return allowed


def start_authenticator(
    context: zmq.Context, allowed: Iterable[bytes], handshakes: Optional[HandshakeLog] = None
) -> Any:
    """Start a ZAP handler on ``context`` admitting exactly the ``allowed`` client keys.

    Start it before binding: a CURVE socket without a ZAP handler admits any client.
    Stop it with ``.stop()`` after closing the sockets. Refusals go to ``handshakes``
    (throttled); the authenticator's own per-attempt log lines are kept at debug level.
    """
    from zmq.auth.thread import ThreadAuthenticator

    quiet = logging.getLogger("dm_bridge.server.zap")
    quiet.setLevel(logging.ERROR)  # pyzmq logs each refusal at info/debug: ours is throttled
    authenticator = ThreadAuthenticator(context, log=quiet)
    authenticator.start()
    authenticator.configure_curve_callback("*", _AllowList(allowed, handshakes))
    return authenticator
