"""What a plan submitted from another process costs against the same plan in the console.

Side by side, in the same run, on the same twin:

- **console**: ``RE(plan)`` in this process (a session as ``ophyd-stem console`` makes it:
  the twin's bridge in a thread, the embedded catalog);
- **queue**: the same plan submitted from this process to a re-manager (``ophyd-stem serve``'s
  pieces: Redis, the catalog, start-re-manager with profile_collection, the twin inside the
  worker) through bluesky-queueserver-api, and followed until the queue reports it done.

Plans: ``count`` (one spectrum), ``survey`` (64x64) and a 5-step DKL ``adaptive_eels`` (the
kind of plan a facility queues). Per plan: *to start* = from the call (or the submission) to
the run's start document (its ``time``, the RunEngine's clock; same machine), *total* = from
the call to ``RE`` returning (or to the client seeing the item in the history, polled every
20 ms). Printed with the load average: on a busy machine every figure grows.

    python benchmarks/facility.py [--repeats 10] [--adaptive-repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

DKL = {"agent_kwargs": {"n_seed": 2, "window": 8}, "steps": 5, "maps_every": 0}
PLANS = {
    # name: (console plan builder, queue item, adaptive: fewer repeats)
    "count (1 spectrum)": (
        lambda ns: ns["bp"].count([ns["eels"]]),
        ("count", [["eels"]], {}),
        False,
    ),
    "survey (64x64)": (
        lambda ns: ns["plans"].survey(ns["scan_engine"]),
        ("survey", ["scan_engine"], {}),
        False,
    ),
    "DKL, 5 steps": (
        lambda ns: ns["plans"].adaptive_eels(
            ns["scan_engine"], ns["eels_points"], "dkl", "band:20:30", **DKL
        ),
        ("adaptive_eels", ["scan_engine", "eels_points", "dkl", "band:20:30"], DKL),
        True,
    ),
}


def _stats(values: list[float]) -> str:
    median, low, high = (1e3 * f(values) for f in (statistics.median, min, max))
    return f"{median:8.0f} {low:7.0f} {high:7.0f}"


def console(repeats: dict[str, int], data_dir: Path) -> dict[str, dict[str, list[float]]]:
    import bluesky.plan_stubs as bps

    from ophyd_stem.app.session import configure_session

    namespace: dict = {}
    session = configure_session(namespace, plots=False, progress=False, data_dir=str(data_dir))
    session.bec.disable_table()
    starts: list[float] = []
    session.RE.subscribe(lambda name, doc: starts.append(doc["time"]), "start")
    scan = namespace["scan_engine"]
    session.RE(bps.mv(scan.width, 64, scan.height, 64))
    out = {}
    try:
        for label, (build, _, _) in PLANS.items():
            session.RE(build(namespace))  # warm
            to_start, total = [], []
            for _ in range(repeats[label]):
                t0 = time.time()
                session.RE(build(namespace))
                total.append(time.time() - t0)
                to_start.append(starts[-1] - t0)
            out[label] = {"to start": to_start, "total": total}
    finally:
        session.close(timeout=60)
    return out


def queue(repeats: dict[str, int], data_dir: Path) -> dict[str, dict[str, list[float]]]:
    from ophyd_stem.app.facility import Facility, FacilityConfig
    from ophyd_stem.app.queue import QueueClient
    from ophyd_stem.catalog import open_catalog

    config = FacilityConfig(
        data_dir=data_dir,
        redis_port=0,
        control_port=0,
        info_port=0,
        env={"OPHYD_STEM_CONFIG": str(data_dir / "none.toml"), "MPLBACKEND": "Agg"},
    )
    out = {}
    with Facility(config) as facility, QueueClient(facility.control_address) as client:
        catalog = open_catalog(facility.catalog_uri, facility.api_key)
        assert client.run("mv", "scan_engine.width", 64, "scan_engine.height", 64).ok
        for label, (_, (name, args, kwargs), _) in PLANS.items():
            assert client.run(name, *args, **kwargs).ok  # warm
            to_start, total, uids = [], [], []
            for _ in range(repeats[label]):
                t0, m0 = time.time(), time.monotonic()
                uid = client.submit(name, *args, **kwargs)
                result = client.follow(uid, poll=0.02, submitted=m0)
                total.append(result.seconds)
                uids.append((t0, result.run_uids[0]))
            for t0, run_uid in uids:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        start = catalog[run_uid].metadata["start"]
                        break
                    except KeyError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.2)
                to_start.append(start["time"] - t0)
            out[label] = {"to start": to_start, "total": total}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--adaptive-repeats", type=int, default=3, help="for the DKL plan")
    args = parser.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    repeats = {
        label: args.adaptive_repeats if adaptive else args.repeats
        for label, (_, _, adaptive) in PLANS.items()
    }
    with tempfile.TemporaryDirectory(prefix="bench-facility-") as tmp:
        before = os.getloadavg()
        here = console(repeats, Path(tmp) / "console")
        there = queue(repeats, Path(tmp) / "queue")
        after = os.getloadavg()
    print(
        f"\nplan latency, {args.repeats} repeats each ({args.adaptive_repeats} of DKL); "
        "ms: median / min / max"
    )
    print(f"load average {before[0]:.1f} at start, {after[0]:.1f} at end (2 cores)\n")
    header = "median     min     max"
    print(f"{'':29} {'to start':^24} {'total':^24}")
    print(f"{'plan':20} {'where':8} {header:>24} {header:>24}  queue cost (median)")
    for label in PLANS:
        for where, figures in (("console", here[label]), ("queue", there[label])):
            extra = ""
            if where == "queue":
                cost = statistics.median(figures["total"]) - statistics.median(here[label]["total"])
                extra = f"  +{1e3 * cost:.0f} ms"
            print(
                f"{label:20} {where:8} {_stats(figures['to start'])} {_stats(figures['total'])}"
                + extra
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
