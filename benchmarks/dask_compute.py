"""Agent work on a Dask cluster: one job after the other here vs a 2-worker LocalCluster.

Run from the repository root (a few minutes on two cores)::

    python benchmarks/dask_compute.py
    python benchmarks/dask_compute.py --workers 4 --members 8 --images 8

Two embarrassingly parallel jobs of the agents, each run twice in this script: in this
process (``compute=None``, as without a cluster) and on a real ``LocalCluster`` (processes,
one thread each; ``agents.compute``), then compared:

- **ensemble training**: K members of the default U-Net (3 levels, 8 filters), batches of 8
  crops of 64² from twin images; the same weights, bit for bit?
- **LoG* multi-image optimisation**: each of M twin graphene images (256²) optimised on its
  own (``optimize_each``: Sobol start + Bayesian rounds); the same Pareto fronts?

Both sides use one torch thread per job (decision 0010), so the results are the same and the
speed-up is what the extra processes buy. The cluster's start and the workers' first imports
(torch, botorch) are paid once, in a warm-up before the timed runs, and shown apart. The load
average is printed with each row: on a shared machine a second worker only helps when a
second core is free.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _timed(fn: Callable[[], Any]) -> Tuple[Any, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def ensemble_job(members: int, steps: int) -> Tuple[Callable[[Any], Any], Callable]:
    from agents.ensemble import TrainingSettings, prepare_training_data, train_ensemble
    from ophyd_stem.app.training_data import make_training_set

    images, atoms = make_training_set(n_images=16, size=128, noise_levels=(0.0, 0.8), seed=0)
    data = prepare_training_data(images, atoms)
    settings = TrainingSettings(members=members, steps=steps, num_threads=1, seed=0)

    def run(compute: Any) -> Any:
        return train_ensemble(None, settings=settings, data=data, compute=compute)

    def same(a: Any, b: Any) -> bool:
        import torch

        return all(
            torch.equal(x, y)
            for m, n in zip(a.members, b.members)
            for x, y in zip(m.state_dict().values(), n.state_dict().values())
        )

    return run, same


def logstar_job(images: int, budget: int) -> Tuple[Callable[[Any], Any], Callable]:
    from agents.logstar import optimize_each
    from ophyd_stem.app.training_data import twin_image

    pixel = 2.0 / 256
    frames = [
        twin_image("graphene", size=256, noise_level=0.2 + 0.1 * (k % 4), pixel_size=pixel, seed=k)[
            0
        ]
        for k in range(images)
    ]

    def run(compute: Any) -> Any:
        return optimize_each(frames, "graphene", pixel, budget=budget, seed=0, compute=compute)

    def same(a: List[Any], b: List[Any]) -> bool:
        def fronts(results: List[Any]) -> List[Any]:
            return [[(p.params, sorted(p.rewards.items())) for p in r.front] for r in results]

        return fronts(a) == fronts(b) and all(
            np.array_equal(x.values, y.values) for x, y in zip(a, b)
        )

    return run, same


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--members", type=int, default=4, help="ensemble members")
    parser.add_argument("--steps", type=int, default=60, help="training steps per member")
    parser.add_argument("--images", type=int, default=4, help="LoG* images")
    parser.add_argument("--budget", type=int, default=24, help="LoG* trials per image")
    args = parser.parse_args(argv)

    from distributed import Client

    from agents.compute import local_cluster

    print(
        f"# Dask fan-out of agent work ({os.cpu_count()} CPUs, {args.workers}-worker "
        f"LocalCluster, one thread per worker and per job; load average "
        f"{os.getloadavg()[0]:.1f} at start)"
    )
    jobs: Dict[str, Tuple[Callable[[Any], Any], Callable]] = {
        f"ensemble training, {args.members} members x {args.steps} steps": ensemble_job(
            args.members, args.steps
        ),
        f"LoG* optimisation of {args.images} images (256², {args.budget} trials each)": (
            logstar_job(args.images, args.budget)
        ),
    }
    t0 = time.perf_counter()
    cluster = local_cluster(args.workers)
    client = Client(cluster, set_as_default=False)
    started = time.perf_counter() - t0
    try:
        # warm-up: every worker imports torch, botorch and the agents, botorch's kernel loads
        t0 = time.perf_counter()
        small_ensemble, _ = ensemble_job(args.workers, 2)
        small_logstar, _ = logstar_job(args.workers, 10)
        small_ensemble(client)
        small_logstar(client)
        small_logstar(None)
        warm = time.perf_counter() - t0
        print(f"cluster start {started:.1f} s; workers' first imports and a warm-up {warm:.1f} s")
        print("| work | load avg | in this process | LocalCluster | speed-up | same results |")
        print("| --- | --- | --- | --- | --- | --- |")
        for label, (run, same) in jobs.items():
            load = os.getloadavg()[0]
            here, wall_here, cpu_here = _timed(lambda r=run: r(None))
            there, wall_there, _ = _timed(lambda r=run: r(client))
            print(
                f"| {label} | {load:.1f} | {wall_here:.1f} s ({cpu_here:.1f} CPU s) "
                f"| {wall_there:.1f} s | {wall_here / wall_there:.2f}x "
                f"| {'yes' if same(here, there) else 'NO'} |"
            )
    finally:
        client.close()
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
