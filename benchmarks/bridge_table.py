"""Timing, CPU accounting, added load and the table of ``benchmarks/bridge.py``.

Samples are taken in alternating rounds so that the machine's load falls on all servers
alike; CPU time per call counts client and server (every thread; a server process's from
``/proc``); :func:`cpu_load` keeps cores busy for the *under load* conditions.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from typing import Any, Callable, Iterator, List, Optional, Tuple

import numpy as np

#: the server processes of the separate-process condition (their CPU time is read)
SERVER_PIDS: List[int] = []


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
