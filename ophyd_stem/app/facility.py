"""``ophyd-stem serve``: a whole facility on one machine, for trying facility mode.

Each piece is the real engine a facility runs, as its own process (docs/facility.md):

==================  =============================================  ======================
Redis               ``redis-server`` (the queue's state)            ``--redis-port`` 6379
catalog             Tiled on SQLite in the data directory           printed (loopback)
                    (or ``--catalog URI``: one that runs already)
twin bridge         ``dm-bridge serve --backend twin`` (optional,   ``--bridge-port`` 5555
                    ``--twin-bridge``; else the twin runs inside
                    the worker)
re-manager          ``start-re-manager`` with profile_collection    ``--control-port`` 60615
                    (plain or ``--ipython-kernel`` worker)           ``--info-port`` 60625
==================  =============================================  ======================

They start in that order, the re-manager's RunEngine environment is opened, and the command
waits; Ctrl-C (or ``ophyd-stem serve --stop``, or SIGTERM) stops them all, in reverse order,
each process group waited for. A piece that dies stops the rest. Port 0 means "any free one".

The engine (:class:`Facility`) is :mod:`ophyd_stem.app.facility_processes`; this module is
the command around it and re-exports the engine's names.

Example (Python)::

    >>> with Facility(FacilityConfig(data_dir="/tmp/stem", redis_port=0, control_port=0,
    ...                              info_port=0)) as facility:              # doctest: +SKIP
    ...     QueueClient(facility.control_address).run("count", ["eels"])
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .facility_processes import PROFILE_STARTUP, Facility, FacilityConfig, FacilityError

__all__ = ["PROFILE_STARTUP", "Facility", "FacilityConfig", "FacilityError", "add_serve_parser"]


# ------------------------------------------------------------------------ the command


def add_serve_parser(
    commands: Any, command: Any, session_arguments: Any
) -> argparse.ArgumentParser:
    """The ``serve`` sub-command (``cli.build_parser`` calls this with its ``_command`` and
    ``_session_arguments``)."""
    serve = command(
        commands,
        "serve",
        "start a one-machine facility: Redis, the catalog, the re-manager (queueserver)",
        "ophyd-stem serve --redis-port 0 --control-port 0 --info-port 0 --twin-bridge",
        description=(
            "Start Redis, the catalog (Tiled), optionally a twin bridge, and the queueserver's "
            "re-manager with this project's profile, each its own process; Ctrl-C stops them "
            "all (docs/facility.md). --status, --stop and --catalog-only act on what runs."
        ),
    )
    group = serve.add_argument_group("ports (0: any free one)")
    group.add_argument("--host", default="127.0.0.1", help="bind address of the re-manager")
    group.add_argument(
        "--redis-port", type=int, default=6379, help="Redis, where the queue and its history live"
    )
    group.add_argument("--control-port", type=int, default=60615, help="re-manager control")
    group.add_argument("--info-port", type=int, default=60625, help="re-manager console output")
    group.add_argument("--bridge-port", type=int, default=5555, help="with --twin-bridge")
    group.add_argument("--catalog-port", type=int, default=8000, help="with --catalog-database")
    serve.add_argument(
        "--catalog-database",
        metavar="URI",
        help="keep the catalog in PostgreSQL (postgresql://user@host:5432/db) (default: the "
        "embedded SQLite catalog of the data directory)",
    )
    serve.add_argument(
        "--twin-bridge",
        action="store_true",
        help="run the twin's bridge as its own process (default: inside the worker)",
    )
    serve.add_argument("--sample", default="graphene", help="the twin's sample")
    serve.add_argument(
        "--ipython-kernel", action="store_true", help="run the worker as an IPython kernel"
    )
    serve.add_argument("--timeout", type=float, default=300.0, help="seconds to come up")
    action = serve.add_mutually_exclusive_group()
    action.add_argument(
        "--status", action="store_true", help="say what runs (facility, catalog server); exit"
    )
    action.add_argument(
        "--stop",
        action="store_true",
        help="stop the running facility, else the catalog server that commands share",
    )
    action.add_argument(
        "--catalog-only",
        action="store_true",
        help="only start (or reuse) the catalog server that commands share, and return",
    )
    session_arguments(serve)
    serve.set_defaults(func=_cmd_serve)
    return serve


def _data_dir(args: argparse.Namespace) -> Path:
    from ophyd_stem.catalog import CatalogSettings

    from .config import load_config

    config = load_config(data_dir=args.data_dir)
    return CatalogSettings(Path(config.data_dir) if config.data_dir else None).data_dir


def _read_state(data_dir: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((data_dir / "facility" / "facility.json").read_text())
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmd_serve(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    state = _read_state(data_dir)
    if args.status:
        return _status(data_dir, state)
    if args.stop:
        return _stop(data_dir, state)
    if args.catalog_only:
        from ophyd_stem.catalog import CatalogSettings, EmbeddedServer, server_status

        settings = CatalogSettings(data_dir)
        EmbeddedServer.start(settings)
        print(server_status(settings))
        return 0
    if state and _pid_alive(int(state["pid"])):
        print(
            f"a facility already runs for {data_dir} (pid {state['pid']}, re-manager "
            f"{state['control_address']}); `ophyd-stem serve --stop` stops it",
            file=sys.stderr,
        )
        return 2
    from .config import load_config

    settings = load_config(
        data_dir=str(data_dir),
        bridge=args.bridge,
        server_key=args.server_key,
        client_key=args.client_key,
        catalog=args.catalog,
        api_key=args.api_key,
        operator=args.operator,
    )
    config = FacilityConfig(
        data_dir=data_dir,
        host=args.host,
        redis_port=args.redis_port,
        control_port=args.control_port,
        info_port=args.info_port,
        bridge_port=args.bridge_port,
        twin_bridge=args.twin_bridge,
        bridge=settings.bridge,
        server_key=settings.server_key,
        client_key=settings.client_key,
        sample=args.sample,
        ipython_kernel=args.ipython_kernel,
        catalog=settings.catalog,
        api_key=settings.api_key,
        catalog_database=args.catalog_database,
        catalog_port=args.catalog_port,
        operator=settings.operator,
    )
    facility = Facility(config)
    stopping = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stopping["signal"] = signum
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        print(f"starting the facility for {data_dir} ...", flush=True)
        facility.start(timeout=args.timeout, log=lambda line: print("  up: " + line, flush=True))
        print(facility.describe(), flush=True)
        print("ready", flush=True)
        while True:
            dead = facility.dead()
            if dead:
                print(f"{', '.join(dead)} stopped unexpectedly; stopping the rest", flush=True)
                for piece in facility.pieces:
                    if piece.name in dead:
                        print(f"--- {piece.name} log ---\n{piece.tail()}", flush=True)
                code = 1
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping the facility ...", flush=True)
    except FacilityError as exc:
        print(f"ophyd-stem serve: {exc}", file=sys.stderr)
        code = 1
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            facility.stop()
        signal.signal(signal.SIGTERM, previous)
    print("stopped", flush=True)
    return code


def _status(data_dir: Path, state: dict[str, Any] | None) -> int:
    from ophyd_stem.catalog import CatalogSettings, server_status

    running = bool(state and _pid_alive(int(state["pid"])))
    if state and running:
        print(f"facility for {data_dir}: serve pid {state['pid']}")
        for name, piece in state["pieces"].items():
            alive = "running" if _pid_alive(int(piece["pid"])) else "NOT RUNNING"
            print(f"  {name:<11} {piece['address']:<28} pid {piece['pid']} {alive}")
        print(f"  catalog     {state['catalog']}")
    else:
        print(f"no facility runs for {data_dir}")
    print(server_status(CatalogSettings(data_dir)))
    return 0 if running else 1


def _stop(data_dir: Path, state: dict[str, Any] | None) -> int:
    if state and _pid_alive(int(state["pid"])):
        pid = int(state["pid"])
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 120
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pid):
            print(f"the facility (pid {pid}) did not stop within 120 s", file=sys.stderr)
            return 1
        print(f"stopped the facility for {data_dir}")
        return 0
    from ophyd_stem.catalog import CatalogSettings, stop_server

    stopped = stop_server(CatalogSettings(data_dir))
    print(f"catalog server of {data_dir}: {'stopped' if stopped else 'not running'}")
    return 0
