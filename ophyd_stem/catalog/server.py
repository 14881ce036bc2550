"""The embedded default catalog: a local Tiled server on SQLite plus files in the data directory.

The server runs as its own process (``tiled serve config <generated yaml>`` on a free loopback
port) so it lives and dies independently of the RunEngine: a crash of one does not take the
other down, and a Ctrl-C in the console does not reach it (it runs in its own session). One
server per data directory: a second session finds the first one's server through
``server/server.json`` and a health check, and reuses it.

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
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import httpx
import yaml

from .settings import CatalogSettings

__all__ = ["CatalogServerError", "EmbeddedServer", "ensure_catalog_initialized"]

#: exporter that ``run.documents()`` relies on (bluesky-tiled-plugins)
JSON_SEQ_EXPORTER = "bluesky_tiled_plugins.exporters:json_seq_exporter"
_HOST = "127.0.0.1"


class CatalogServerError(RuntimeError):
    """The embedded catalog server could not be started or reached."""


def _private_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only (created 0600, never wider)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.replace(tmp, path)


def _load_or_create_api_key(settings: CatalogSettings) -> str:
    path = settings.server_dir / "api_key"
    if path.exists():
        key = path.read_text().strip()
        if key.isalnum():
            return key
    key = secrets.token_hex(32)  # tiled accepts alphanumeric keys only
    _private_write(path, key + "\n")
    return key


def _run_tiled(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    # The venv's own interpreter: no reliance on a `tiled` script being on PATH.
    return subprocess.run(
        [sys.executable, "-m", "tiled", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ensure_catalog_initialized(settings: CatalogSettings) -> None:
    """Create the SQLite catalog once with ``tiled catalog init``.

    Done explicitly rather than through the server's ``init_if_not_exists``, which re-checks
    (and may race) on every start. An existing catalog is left as it is.

    Raises:
        CatalogServerError: ``tiled catalog init`` failed (its message is included).
    """
    settings.ensure_dirs()
    if settings.catalog_db.exists():
        return
    result = _run_tiled("catalog", "init", "--if-not-exists", settings.catalog_uri)
    if result.returncode != 0:
        raise CatalogServerError(
            f"could not initialise the catalog {settings.catalog_db}:\n{result.stderr[-2000:]}"
        )


def _server_config(settings: CatalogSettings) -> dict:
    return {
        "trees": [
            {
                "path": "/",
                "tree": "catalog",
                "args": {
                    "uri": settings.catalog_uri,
                    "writable_storage": [str(settings.tables_dir), settings.tables_uri],
                    "readable_storage": [str(settings.assets_dir)],
                    "specs": [{"name": "CatalogOfBlueskyRuns", "version": "3.0"}],
                    # Lets a session recognise its own server behind a recorded port.
                    "metadata": {"ophyd_stem": {"data_dir": str(settings.data_dir)}},
                },
            }
        ],
        "media_types": {"BlueskyRun": {"application/json-seq": JSON_SEQ_EXPORTER}},
        # Live subscriptions (subscribe_to_streams) need a streaming cache; a local server
        # keeps it in memory. Production uses Redis (docs/catalog.md).
        "streaming_cache": {"uri": "memory"},
    }


def _logging_config(log_path: Path) -> dict:
    # Errors and start-up messages go to server/server.log; the per-request access log is
    # dropped (thousands of lines per scan, and it costs the server time per request).
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": str(log_path),
                "formatter": "plain",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["file"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["file"], "level": "WARNING", "propagate": False},
            "tiled": {"handlers": ["file"], "level": "WARNING", "propagate": False},
        },
    }


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
        stop_at_exit: bool = True,
    ) -> EmbeddedServer:
        """Reuse the running server of this data directory, or start one.

        Args:
            settings: the data directory (default: :class:`CatalogSettings` defaults).
            timeout: seconds to wait for a new server to answer.
            stop_at_exit: stop a server started here when this Python process exits.

        Returns:
            The server; ``owned`` tells whether this call started it.

        Raises:
            CatalogServerError: it did not come up (the end of its log is in the message).
        """
        settings = (settings or CatalogSettings()).ensure_dirs()
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
                    server = cls._spawn(settings, port, api_key, timeout)
                except CatalogServerError as error:
                    last_error = error
                    if "address already in use" not in str(error).lower():
                        raise
                    continue
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
        cls, settings: CatalogSettings, port: int, api_key: str, timeout: float
    ) -> EmbeddedServer:
        config_path = settings.server_dir / "config.yml"
        config_path.write_text(yaml.safe_dump(_server_config(settings), sort_keys=False))
        logging_path = settings.server_dir / "logging.yml"
        log_path = settings.server_dir / "server.log"
        logging_path.write_text(yaml.safe_dump(_logging_config(log_path), sort_keys=False))
        env = dict(os.environ, TILED_SINGLE_USER_API_KEY=api_key)
        command = [
            sys.executable, "-m", "tiled", "serve", "config", str(config_path),
            "--host", _HOST, "--port", str(port), "--log-config", str(logging_path),
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
        server = cls(settings, port, process.pid, api_key, process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if server.healthy(timeout=1.0):
                state = {"pid": process.pid, "port": port, "started": time.time()}
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
