"""The embedded default catalog: a local Tiled server on SQLite plus files in the data directory.

The server runs as its own process (what ``tiled serve config <generated yaml>`` serves, on a
free loopback port; see :mod:`ophyd_stem.catalog._serve`) so it lives and dies independently
of the RunEngine: a crash of one does not take the other down, and a Ctrl-C in the console
does not reach it (it runs in its own session). One server per data directory, long-lived:
the first command or session that needs it starts it, every later one finds it through
``server/server.json`` and a health check and reuses it (so ``ophyd-stem runs`` answers in
a second instead of starting a server), and it stops by itself after ``idle_timeout``
seconds without a request (30 minutes by default, ``$OPHYD_STEM_CATALOG_IDLE`` to change), or
with :func:`stop_server` (``ophyd-stem serve --stop``).

The generated configuration is what makes the catalog useful for Bluesky:

- the root container has the ``CatalogOfBlueskyRuns`` spec (version 3.0), so the client is a
  ``CatalogOfBlueskyRuns`` and ``Key("sample")``, ``ScanID`` and ``FullText`` queries work;
- ``BlueskyRun`` nodes export ``application/json-seq``, which ``run.documents()`` needs;
- HDF5 files under ``assets/`` may be read (``readable_storage``), event tables and inline
  arrays go to ``tables/`` (``writable_storage``).

Access needs the single-user API key, generated once and kept in ``server/api_key`` (mode
0600). It reaches the server through the environment, never the command line (which other
users can read with ``ps``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import httpx
import yaml

from ._server_files import (
    CatalogServerError,
    _load_or_create_api_key,
    _logging_config,
    _private_write,
    _server_config,
    ensure_catalog_initialized,
)
from .settings import CatalogSettings

__all__ = [
    "IDLE_TIMEOUT_ENV",
    "CatalogServerError",
    "EmbeddedServer",
    "ServerStatus",
    "ensure_catalog_initialized",
    "server_status",
    "stop_server",
]

_HOST = "127.0.0.1"
#: the servers this process spawned (the handles: a health check may fail on a busy machine)
_SPAWNED: list = []
#: environment variable: seconds without a request before the embedded server stops (0: never)
IDLE_TIMEOUT_ENV = "OPHYD_STEM_CATALOG_IDLE"
DEFAULT_IDLE_TIMEOUT = 1800.0


def default_idle_timeout() -> float:
    """``$OPHYD_STEM_CATALOG_IDLE`` seconds, else 30 minutes."""
    text = os.environ.get(IDLE_TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_IDLE_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise CatalogServerError(
            f"${IDLE_TIMEOUT_ENV} must be a number of seconds (0: never stop), not {text!r}"
        ) from None
    return max(value, 0.0)


def _free_port(preferred: Optional[int] = None) -> int:
    """A loopback port nobody listens on; ``preferred`` when it is free (a restart keeps it)."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if os.name == "posix":
                # As uvicorn binds: connections of a killed server lingering in TIME_WAIT
                # must not stop a restart from taking its old port back.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((_HOST, candidate))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise CatalogServerError("no free loopback port")  # pragma: no cover


