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
import multiprocessing
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import Pyro5.api
import zmq

from dm_bridge.backends.base import (
    EELSParameters,
    ImageAcquisition,
    ScanParameters,
    SpectrumAcquisition,
    energy_axis,
)
from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.client import BridgeClient
from dm_bridge.server import Server


class PreparedBackend(MinimalBackend):
    """The minimal instrument with its arrays made once, so only the transport is timed."""

    def __init__(self) -> None:
        super().__init__(time_scale=0.0)
        self._images: Dict[Tuple[int, int], ImageAcquisition] = {}

    def _do_acquire_image(self, scan: ScanParameters) -> ImageAcquisition:
        key = (scan.width, scan.height)
        if key not in self._images:
            self._images[key] = super()._do_acquire_image(scan)
        return self._images[key]

    def _do_acquire_spectra_at_points(
        self, eels: EELSParameters, points: np.ndarray
    ) -> SpectrumAcquisition:
        axis = energy_axis(eels)
        height = 1000.0 + 10.0 * points[:, 0] + points[:, 1]
        spectra = (height[:, None] * np.exp(-0.5 * axis**2)[None, :]).astype(np.float32)
        return SpectrumAcquisition(spectra, axis, instrument_time=len(points) * eels.exposure)


@Pyro5.api.expose
class LegacyServer:
    """What the existing DM server offers, its way: one call per action, arrays as lists."""

    def __init__(self, backend: PreparedBackend) -> None:
        self.backend = backend

    def get_beam_position(self) -> List[float]:
        return list(self.backend.get_beam_position())

    def set_beam_position(self, x: float, y: float) -> None:
        self.backend.set_beam_position(x, y)

    def set_image_size(self, width: int, height: int) -> None:
        self.backend.set_scan_parameters(width=width, height=height)

    def acquire_image(self) -> list:
        return self.backend.acquire_image().images["HAADF"].tolist()

    def acquire_spectrum(self) -> list:
        return self.backend.acquire_spectrum().spectra.tolist()


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


#: the server processes of the separate-process condition (their CPU time is read)
SERVER_PIDS: List[int] = []


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


# ------------------------------------------------------------------------------ floors
#: what the echo servers send back for a request of this text: a 128² float32 image
IMAGE_REQUEST = b"IMAGE"
_IMAGE_BYTES = np.zeros(128 * 128, np.float32).tobytes()


def zmq_echo(router: zmq.Socket, stop: threading.Event) -> None:
    """A bare ROUTER that sends each message back (or an image for IMAGE_REQUEST): the
    least any ZeroMQ server in Python can do per call."""
    items = [(router, zmq.POLLIN)]
    while not stop.is_set():
        if zmq.zmq_poll(items, 100):
            parts = router.recv_multipart(copy=False)
            if parts[-1].bytes == IMAGE_REQUEST:
                parts = [parts[0], b"", b"{}", _IMAGE_BYTES]
            router.send_multipart(parts, copy=False)


