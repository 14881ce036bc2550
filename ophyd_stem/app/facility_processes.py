"""The one-machine facility's processes: Redis, the catalog, (a twin bridge,) and the
re-manager with this project's profile, each started in its own process group, waited for,
and stopped in reverse order (docs/facility.md).

``ophyd-stem serve`` (:mod:`ophyd_stem.app.facility`) is the command around this engine.

Example (Python)::

    >>> with Facility(FacilityConfig(data_dir="/tmp/stem", redis_port=0, control_port=0,
    ...                              info_port=0)) as facility:              # doctest: +SKIP
    ...     QueueClient(facility.control_address).run("count", ["eels"])
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PROFILE_STARTUP", "Facility", "FacilityConfig", "FacilityError"]

PROFILE_STARTUP = (
    Path(__file__).resolve().parents[2] / "profile_collection" / "profile_ophyd_stem" / "startup"
)


class FacilityError(RuntimeError):
    """A piece of the facility could not be started (the message says which and why)."""


@dataclass
class FacilityConfig:
    """What ``ophyd-stem serve`` starts, and where.

    Attributes:
        data_dir: the catalog's data directory; the facility's logs and state go to
            ``<data_dir>/facility/``.
        host: the address the re-manager and the bridge bind (``0.0.0.0`` for the network;
            the catalog and Redis stay on loopback).
        redis_port, control_port, info_port, bridge_port: TCP ports; 0 = any free one.
        twin_bridge: run the digital twin's bridge as its own process (else in the worker).
        bridge: the address of a real DM bridge instead (the worker connects to it);
            ``server_key``, ``client_key``: its CurveZMQ key files.
        sample: the twin's sample.
        ipython_kernel: run the re-manager's worker as an IPython kernel.
        catalog, api_key: an existing Tiled catalog instead of starting one.
        catalog_database: a PostgreSQL database (``postgresql://user@host:5432/db``) for the
            catalog and its event tables: a Tiled server on it is started on
            ``catalog_port`` (0 = a free one) instead of the embedded SQLite one.
        operator: recorded in every run.
        startup_dir: the profile's startup folder (default: this repository's).
        env: more environment variables for the re-manager's worker.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    redis_port: int = 6379
    control_port: int = 60615
    info_port: int = 60625
    bridge_port: int = 5555
    twin_bridge: bool = False
    bridge: str | None = None
    server_key: str | None = None
    client_key: str | None = None
    sample: str = "graphene"
    ipython_kernel: bool = False
    catalog: str | None = None
    api_key: str | None = None
    catalog_database: str | None = None
    catalog_port: int = 8000
    operator: str | None = None
    startup_dir: Path = field(default_factory=lambda: PROFILE_STARTUP)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        self.startup_dir = Path(self.startup_dir).expanduser().resolve()


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port(host: str, port: int, what: str, option: str) -> int:
    """``port``, or a free one for 0; a clear error when it is taken."""
    if port == 0:
        return _free_port(host)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise FacilityError(
                f"port {port} for the {what} is taken (another one running?); "
                f"give {option} 0 for a free one"
            ) from None
    return port


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


