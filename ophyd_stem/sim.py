"""Simulated microscopes: a digital twin (or any bridge backend) wired to connected devices.

Three ways to run the instrument, from fastest to most realistic:

``"local"``
    the backend lives in this process and devices call it directly (no sockets);
``"thread"``
    a real bridge server on loopback, in a background thread of this process;
``"subprocess"``
    ``dm-bridge serve`` in its own process on loopback, exactly as on a microscope PC.

Example (``mode="thread"`` puts a real bridge on a loopback port; ``"local"``, the
default, needs none):
    >>> import bluesky.plans as bp
    >>> from bluesky import RunEngine
    >>> from ophyd_stem.sim import twin_microscope
    >>> RE = RunEngine()                    # first: the devices connect in its event loop
    >>> microscope = twin_microscope("graphene", mode="thread")
    >>> uids = RE(bp.count([microscope.eels]))
    >>> len(uids)
    1
    >>> microscope.sim_bridge.close()       # the bridge's thread and port
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

from dm_bridge.backends import Backend, load_backend
from dm_bridge.local import AsyncLocalClient

from ._microscope import Microscope

__all__ = ["SimBridge", "connect_microscope", "twin_microscope"]

Mode = Literal["local", "thread", "subprocess"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimBridge:
    """A simulated instrument behind a bridge, started and stopped as one object.

    Args:
        backend: backend name (``"twin"``, ``"replay"``, ``"minimal"``) or an instance.
        mode: ``"local"``, ``"thread"`` or ``"subprocess"`` (see the module docstring).
        options: backend constructor options (e.g. ``sample="graphene", seed=1``); with
            ``mode="subprocess"`` they become ``dm-bridge serve`` options
            (``time_scale=0.1`` -> ``--time-scale 0.1``).
    """

    def __init__(self, backend: str | Backend = "twin", mode: Mode = "local", **options: Any):
        if mode not in ("local", "thread", "subprocess"):
            raise ValueError(f"mode must be 'local', 'thread' or 'subprocess', not {mode!r}")
        self.mode = mode
        self.backend: Backend | None = None
        self.address: str | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen | None = None
        self._clients: list[Any] = []
        if mode == "subprocess":
            if not isinstance(backend, str):
                raise TypeError("mode='subprocess' needs the backend's name, not an instance")
            self._start_subprocess(backend, options)
        else:
            self.backend = load_backend(backend, **options) if isinstance(backend, str) else backend
            if mode == "thread":
                self._start_thread()
        atexit.register(self.close)

    def _start_thread(self) -> None:
        from dm_bridge.server import Server, address_for

        port = _free_port()
        self._server = Server(self.backend, host="127.0.0.1", port=port)
        # (stream:// by default; tcp:// where DM_BRIDGE_TRANSPORT=zmq chooses ZeroMQ)
        self.address = address_for("127.0.0.1", port, self._server.transport)
        ready = threading.Event()

        def run() -> None:
            ready.set()
            self._server.serve_forever()

        self._thread = threading.Thread(target=run, name="sim-bridge", daemon=True)
        self._thread.start()
        ready.wait(5)

    def _start_subprocess(self, backend: str, options: dict[str, Any]) -> None:
        from dm_bridge.server import address_for, transport_for

        port = _free_port()
        transport = transport_for("127.0.0.1")
        args = [sys.executable, "-m", "dm_bridge.cli", "serve", "--backend", backend]
        args += ["--host", "127.0.0.1", "--port", str(port), "--transport", transport]
        for key, value in options.items():
            flag = "--" + key.replace("_", "-")
            if key == "sample_parameters":  # `dm-bridge serve` takes them one by one
                for name, param in (value or {}).items():
                    param = list(param) if isinstance(param, tuple) else param
                    args += ["--sample-param", f"{name}={json.dumps(param)}"]
            elif value is True:
                args.append(flag)
            elif value is not False and value is not None:
                args += [flag, str(value)]
        with tempfile.NamedTemporaryFile(prefix="dm-bridge-", suffix=".log", delete=False) as log:
            self.log_path = Path(log.name)
            # The child keeps its own handle on the log file after ours is closed.
            self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.address = address_for("127.0.0.1", port, transport)
        try:
            self._wait_until_serving()
        except BaseException:
            self.close()
            raise

    def _wait_until_serving(self, timeout: float = 30.0) -> None:
        from dm_bridge.client import BridgeClient
        from dm_bridge.errors import BridgeError

        deadline = time.monotonic() + timeout
        with BridgeClient(self.address, timeout=0.5) as probe:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(
                        f"dm-bridge serve exited with {self._process.returncode}; see "
                        f"{self.log_path}:\n{self.log_path.read_text()[-2000:]}"
                    )
                with contextlib.suppress(BridgeError):
                    probe.hello(timeout=0.5)
                    return
        raise TimeoutError(f"the bridge at {self.address} did not answer within {timeout} s")

    def async_client(self) -> Any:
        """An asyncio client for this bridge (closed with the bridge)."""
        if self.mode == "local":
            client = AsyncLocalClient(self.backend)
        else:
            from dm_bridge.client import AsyncBridgeClient

            client = AsyncBridgeClient(self.address)
        self._clients.append(client)
        return client

    def client(self) -> Any:
        """A blocking client for this bridge (closed with the bridge)."""
        if self.mode == "local":
            from dm_bridge.local import LocalClient

            client = LocalClient(self.backend)
        else:
            from dm_bridge.client import BridgeClient

            client = BridgeClient(self.address)
        self._clients.append(client)
        return client

    def close(self) -> None:
        """Stop the server (and its process) and close the clients made here."""
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()
        self._clients = []
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.stop()
            if self._thread is not None:
                self._thread.join(5)
            self._server = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(5)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(5)
            self._process = None

    def __enter__(self) -> SimBridge:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _default_assets_dir() -> Path:
    root = os.environ.get("OPHYD_STEM_DATA_DIR")
    base = Path(root) if root else Path(tempfile.gettempdir()) / "ophyd-stem-sim"
    return base / "assets"


async def connect_microscope(bridge: SimBridge, assets_dir: str | Path | None = None) -> Microscope:
    """Build a :class:`Microscope` on ``bridge`` and connect it (inside a running loop)."""
    microscope = Microscope(bridge.async_client(), assets_dir=assets_dir or _default_assets_dir())
    await microscope.connect()
    microscope.sim_bridge = bridge  # keep the bridge alive as long as the devices
    return microscope


def twin_microscope(
    sample: str = "graphene",
    *,
    mode: Mode = "local",
    assets_dir: str | Path | None = None,
    backend: str = "twin",
    **options: Any,
) -> Microscope:
    """Start a digital twin and return a connected :class:`Microscope`.

    Call it after creating the RunEngine: the devices connect in the RunEngine's event
    loop, as ``init_devices`` would.

    Args:
        sample: the twin's sample (``"graphene"``, ``"SrTiO3"``, ``"nanowire"``,
            ``"nanoparticles"``).
        mode: ``"local"`` (in-process), ``"thread"`` or ``"subprocess"`` (a real bridge on
            loopback).
        assets_dir: where survey images go (default: ``$OPHYD_STEM_DATA_DIR/assets``, or a
            temporary folder).
        backend: bridge backend to start (``"twin"``; ``"minimal"`` for protocol tests).
        options: more twin options (``seed=1``, ``time_scale=0.1``...).
    """
    from bluesky.run_engine import call_in_bluesky_event_loop

    if backend == "twin":
        options = {"sample": sample, **options}
    bridge = SimBridge(backend, mode=mode, **options)
    try:
        return call_in_bluesky_event_loop(connect_microscope(bridge, assets_dir))
    except BaseException:
        bridge.close()
        raise
