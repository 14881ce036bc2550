"""The DM bridge against the existing DM server's way (Pyro5 sending ``array.tolist()``).

The bridge is measured on both its transports side by side: *stream* (plain TCP,
length-framed; the default on loopback, decision 0017) and *ZeroMQ* (the baseline, and the
transport off loopback). All servers stand in front of the same instrument, the minimal
backend with ``time_scale=0`` and its arrays prepared ahead, so that the table measures the
transport and not the instrument; all run on loopback, and they are measured in
alternating rounds so that the machine's load falls on all alike. Four conditions:

* *in-process*: all servers in this process, each in a background thread;
* *separate processes*: each server in its own process (the microscope PC's situation);
* each *quiet* (nothing added: the machine's own load average is printed) and *under
  load* (this benchmark keeps every core busy with spinning processes meanwhile).

Besides medians and p99, the table prints the CPU time per call (client and server, every
thread: libzmq's I/O threads included; server processes read from ``/proc``) and two *floor*
rows, measured in the same condition: the same small exchange and a 128² image with a bare
pyzmq ROUTER echo and with a bare blocking-socket echo (Pyro5's kind of transport). The pyzmq
floor bounds what any ZeroMQ server in Python can do against Pyro5 (decision 0009).

The prepared instrument, the Pyro5 server and the floors are in ``bridge_baselines.py``; the
timing, CPU accounting, added load and the table in ``bridge_table.py`` (both beside this
script).

Run::

    python benchmarks/bridge.py            # about three minutes
    python benchmarks/bridge.py --quick    # under a minute; fewer repetitions

Targets (issues 2 and 16): small calls at least as fast as Pyro5 in the same run and
<= 150 µs median on a quiet machine, a 512² float32 image <= 1 ms, images >= 500x faster than
Pyro5 + tolist() from 128² up.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import Pyro5.api
import zmq

# The baselines and the table are modules of their own beside this script (this folder is
# on sys.path when it runs); their names stay importable from here.
from bridge_baselines import (
    IMAGE_REQUEST,
    FloorClients,
    LegacyServer,
    PreparedBackend,
    floors_in_process,
    socket_echo,
    zmq_echo,
)
from bridge_table import (
    HEADER,
    SERVER_PIDS,
    Row,
    alternate,
    alternate_all,
    cpu_load,
    cpu_per_call,
    fmt,
    load_average,
    p99,
    print_table,
    process_cpu,
    speedup,
    timings,
)

from dm_bridge.client import BridgeClient
from dm_bridge.server import Server

__all__ = [
    "HEADER",
    "IMAGE_REQUEST",
    "SERVER_PIDS",
    "FloorClients",
    "LegacyServer",
    "PreparedBackend",
    "Row",
    "alternate",
    "alternate_all",
    "cpu_load",
    "cpu_per_call",
    "floors_in_process",
    "floors_in_processes",
    "fmt",
    "load_average",
    "main",
    "measure",
    "measure_floors",
    "p99",
    "print_table",
    "process_cpu",
    "serve",
    "servers_in_process",
    "servers_in_processes",
    "socket_echo",
    "speedup",
    "timings",
    "zmq_echo",
]


# ------------------------------------------------------------------------------ servers


@contextlib.contextmanager
def servers_in_process() -> Iterator[Tuple[str, ...]]:
    """All servers in background threads of this process: (stream bridge endpoint, ZeroMQ
    bridge endpoint, Pyro5 URI)."""
    stream = Server(PreparedBackend(), port=0, transport="stream").start()
    bridge = Server(PreparedBackend(), port=0, transport="zmq").start()
    daemon = Pyro5.api.Daemon(host="127.0.0.1")
    uri = str(daemon.register(LegacyServer(PreparedBackend())))
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        yield stream.endpoint, bridge.endpoint, uri
    finally:
        stream.stop()
        bridge.stop()
        daemon.shutdown()
        thread.join(5)


@contextlib.contextmanager
def servers_in_processes() -> Iterator[Tuple[str, ...]]:
    """Each server in a process of its own (this file run with --serve)."""
    with _subprocesses(("stream", "bridge", "pyro")) as found:
        yield found


@contextlib.contextmanager
def _subprocesses(kinds: Tuple[str, ...]) -> Iterator[Tuple[str, ...]]:
    procs = []
    try:
        found = []
        for kind in kinds:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", kind],
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            found.append(proc.stdout.readline().strip())
        SERVER_PIDS[:] = [p.pid for p in procs]
        yield tuple(found)
    finally:
        SERVER_PIDS.clear()
        for proc in procs:
            proc.terminate()
            proc.wait(10)
            proc.stdout.close()


def serve(kind: str) -> None:
    """Run one server until terminated (the separate-process condition)."""
    logging.getLogger("dm_bridge").setLevel(logging.WARNING)
    if kind in ("bridge", "stream"):
        transport = "zmq" if kind == "bridge" else "stream"
        server = Server(PreparedBackend(), port=0, transport=transport)
        server.serve_forever(on_ready=lambda s: print(s.endpoint, flush=True))
        return
    if kind == "zmq-echo":
        router = zmq.Context.instance().socket(zmq.ROUTER)
        print(f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}", flush=True)
        zmq_echo(router, threading.Event())
        return
    if kind == "socket-echo":
        listener = socket.create_server(("127.0.0.1", 0))
        print(listener.getsockname()[1], flush=True)
        socket_echo(listener)
        return
    daemon = Pyro5.api.Daemon(host="127.0.0.1")
    print(daemon.register(LegacyServer(PreparedBackend())), flush=True)
    daemon.requestLoop()


@contextlib.contextmanager
def floors_in_processes() -> Iterator[Tuple[str, int]]:
    with _subprocesses(("zmq-echo", "socket-echo")) as (endpoint, port):
        yield endpoint, int(port)


# ------------------------------------------------------------------------------ timing


def measure_floors(endpoint: str, port: int, quick: bool, pyro: Dict[str, float]) -> List[Row]:
    """Rows of the floors: the same exchanges with bare echo servers, ZeroMQ against a plain
    socket, and the most the bridge could gain on Pyro5 if its own Python cost nothing."""
    floors = FloorClients(endpoint, port)
    rows: List[Row] = []
    try:
        small = 400 if quick else 3000
        a, b = alternate(floors.zmq_call, floors.socket_call, small, small, 4 if quick else 10)
        za, sb = statistics.median(a), statistics.median(b)
        rows.append(
            (
                "floor: small echo, bare socket | pyzmq",
                fmt(sb),
                fmt(za),
                "",
                f"at most {speedup(pyro['small'] / sb)}",
                f"at most {speedup(pyro['small'] / za)}",
                "",
            )
        )
        n = 100 if quick else 400
        a, b = alternate(floors.zmq_image, floors.socket_image, n, n, 4)
        za, sb = statistics.median(a), statistics.median(b)
        rows.append(
            (
                "floor: 128² image, bare socket | pyzmq",
                fmt(sb),
                fmt(za),
                "",
                f"at most {speedup(pyro['image'] / sb)}",
                f"at most {speedup(pyro['image'] / za)}",
                "",
            )
        )
    finally:
        floors.close()
    return rows


def measure(
    endpoints: Tuple[str, ...], quick: bool, full: bool, pyro: Dict[str, float]
) -> List[Row]:
    """The table's rows for one condition: ``endpoints`` are the stream bridge's, the
    ZeroMQ bridge's and Pyro5's URI (``pyro`` receives Pyro5's medians)."""
    stream_dm = BridgeClient(endpoints[0], timeout=120)
    zmq_dm = BridgeClient(endpoints[1], timeout=120)
    legacy = Pyro5.api.Proxy(endpoints[2])
    rows: List[Row] = []

    def row(name: str, values: List[float], target: str, unit: str = "time") -> None:
        s_val, z_val, p_val = values
        if unit == "rate":
            shown = [f"{v:,.0f}/s" for v in values]
            ratios = [speedup(s_val / p_val), speedup(z_val / p_val)]
        else:
            shown = [fmt(v) for v in values]
            ratios = [speedup(p_val / s_val), speedup(p_val / z_val)]
        rows.append((name, *shown, *ratios, target))

    try:
        small = 400 if quick else 3000
        rounds = 10 if quick else 30  # (fine-grained: a burst of load falls on all alike)
        for name, calls, target in (
            (
                "get_beam_position",
                [stream_dm.get_beam_position, zmq_dm.get_beam_position, legacy.get_beam_position],
                ">= 1.00x, <= 150 µs",
            ),
            (
                "set_beam_position",
                [
                    lambda: stream_dm.set_beam_position(10.5, 20.25),
                    lambda: zmq_dm.set_beam_position(10.5, 20.25),
                    lambda: legacy.set_beam_position(10.5, 20.25),
                ],
                ">= 1.00x, <= 150 µs",
            ),
        ):
            samples = alternate_all(calls, [small] * 3, rounds)
            row(f"{name}, median", [statistics.median(x) for x in samples], target)
            row(f"{name}, p99", [p99(x) for x in samples], "")
            if name == "get_beam_position":
                pyro["small"] = statistics.median(samples[2])
                cpu = cpu_per_call(calls, small, rounds)
                if all(c > 0 for c in cpu):
                    row(f"{name}, CPU per call (all threads)", cpu, "")

        sizes = [(128, 200, 20), (512, 100, 5), (1024, 40, 3)] if full else [(128, 100, 6)]
        for size, n_ours, n_theirs in sizes:
            if quick:
                n_ours, n_theirs = max(10, n_ours // 4), max(2, n_theirs // 3)
            for dm in (stream_dm, zmq_dm):
                dm.set_scan_parameters(width=size, height=size, signals=["HAADF"])
            legacy.set_image_size(size, size)
            samples = alternate_all(
                [
                    stream_dm.acquire_image,
                    zmq_dm.acquire_image,
                    lambda: np.asarray(legacy.acquire_image(), np.float32),
                ],
                [n_ours, n_ours, n_theirs],
                min(n_theirs, 3),
            )
            target = "<= 1 ms, >= 500x" if size == 512 else ">= 500x"
            row(f"image {size}² float32", [statistics.median(x) for x in samples], target)
            if size == 128:
                pyro["image"] = statistics.median(samples[2])

        samples = alternate_all(
            [
                stream_dm.acquire_spectrum,
                zmq_dm.acquire_spectrum,
                lambda: np.asarray(legacy.acquire_spectrum(), np.float32),
            ],
            [100 if quick else 600, 100 if quick else 600, 30 if quick else 200],
            rounds,
        )
        row("spectrum 2048 ch", [statistics.median(x) for x in samples], "")

        if full:
            rng = np.random.default_rng(0)
            points = rng.uniform(0, 511, size=(1000, 2))
            for dm in (stream_dm, zmq_dm):
                dm.set_scan_parameters(width=512, height=512)
            legacy.set_image_size(512, 512)
            per_call = [
                len(points)
                / statistics.median(
                    timings(
                        functools.partial(dm.acquire_spectra_at_points, points), 3 if quick else 10
                    )
                )
                for dm in (stream_dm, zmq_dm)
            ]
            few = points[: (30 if quick else 200)]

            def legacy_points() -> None:
                for x, y in few:
                    legacy.set_beam_position(float(x), float(y))
                    np.asarray(legacy.acquire_spectrum(), np.float32)

            def point_by_point(dm: BridgeClient) -> None:
                for x, y in few:
                    dm.set_beam_position(float(x), float(y))
                    dm.acquire_spectrum()

            # (the median of three passes each, alternating: one pass can meet a stall)
            passes = alternate_all(
                [
                    functools.partial(point_by_point, stream_dm),
                    functools.partial(point_by_point, zmq_dm),
                    legacy_points,
                ],
                [3, 3, 3],
                3,
            )
            theirs_rate = len(few) / statistics.median(passes[2])
            row("spectra at points (1000/call)", [*per_call, theirs_rate], "", unit="rate")
            rates = [len(few) / statistics.median(p) for p in passes]
            row("  same, one call per point", rates, "", unit="rate")
    finally:
        stream_dm.close()
        zmq_dm.close()
        legacy._pyroRelease()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--load", type=int, default=os.cpu_count() or 2, help="spinning processes under load"
    )
    parser.add_argument(
        "--serve",
        choices=["stream", "bridge", "pyro", "zmq-echo", "socket-echo"],
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    logging.getLogger("dm_bridge").setLevel(logging.WARNING)
    q = args.quick
    print(
        f"DM bridge vs Pyro5 + tolist() on loopback (Python {platform.python_version()}, "
        f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}, Pyro5 {Pyro5.__version__}, "
        f"serializer {Pyro5.config.SERIALIZER}, {os.cpu_count()} cores)"
        + (", --quick" if q else "")
    )
    print()
    conditions: List[Tuple[str, Callable[[], Any], Callable[[], Any], Optional[int], bool]] = [
        ("quiet, servers in this process", servers_in_process, floors_in_process, None, True),
        (
            "quiet, servers in separate processes",
            servers_in_processes,
            floors_in_processes,
            None,
            False,
        ),
        (
            "under load, servers in this process",
            servers_in_process,
            floors_in_process,
            args.load,
            False,
        ),
        (
            "under load, servers in separate processes",
            servers_in_processes,
            floors_in_processes,
            args.load,
            False,
        ),
    ]
    for title, servers, floors, load, full in conditions:
        with contextlib.ExitStack() as stack:
            if load:
                stack.enter_context(cpu_load(load))
            before = load_average()
            pyro: Dict[str, float] = {}
            with servers() as endpoints:
                rows = measure(endpoints, q, full, pyro)
            with floors() as (zmq_endpoint, port):
                rows += measure_floors(zmq_endpoint, port, q, pyro)
            after = load_average()
        extra = f" + {load} spinning processes" if load else ""
        print_table(f"{title}{extra}; load average {before} -> {after}", rows)
    print(
        "quiet = nothing added by this benchmark; the machine's own load average is shown "
        "(a shared machine is never quiet).\n"
        "CPU per call: client and server, every thread (libzmq's I/O threads included).\n"
        "floor rows: the same exchange with bare echo servers in the same condition, a plain "
        "blocking TCP socket (column: stream) and a pyzmq ROUTER (column: ZeroMQ); 'at most' "
        "is Pyro5's median over the bare echo's, the transport's bound if the bridge's own "
        "Python cost nothing."
    )


if __name__ == "__main__":
    main()