@dataclass
class _Piece:
    name: str
    process: subprocess.Popen
    log: Path
    address: str

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to its process group (it was started in its own session), then SIGKILL."""
        process = self.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        # children left in the group (a worker the manager did not reap) go too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""


class Facility:
    """Redis, the catalog, (a twin bridge,) and the re-manager with this profile.

    Use as a context manager, or :meth:`start` and :meth:`stop`.
    """

    def __init__(self, config: FacilityConfig) -> None:
        self.config = config
        self.dir = config.data_dir / "facility"
        self.pieces: list[_Piece] = []
        self.catalog_uri: str | None = None
        self.api_key: str | None = None
        self._catalog_server: Any = None
        self.control_address = ""
        self.info_address = ""
        self.bridge_address: str | None = None

    # -- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> Facility:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def state_path(self) -> Path:
        return self.dir / "facility.json"

    def start(self, timeout: float = 300.0, log: Any = None) -> Facility:
        """Start every piece and open the RunEngine environment.

        Args:
            timeout: seconds for the re-manager's environment to open (the profile loads).
            log: called with a line as each piece comes up.

        Raises:
            FacilityError: a piece did not come up; what did is stopped again.
        """
        say = log or (lambda line: None)
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_redis()
            say(f"Redis        {self.pieces[-1].address}")
            self._start_catalog()
            say(f"catalog      {self.catalog_uri}")
            if self.config.twin_bridge:
                self._start_bridge()
                say(f"twin bridge  {self.bridge_address}")
            self._start_re_manager(timeout)
            say(f"re-manager   {self.control_address}")
        except BaseException:
            self.stop()
            raise
        self._write_state()
        return self

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Any:
        log = self.dir / f"{name}.log"
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            # its own session: Ctrl-C in the terminal reaches serve only, which stops each
            # piece in order; the group takes the re-manager's worker along
            return (
                subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                ),
                log,
            )

    def _wait(self, piece: _Piece, ready: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not piece.alive():
                raise FacilityError(f"the {what} exited at start; its log ends:\n{piece.tail()}")
            if ready():
                return
            time.sleep(0.1)
        raise FacilityError(f"the {what} did not answer within {timeout:.0f} s:\n{piece.tail()}")

    def _start_redis(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise FacilityError(
                "redis-server is not installed; on Debian/Ubuntu: apt-get install redis-server"
            )
        host = "127.0.0.1"  # the queue's state stays on this machine
        port = _port(host, self.config.redis_port, "Redis server", "--redis-port")
        redis_dir = self.dir / "redis"
        redis_dir.mkdir(exist_ok=True)
        process, log = self._spawn(
            "redis",
            [
                executable, "--port", str(port), "--bind", host, "--dir", str(redis_dir),
                "--save", "", "--appendonly", "no", "--daemonize", "no",
            ],
        )  # fmt: skip
        piece = _Piece("redis", process, log, f"{host}:{port}")
        self.pieces.append(piece)
        self._wait(piece, lambda: _redis_ping(host, port), 30, "Redis server")

    def _start_catalog(self) -> None:
        if self.config.catalog:
            self.catalog_uri, self.api_key = self.config.catalog, self.config.api_key
            return
        if self.config.catalog_database:
            self._start_tiled_on_postgresql(self.config.catalog_database)
            return
        from ophyd_stem.catalog import CatalogSettings, EmbeddedServer

        self._catalog_server = EmbeddedServer.start(CatalogSettings(self.config.data_dir))
        self.catalog_uri = self._catalog_server.uri
        self.api_key = self._catalog_server.api_key

    def _start_tiled_on_postgresql(self, database: str) -> None:
        """Tiled serving a catalog of Bluesky runs whose metadata and event tables live in
        PostgreSQL; survey images stay HDF5 files in the data directory (docs/facility.md)."""
        from ophyd_stem.catalog import CatalogSettings

        from .facility_catalog import api_key, prepare_database, write_tiled_config

        settings = CatalogSettings(self.config.data_dir).ensure_dirs()
        try:
            prepare_database(database)
        except (ValueError, RuntimeError) as exc:
            raise FacilityError(str(exc)) from None
        self.api_key = api_key(self.dir / "catalog_api_key")
        config_path = write_tiled_config(self.dir / "catalog.yml", database, settings)
        host = "127.0.0.1"
        port = _port(host, self.config.catalog_port, "catalog server", "--catalog-port")
        env = dict(os.environ, TILED_SINGLE_USER_API_KEY=self.api_key)
        command = [
            sys.executable, "-m", "tiled", "serve", "config", str(config_path),
            "--host", host, "--port", str(port),
        ]  # fmt: skip
        process, log = self._spawn("catalog", command, env)
        self.catalog_uri = f"http://{host}:{port}"
        piece = _Piece("catalog", process, log, self.catalog_uri)
        self.pieces.append(piece)
        self._wait(piece, lambda: _http_ok(f"{self.catalog_uri}/healthz"), 120, "catalog server")

    def _start_bridge(self) -> None:
        host = self.config.host
        port = _port(host, self.config.bridge_port, "twin bridge", "--bridge-port")
        from dm_bridge.server import address_for, transport_for

        transport = transport_for(host)  # stream on loopback (see the bridge's ADR 0017)
        command = [
            sys.executable, "-m", "dm_bridge.cli", "serve", "--backend", "twin",
            "--host", host, "--port", str(port), "--sample", self.config.sample,
            "--transport", transport,
        ]  # fmt: skip
        process, log = self._spawn("bridge", command)
        self.bridge_address = address_for(_connect_host(host), port, transport)
        piece = _Piece("bridge", process, log, self.bridge_address)
        self.pieces.append(piece)
        self._wait(piece, lambda: _bridge_hello(self.bridge_address), 60, "twin bridge")

    def _start_re_manager(self, timeout: float) -> None:
        from .queue import QueueClient

        config = self.config
        host = config.host
        control = _port(host, config.control_port, "re-manager", "--control-port")
        info = _port(host, config.info_port, "re-manager's info channel", "--info-port")
        self.control_address = f"tcp://{_connect_host(host)}:{control}"
        self.info_address = f"tcp://{_connect_host(host)}:{info}"
        redis = next(p.address for p in self.pieces if p.name == "redis")
        env = dict(os.environ)
        env.update(
            OPHYD_STEM_CATALOG=self.catalog_uri or "",
            OPHYD_STEM_DATA_DIR=str(config.data_dir),
            OPHYD_STEM_SAMPLE=config.sample,
            MPLBACKEND="Agg",
        )
        if self.api_key:
            env["OPHYD_STEM_API_KEY"] = self.api_key  # the environment, never the command line
        bridge = self.bridge_address or config.bridge
        if bridge:
            env["OPHYD_STEM_BRIDGE"] = bridge
        else:
            env.pop("OPHYD_STEM_BRIDGE", None)
        for name, value in (
            ("OPHYD_STEM_SERVER_KEY", config.server_key),
            ("OPHYD_STEM_CLIENT_KEY", config.client_key),
        ):
            if value and not self.bridge_address:
                env[name] = value
        if config.operator:
            env["OPHYD_STEM_OPERATOR"] = config.operator
        env.update(config.env)
        # start-re-manager with this very interpreter (a console script's shebang may name
        # another one): the worker sees the same packages as this process
        command = [
            sys.executable, "-c", "import sys; from bluesky_queueserver.manager.start_manager "
            "import start_manager; sys.exit(start_manager())",
            "--startup-dir", str(config.startup_dir),
            "--user-group-permissions", str(config.startup_dir / "user_group_permissions.yaml"),
            "--existing-plans-devices", str(self.dir / "existing_plans_and_devices.yaml"),
            "--redis-addr", redis,
            "--zmq-control-addr", f"tcp://{host}:{control}",
            "--zmq-info-addr", f"tcp://{host}:{info}",
            "--zmq-publish-console", "ON",
            "--use-ipython-kernel", "ON" if config.ipython_kernel else "OFF",
        ]  # fmt: skip
        process, log = self._spawn("re-manager", command, env)
        piece = _Piece("re-manager", process, log, self.control_address)
        self.pieces.append(piece)
        queue = QueueClient(self.control_address, timeout=5.0)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if not piece.alive():
                    raise FacilityError(f"the re-manager exited at start:\n{piece.tail()}")
                try:
                    queue.wait_until_ready(timeout=max(deadline - time.monotonic(), 1.0))
                    return
                except Exception as exc:
                    if time.monotonic() > deadline:
                        raise FacilityError(
                            f"the re-manager's RunEngine environment did not open: {exc}\n"
                            f"{piece.tail(4000)}"
                        ) from None
        finally:
            queue.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every piece, the re-manager first (its environment closed cleanly when it
        answers), then the bridge, the catalog and Redis. Safe to call twice."""
        for piece in reversed(self.pieces):
            if piece.name == "re-manager" and piece.alive():
                _close_re_manager(self.control_address, piece, timeout)
            piece.stop()
        self.pieces.clear()
        if self._catalog_server is not None:
            # the data directory's long-lived catalog server: stopped if the facility started
            # it, left to the commands that share it otherwise
            if self._catalog_server.owned:
                self._catalog_server.stop()
            self._catalog_server = None
        with contextlib.suppress(OSError):
            self.state_path.unlink()

    def dead(self) -> list[str]:
        """The pieces that are no longer running."""
        return [piece.name for piece in self.pieces if not piece.alive()]

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "started": time.time(),
            "config": {k: str(v) for k, v in asdict(self.config).items()},
            "control_address": self.control_address,
            "info_address": self.info_address,
            "catalog": self.catalog_uri,
            "bridge": self.bridge_address or self.config.bridge,
            "pieces": {p.name: {"pid": p.process.pid, "address": p.address} for p in self.pieces},
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.state_path)

    def describe(self) -> str:
        """What runs where, and how to use it."""
        lines = [f"ophyd-stem facility (data in {self.config.data_dir}):"]
        for piece in self.pieces:
            lines.append(f"  {piece.name:<11} {piece.address:<28} pid {piece.process.pid}")
        if self._catalog_server is not None:
            server = self._catalog_server
            lines.append(f"  {'catalog':<11} {server.uri:<28} pid {server.pid}")
        elif self.catalog_uri and not any(p.name == "catalog" for p in self.pieces):
            lines.append(f"  {'catalog':<11} {self.catalog_uri}")
        if not self.config.twin_bridge and not self.config.bridge:
            lines.append(f"  {'twin':<11} inside the re-manager's worker ({self.config.sample})")
        queue = self.control_address
        lines += [
            f"  info        {self.info_address} (console output, qserver-console-monitor)",
            "submit:",
            f"  ophyd-stem run survey --queue {queue}",
            f"  qserver --zmq-control-addr {queue} queue add plan "
            '\'{"name": "count", "args": [["eels"]]}\'',
            f"  qserver --zmq-control-addr {queue} queue start",
            "operate a running plan:",
            f"  ophyd-stem control status --queue {queue}",
            "stop: Ctrl-C here, or ophyd-stem serve --stop"
            + (f" --data-dir {self.config.data_dir}" if self.config.data_dir else ""),
        ]
        return "\n".join(lines)


def _redis_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    import httpx

    try:
        with httpx.Client(trust_env=False, timeout=1.0) as http:
            return http.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _bridge_hello(address: str) -> bool:
    from dm_bridge.client import BridgeClient

    try:
        with contextlib.closing(BridgeClient(address, timeout=1.0)) as client:
            client.hello()
        return True
    except Exception:
        return False


def _close_re_manager(address: str, piece: _Piece, timeout: float) -> None:
    """Close the RunEngine environment (the worker ends its session and flushes the catalog
    writer), then ask the manager to exit."""
    from .queue import QueueClient

    with contextlib.suppress(Exception), QueueClient(address, timeout=5.0) as queue:
        status = queue.status()
        if status.get("worker_environment_exists"):
            if status.get("manager_state") != "idle":
                queue.api.environment_destroy()
            else:
                queue.api.environment_close()
            queue.api.wait_for_idle(timeout=timeout)
        queue.api.send_request(method="manager_stop", params={"option": "safe_off"})
    with contextlib.suppress(subprocess.TimeoutExpired):
        piece.process.wait(timeout)