def socket_echo(listener: socket.socket) -> None:
    """A bare TCP server (one blocking socket per client, like Pyro5's) that sends each
    message back (or an image, length-prefixed, for IMAGE_REQUEST)."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_echo_connection, args=(conn,), daemon=True).start()


def _echo_connection(conn: socket.socket) -> None:
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            if data == IMAGE_REQUEST:
                conn.sendall(len(_IMAGE_BYTES).to_bytes(8, "little") + _IMAGE_BYTES)
            else:
                conn.sendall(data)


class FloorClients:
    """Clients of the two echo servers: ``zmq_call``/``socket_call`` send one small header
    and wait for it back; ``zmq_image``/``socket_image`` get a 128² float32 image."""

    HEADER = b'{"protocol":1,"id":1,"command":"get_beam_position","args":{},"timeout":120.0}'

    def __init__(self, zmq_endpoint: str, socket_port: int) -> None:
        self.dealer = zmq.Context.instance().socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(zmq_endpoint)
        self.sock = socket.create_connection(("127.0.0.1", socket_port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._items = [(self.dealer, zmq.POLLIN)]

    def zmq_call(self, payload: bytes = HEADER) -> List[Any]:
        self.dealer.send_multipart([b"", payload])
        zmq.zmq_poll(self._items, 120_000)
        return self.dealer.recv_multipart(copy=False)

    def zmq_image(self) -> np.ndarray:
        return np.frombuffer(self.zmq_call(IMAGE_REQUEST)[2], np.float32)

    def socket_call(self) -> bytes:
        self.sock.sendall(self.HEADER)
        return self.sock.recv(65536)

    def socket_image(self) -> np.ndarray:
        self.sock.sendall(IMAGE_REQUEST)
        data = bytearray()
        while len(data) < 8 or len(data) < 8 + int.from_bytes(data[:8], "little"):
            data += self.sock.recv(1 << 20)
        return np.frombuffer(data, np.float32, offset=8)

    def close(self) -> None:
        self.dealer.close()
        self.sock.close()


@contextlib.contextmanager
def floors_in_process() -> Iterator[Tuple[str, int]]:
    """Both echo servers in background threads: (ZeroMQ endpoint, TCP port)."""
    stop = threading.Event()
    router = zmq.Context.instance().socket(zmq.ROUTER)
    endpoint = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
    listener = socket.create_server(("127.0.0.1", 0))
    threads = [
        threading.Thread(target=zmq_echo, args=(router, stop), daemon=True),
        threading.Thread(target=socket_echo, args=(listener,), daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        yield endpoint, listener.getsockname()[1]
    finally:
        stop.set()
        threads[0].join(5)
        router.close(0)
        listener.close()


@contextlib.contextmanager
def floors_in_processes() -> Iterator[Tuple[str, int]]:
    with _subprocesses(("zmq-echo", "socket-echo")) as (endpoint, port):
        yield endpoint, int(port)


def _spin() -> None:  # pragma: no cover - a load generator
    while True:
        pass


@contextlib.contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """Keep ``processes`` cores busy meanwhile (processes this benchmark starts and stops)."""
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(processes)]
    for p in spinners:
        p.start()
    try:
        time.sleep(1.0)  # let the scheduler see them
        yield
    finally:
        for p in spinners:
            p.terminate()
        for p in spinners:
            p.join(5)


# ------------------------------------------------------------------------------ timing


def timings(call: Callable[[], Any], repeat: int) -> List[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def alternate(
    ours: Callable[[], Any], theirs: Callable[[], Any], n_ours: int, n_theirs: int, rounds: int
) -> Tuple[List[float], List[float]]:
    """Samples of both, taken in alternating rounds (after a warm-up of each)."""
    a, b = alternate_all([ours, theirs], [n_ours, n_theirs], rounds)
    return a, b


def alternate_all(calls: List[Callable[[], Any]], ns: List[int], rounds: int) -> List[List[float]]:
    """Samples of each call, taken in alternating rounds (after a warm-up of each: 5 % of
    its calls, at least one)."""
    for call, n in zip(calls, ns):
        timings(call, max(1, n // 20))
    out: List[List[float]] = [[] for _ in calls]
    for _ in range(rounds):
        for samples, call, n in zip(out, calls, ns):
            samples += timings(call, max(1, n // rounds))
    return out


def process_cpu(pid: Optional[int]) -> float:
    """CPU seconds used so far by this process (``pid`` None) or another one (all its
    threads; Linux ``/proc``, nanosecond resolution; 0.0 where unavailable)."""
    if pid is None:
        return time.process_time()
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return total / 1e9


def cpu_per_call(calls: List[Callable[[], Any]], n: int, rounds: int) -> List[float]:
    """CPU seconds per call of each (client and server, every thread), alternating rounds."""
    pids = list(SERVER_PIDS) or [None] * len(calls)
    used = [0.0] * len(calls)
    for _ in range(rounds):
        for i, call in enumerate(calls):
            server = pids[i]
            c0, s0 = time.process_time(), process_cpu(server) if server else 0.0
            for _ in range(n // rounds):
                call()
            used[i] += time.process_time() - c0
            if server:
                used[i] += process_cpu(server) - s0
    count = rounds * (n // rounds)
    return [u / count for u in used]


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def speedup(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:,.0f}x"


def p99(values: List[float]) -> float:
    return float(np.percentile(values, 99))


Row = Tuple[str, ...]
#: the table's columns
HEADER = (
    "operation",
    "bridge stream",
    "bridge ZeroMQ",
    "Pyro5+tolist",
    "stream vs Pyro5",
    "ZeroMQ vs Pyro5",
    "target (stream)",
)


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


def print_table(title: str, rows: List[Row]) -> None:
    print(title)
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    print(" | ".join(h.ljust(w) for h, w in zip(HEADER, widths)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(v.ljust(w) for v, w in zip(r, widths)))
    print()


def load_average() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:  # Windows
        return "n/a"
    return f"{one:.2f} (5 min: {five:.2f})"


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
