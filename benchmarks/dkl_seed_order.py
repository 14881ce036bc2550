"""Does the ORDER of the DKL agent's feature seed points buy a lead over random at steps 1-2?

Run from the repository root (a few minutes on two busy cores)::

    python benchmarks/dkl_seed_order.py --dev                  # the split orders are judged on
    python benchmarks/dkl_seed_order.py                        # held-out: twin 200-209, fields 0-9
    python benchmarks/dkl_seed_order.py --scene assembled --seeds 30

``DKLAgent``'s defaults (``seed_points="features"``: 5 seed points, one on each kind of
feature the survey shows) with each ``seed_order`` of :data:`agents.dkl_seeds.SEED_ORDERS`:
**drawn** (today's default: the kinds in an order drawn from the run's seed), **brightest** /
**darkest** (the kind brightest / darkest in the band-passed survey first: on a HAADF survey
the heaviest columns or particles, on an ABF survey the columns are dark), **rarest** (the
kind with the fewest sites first: a minority phase, an interface) and **outlying** (the kind
farthest in feature space from the sites' mean first). The set of seed points is the same in
every order, so steps 5 on start from the same data; the model then sees it in another order
and, on a few fields, makes other choices (a run's choices hang on differences of 1e-6).

Scenes, seeds, random baseline and score are :mod:`benchmarks.dkl_discovery`'s (same fields,
same random runs): best true value found so far over the true maximum, per step; "- random"
and "- drawn" are mean per-seed differences with their standard error.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.dkl import DKLAgent  # noqa: E402
from agents.dkl_seeds import SEED_ORDERS  # noqa: E402
from benchmarks import dkl_discovery as bd  # noqa: E402

STEPS_SHOWN = (1, 2, 3, 5, 10, 20, 30)


def run_order(order: str, scene: bd.Scene, seed: int, steps: int) -> np.ndarray:
    """Best-so-far fraction per step of ``DKLAgent(seed_order=order)`` on one field."""
    spec = ("despike:" if scene.scalarizer.startswith("edge") else "") + scene.scalarizer
    agent = DKLAgent(scene.survey, seed=seed, seed_order=order, detector=scene.detector)
    truth = []
    for _ in range(steps):
        s = agent.suggest(1)[0]
        point = np.array([[s["x"], s["y"]]])
        agent.ingest(point, scene.measure(point, spec))
        row, col = int(np.rint(s["y"])), int(np.rint(s["x"]))
        truth.append(scene.truth[row, col])
    return np.maximum.accumulate(np.array(truth, dtype=np.float64)) / float(scene.truth.max())


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scene", choices=("twin", "assembled", "both"), default="both")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--dev", action="store_true", help="twin 100-109, assembled dev half")
    parser.add_argument("--orders", default=",".join(SEED_ORDERS))
    args = parser.parse_args(argv)
    orders = [o for o in args.orders.split(",") if o]
    if "drawn" not in orders:
        orders.insert(0, "drawn")
    scenes = ("twin", "assembled") if args.scene == "both" else (args.scene,)
    shown = [k for k in STEPS_SHOWN if k <= args.steps]
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="dkl-seed-order-") as tmp:
        for name in scenes:
            first = bd.SEEDS[name][args.dev]
            seeds = list(range(first, first + args.seeds))
            curves: Dict[str, List[np.ndarray]] = {o: [] for o in ["random", *orders]}
            for seed in seeds:
                for method in curves:
                    if name == "twin":  # a fresh twin for each run, as dkl_discovery does
                        scene = bd.twin_scene(seed, Path(tmp))
                    elif method == "random":
                        scene = bd.assembled_scene(seed, Path(tmp), args.dev)
                    if method == "random":
                        record = bd.run_method("random", scene, seed, args.steps)
                        curves[method].append(bd.curves_of(record)[0])
                    else:
                        curves[method].append(run_order(method, scene, seed, args.steps))
                print(f"  {name} seed {seed} done", file=sys.stderr, flush=True)
            c = {m: np.vstack(v) for m, v in curves.items()}
            split = "dev" if args.dev else "held-out"
            print(f"\n{name} ({split}, seeds {seeds[0]}-{seeds[-1]}): best found / true max")
            print(f"{'order':11s}{'':9s}" + "".join(f"{'k=' + str(k):>13s}" for k in shown)
                  + f"{'>=90%':>8s}")  # fmt: skip
            for method, m in c.items():
                hits = int((m[:, -1] >= bd.GOAL_FRACTION).sum())
                print(f"{method:11s}{'found':9s}" + "".join(f"{m[:, k - 1].mean():13.3f}"
                      for k in shown) + f"{f'{hits}/{len(m)}':>8s}")  # fmt: skip
                for base in ("random", "drawn"):
                    if method in ("random", base):
                        continue
                    a = bd.ahead_of(m, c[base])
                    print(f"{'':11s}{'- ' + base:9s}" + "".join(
                        f"{a['difference'][k - 1]:+7.3f}±{a['se'][k - 1]:.3f}" for k in shown
                    ))  # fmt: skip
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