@contextlib.contextmanager
def _start_lock(settings: CatalogSettings) -> Iterator[None]:
    """Serialise server start-up between processes sharing a data directory."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; two simultaneous starts may race
        yield
        return
    with open(settings.server_dir / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    except OSError:  # pragma: no cover - Windows raises OSError for dead pids
        return False
    return True


class EmbeddedServer:
    """A local Tiled server process serving the catalog in ``settings.data_dir``.

    Use :meth:`start` (which reuses a running server of the same data directory) rather than
    the constructor.

    Attributes:
        settings: where the catalog's files are.
        port: loopback TCP port it listens on.
        pid: process id of the server.
        api_key: the single-user API key (also in ``server/api_key``, mode 0600).
        owned: True when this process started it (and stops it at exit).

    Example:
        >>> server = EmbeddedServer.start(CatalogSettings("/tmp/stem-data"))  # doctest: +SKIP
        >>> server.uri                                                      # doctest: +SKIP
        'http://127.0.0.1:43127'
        >>> server.stop()                                                   # doctest: +SKIP
    """

    def __init__(
        self,
        settings: CatalogSettings,
        port: int,
        pid: int,
        api_key: str,
        process: Optional[subprocess.Popen] = None,
    ) -> None:
        self.settings = settings
        self.port = port
        self.pid = pid
        self.api_key = api_key
        self._process = process
        self.owned = process is not None
        self._atexit_registered = False

    def __repr__(self) -> str:
        return (
            f"<EmbeddedServer {self.uri} pid={self.pid} data_dir={str(self.settings.data_dir)!r}"
            f"{' owned' if self.owned else ''}>"
        )

    @property
    def uri(self) -> str:
        """The server's base URI, e.g. ``http://127.0.0.1:43127``."""
        return f"http://{_HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        """The server's log file (start-up messages and errors)."""
        return self.settings.server_dir / "server.log"

    # -- discovery -----------------------------------------------------------------------

    @staticmethod
    def _state_path(settings: CatalogSettings) -> Path:
        return settings.server_dir / "server.json"

    @classmethod
    def find(cls, settings: Optional[CatalogSettings] = None) -> Optional[EmbeddedServer]:
        """The healthy server already serving this data directory, or None.

        Args:
            settings: the data directory (default: :class:`CatalogSettings` defaults).
        """
        settings = settings or CatalogSettings()
        state_path = cls._state_path(settings)
        try:
            state = json.loads(state_path.read_text())
            port, pid = int(state["port"]), int(state["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        key_path = settings.server_dir / "api_key"
        try:
            api_key = key_path.read_text().strip()
        except OSError:
            return None
        server = cls(settings, port, pid, api_key)
        if server.healthy():
            return server
        return None

    @classmethod
    def started_here(cls, settings: Optional[CatalogSettings] = None) -> list[EmbeddedServer]:
        """The servers of this data directory that this process started and that still run:
        usually one, but a health check that timed out on a busy machine makes the next
        ``start`` (another thread's, say) spawn a second. Whoever stops "the server this
        process started" stops these."""
        data_dir = (settings or CatalogSettings()).data_dir
        return [
            server
            for server in _SPAWNED
            if server.settings.data_dir == data_dir and server._process.poll() is None
        ]

    def healthy(self, timeout: float = 2.0) -> bool:
        """True when the server answers, accepts the API key and serves this data directory."""
        if self._process is not None and self._process.poll() is not None:
            return False
        headers = {"Authorization": f"Apikey {self.api_key}"}
        try:
            with httpx.Client(trust_env=False, timeout=timeout) as http:
                if http.get(f"{self.uri}/healthz").status_code != 200:
                    return False
                response = http.get(f"{self.uri}/api/v1/metadata/", headers=headers)
        except httpx.HTTPError:
            return False
        if response.status_code != 200:
            return False
        try:
            metadata = response.json()["data"]["attributes"]["metadata"]
            return metadata["ophyd_stem"]["data_dir"] == str(self.settings.data_dir)
        except (ValueError, KeyError, TypeError):
            return False

    # -- life cycle ----------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        settings: Optional[CatalogSettings] = None,
        *,
        timeout: float = 60.0,
        stop_at_exit: bool = False,
        idle_timeout: Optional[float] = None,
    ) -> EmbeddedServer:
        """Reuse the running server of this data directory, or start one.

        Args:
            settings: the data directory (default: :class:`CatalogSettings` defaults).
            timeout: seconds to wait for a new server to answer.
            stop_at_exit: stop a server started here when this Python process exits (by
                default it outlives the process, for the next command to reuse).
            idle_timeout: a new server stops after this many seconds without a request
                (0: never); default ``$OPHYD_STEM_CATALOG_IDLE`` or 30 minutes.

        Returns:
            The server; ``owned`` tells whether this call started it.

        Raises:
            CatalogServerError: it did not come up (the end of its log is in the message).
        """
        settings = (settings or CatalogSettings()).ensure_dirs()
        running = cls.find(settings)  # the common case, without taking the lock
        if running is not None:
            return running
        idle = default_idle_timeout() if idle_timeout is None else max(float(idle_timeout), 0.0)
        with _start_lock(settings):
            running = cls.find(settings)
            if running is not None:
                return running
            ensure_catalog_initialized(settings)
            api_key = _load_or_create_api_key(settings)
            preferred = cls._recorded_port(settings)
            last_error: Optional[CatalogServerError] = None
            for _attempt in range(3):  # a port can be taken between probe and bind: retry
                port = _free_port(preferred)
                preferred = None
                try:
                    server = cls._spawn(settings, port, api_key, timeout, idle)
                except CatalogServerError as error:
                    last_error = error
                    if "address already in use" not in str(error).lower():
                        raise
                    continue
                _SPAWNED.append(server)
                if stop_at_exit:
                    atexit.register(server._stop_at_exit)
                    server._atexit_registered = True
                return server
            assert last_error is not None
            raise last_error

    @classmethod
    def _recorded_port(cls, settings: CatalogSettings) -> Optional[int]:
        try:
            return int(json.loads(cls._state_path(settings).read_text())["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def _spawn(
        cls, settings: CatalogSettings, port: int, api_key: str, timeout: float, idle: float
    ) -> EmbeddedServer:
        config_path = settings.server_dir / "config.yml"
        config_path.write_text(yaml.safe_dump(_server_config(settings), sort_keys=False))
        logging_path = settings.server_dir / "logging.yml"
        log_path = settings.server_dir / "server.log"
        logging_path.write_text(yaml.safe_dump(_logging_config(log_path), sort_keys=False))
        env = dict(os.environ, TILED_SINGLE_USER_API_KEY=api_key)
        command = [
            sys.executable, "-m", "ophyd_stem.catalog._serve", str(config_path),
            "--host", _HOST, "--port", str(port), "--log-config", str(logging_path),
            "--idle-timeout", repr(idle), "--state-file", str(cls._state_path(settings)),
        ]  # fmt: skip
        # stdout/stderr: tiled prints the URL *with the API key* there, so the file is 0600.
        fd = os.open(
            settings.server_dir / "console.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
        )
        with os.fdopen(fd, "w") as console:
            kwargs: dict = {}
            if os.name == "posix":
                kwargs["start_new_session"] = True  # Ctrl-C in the console must not reach it
            else:  # pragma: no cover - Windows
                kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                **kwargs,
            )
        # The server outlives this object (and maybe this process): a thread waits for it,
        # so that it is reaped whenever it exits (no zombie that looks alive to stop()).
        threading.Thread(target=process.wait, name="catalog-server-reaper", daemon=True).start()
        server = cls(settings, port, process.pid, api_key, process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if server.healthy(timeout=1.0):
                state = {
                    "pid": process.pid,
                    "port": port,
                    "started": time.time(),
                    "idle_timeout": idle,
                }
                _private_write(cls._state_path(settings), json.dumps(state))
                return server
            time.sleep(0.1)
        server._terminate(timeout=5.0)
        tail = ""
        for path in (settings.server_dir / "console.log", log_path):
            with contextlib.suppress(OSError):
                tail += path.read_text()[-1500:]
        raise CatalogServerError(
            f"the catalog server (tiled, port {port}) did not start within {timeout:.0f} s; "
            f"its log ends with:\n{tail}"
        )

    def _terminate(self, timeout: float) -> None:
        process = self._process
        if process is None:
            # Started by another session: we only know its pid, checked healthy just now.
            if self.healthy(timeout=1.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while _pid_alive(self.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5.0)
        else:
            process.wait()  # reap it (it may have crashed or been killed)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` seconds) and forget it.

        Safe to call on a server that already died. A server started by another session is
        stopped too: this is the "stop the embedded catalog" command.
        """
        self._terminate(timeout)
        state_path = self._state_path(self.settings)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if int(json.loads(state_path.read_text())["pid"]) == self.pid:
                state_path.unlink()
        if self._atexit_registered:
            atexit.unregister(self._stop_at_exit)
            self._atexit_registered = False

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop(timeout=5.0)


@dataclass(frozen=True)
class ServerStatus:
    """What ``ophyd-stem serve --status`` says about the embedded catalog server.

    Attributes:
        data_dir: the data directory it serves.
        running: True when a healthy server answers for it.
        uri: its address (None when not running).
        pid: its process id (None when not running).
        started: when it started, seconds since the epoch (None when not running).
        idle_timeout: seconds without a request after which it stops (0: never).
        idle_for: seconds since its last request, as far as it recorded (None if unknown).
        log_path: its log file.
    """

    data_dir: Path
    running: bool
    uri: Optional[str]
    pid: Optional[int]
    started: Optional[float]
    idle_timeout: Optional[float]
    idle_for: Optional[float]
    log_path: Path

    def __str__(self) -> str:
        if not self.running:
            return f"catalog server: not running (data directory {self.data_dir})"
        parts = [f"catalog server: running at {self.uri} (pid {self.pid})"]
        if self.started:
            parts.append(f"up {_duration(time.time() - self.started)}")
        if self.idle_for is not None:
            parts.append(f"idle {_duration(self.idle_for)}")
        if self.idle_timeout:
            parts.append(f"stops after {_duration(self.idle_timeout)} without a request")
        elif self.idle_timeout == 0:
            parts.append("never stops by itself")
        return ", ".join(parts) + f"\n  data directory {self.data_dir}\n  log {self.log_path}"


def _duration(seconds: float) -> str:
    seconds = max(float(seconds), 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def server_status(settings: Optional[CatalogSettings] = None) -> ServerStatus:
    """Whether the embedded catalog server of a data directory runs, where, and since when.

    Starts nothing. Example:
        >>> print(server_status(CatalogSettings("/tmp/stem-data")))   # doctest: +SKIP
        catalog server: running at http://127.0.0.1:43127 (pid 4242), up 12 min, idle 3 s, ...
    """
    settings = settings or CatalogSettings()
    log_path = settings.server_dir / "server.log"
    server = EmbeddedServer.find(settings)
    if server is None:
        return ServerStatus(settings.data_dir, False, None, None, None, None, None, log_path)
    state: dict = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(EmbeddedServer._state_path(settings).read_text())
    idle_for = None
    with contextlib.suppress(OSError):
        idle_for = time.time() - (settings.server_dir / "activity").stat().st_mtime
    return ServerStatus(
        data_dir=settings.data_dir,
        running=True,
        uri=server.uri,
        pid=server.pid,
        started=state.get("started"),
        idle_timeout=state.get("idle_timeout"),
        idle_for=idle_for,
        log_path=log_path,
    )


def stop_server(settings: Optional[CatalogSettings] = None, timeout: float = 10.0) -> bool:
    """Stop the embedded catalog server of a data directory; False if none was running.

    The catalog's files stay; the next command that needs the catalog starts a new server.
    """
    server = EmbeddedServer.find(settings or CatalogSettings())
    if server is None:
        return False
    server.stop(timeout=timeout)
    return True
