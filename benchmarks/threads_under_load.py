"""torch/OpenMP thread policies on a busy machine: what decision 0010 rests on.

Run from the repository root (about three minutes on two cores)::

    python benchmarks/threads_under_load.py
    python benchmarks/threads_under_load.py --hogs 2 --repeats 7

Three CPU workloads of the agents, each timed in a fresh Python process (OpenMP reads its
wait policy once, when torch loads), under three thread policies, first on the machine as
found and then with ``--hogs`` CPU-bound processes (pure-Python busy loops) running beside:

- **ensemble**: 5-member U-Net ensemble (3 levels, 8 filters) predicting one 512² image;
- **train**: 10 training steps of one member, batches of 8 crops of 64²;
- **dkl**: one DKL step (ingest one point, fine-tune, predict over 16,384 candidates) at
  N = 200 measurements.

Policies: ``1 thread``; ``2 threads`` with libgomp's default wait (threads spin a while
for a partner before sleeping); ``2 threads, passive`` (``OMP_WAIT_POLICY=PASSIVE``:
a waiting thread sleeps at once). Each cell is the median wall time (and its CPU time) of
``--repeats`` calls after a warm-up call ("did not finish": over ``--limit`` seconds in all).
The load average at each row is printed: this machine is shared, so "as found" is rarely
quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]

POLICIES = {
    "1 thread": (1, None),
    "2 threads": (2, None),
    "2 threads, passive": (2, "PASSIVE"),
}
WORKLOADS = ("ensemble", "train", "dkl")

_CHILD = r"""
import json, os, statistics, sys, time
sys.path.insert(0, {repo!r})
sys.path.insert(0, {bench!r})
import numpy as np, torch
threads, workload, repeats = {threads}, {workload!r}, {repeats}
torch.set_num_threads(threads)
if workload == "ensemble":
    from agents.ensemble import Ensemble, UNet, UNetConfig, predict
    torch.manual_seed(0)
    ens = Ensemble([UNet(UNetConfig()).eval() for _ in range(5)])
    image = np.random.default_rng(0).random((512, 512)).astype(np.float32)
    def call():
        predict(ens, image, num_threads=threads, device="cpu")
elif workload == "train":
    from agents.ensemble import TrainingSettings, prepare_training_data, train_member
    rng = np.random.default_rng(0)
    images = rng.random((8, 128, 128)).astype(np.float32)
    atoms = [rng.uniform(4, 124, size=(60, 2)) for _ in range(8)]
    data = prepare_training_data(images, atoms)
    settings = TrainingSettings(steps=10, batch_size=8, crop_size=64, num_threads=threads)
    def call():
        train_member(data, settings, 0)
else:
    from dkl_step import measurements, scene
    from agents.dkl import DKLAgent
    survey, target = scene(0)
    agent = DKLAgent(survey, step=1, seed=0, n_seed=0, num_threads=threads, device="cpu")
    xy, values = measurements(target, 200 + repeats + 1, np.random.default_rng(0))
    agent.ingest(xy[:200], values[:200])
    agent.fit()
    counter = iter(range(200, 200 + repeats + 1))
    def call():
        i = next(counter)
        agent.ingest(xy[i : i + 1], values[i : i + 1])
        agent.suggest(1)
call()
wall, cpu = [], []
for _ in range(repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    call()
    wall.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
print(json.dumps({{"wall": statistics.median(wall), "cpu": statistics.median(cpu)}}))
"""

_HOG = "while True:\n    pass\n"


def measure(
    workload: str, threads: int, wait: Optional[str], repeats: int, limit: float
) -> Dict[str, float]:
    """Run one workload in a fresh process; ``{"wall", "cpu"}`` median seconds per call
    (``nan`` when the process took longer than ``limit`` seconds in all)."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if wait:
        env["OMP_WAIT_POLICY"] = wait
    code = _CHILD.format(
        repo=str(REPO),
        bench=str(REPO / "benchmarks"),
        threads=threads,
        workload=workload,
        repeats=repeats,
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=limit
        )
    except subprocess.TimeoutExpired:
        return {"wall": float("nan"), "cpu": float("nan")}
    if out.returncode != 0:
        raise RuntimeError(f"{workload} ({threads} threads) failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(repeats: int, hogs: int, limit: float) -> List[Dict[str, Any]]:
    rows = []
    for condition in ("as found", f"+{hogs} CPU-bound processes"):
        procs: List[subprocess.Popen] = []
        try:
            if condition != "as found":
                procs = [subprocess.Popen([sys.executable, "-c", _HOG]) for _ in range(hogs)]
                time.sleep(1.0)  # let the scheduler see them
            for workload in WORKLOADS:
                load = os.getloadavg()[0]
                cells = {
                    name: measure(workload, threads, wait, repeats, limit)
                    for name, (threads, wait) in POLICIES.items()
                }
                rows.append({"condition": condition, "workload": workload, "load": load, **cells})
                print(_row(rows[-1]), flush=True)
        finally:
            for p in procs:
                p.kill()
                p.wait()
    return rows


def _row(r: Dict[str, Any]) -> str:
    cells = " | ".join(
        f"{r[name]['wall']:.3f} s ({r[name]['cpu']:.3f} CPU)"
        if r[name]["wall"] == r[name]["wall"]
        else "did not finish"
        for name in POLICIES
    )
    return f"| {r['condition']} | {r['workload']} | {r['load']:.1f} | {cells} |"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hogs", type=int, default=2, help="CPU-bound processes beside")
    parser.add_argument(
        "--limit", type=float, default=240.0, help="seconds one measurement may take in all"
    )
    args = parser.parse_args(argv)
    # a terminated benchmark must not leave its CPU-bound processes behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(
        f"# thread policies under load ({os.cpu_count()} CPUs; median wall time per call, "
        f"its CPU time in brackets; load average when the row started)"
    )
    print("| machine | workload | load avg | " + " | ".join(POLICIES) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in POLICIES) + " |")
    rows = table(args.repeats, args.hogs, args.limit)
    by_key = {(r["condition"], r["workload"]): r for r in rows}
    print("\nslow-down of 2 threads against 1 thread (wall):")
    for (condition, workload), r in by_key.items():
        one = r["1 thread"]["wall"]
        ratios = ", ".join(
            f"{name}: {r[name]['wall'] / one:.2f}x" for name in POLICIES if name != "1 thread"
        )
        print(f"  {condition:28s} {workload:9s} {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
