"""What looking at a run costs: the live figure during a run, forensics and replay after it.

In one process, on the twin (nanoparticles, 64 x 64 survey, in-process bridge), a DKL run of
``--steps`` steps is made twice, without and with the live figure subscribed (headless; PNG at
the end), so the table shows what the figure adds per step beside the baseline. Then the
same run is checked by forensics (re-running the agent), replayed into the figure, and
written as a replay-backend recording.

Run: ``python benchmarks/replay_hitl.py [--steps 20]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import bluesky.plan_stubs as bps
from bluesky import RunEngine

from agents.dkl import DKLAgent
from agents.scalarizers import get_scalarizer
from ophyd_stem.app.analysis.forensics import forensics
from ophyd_stem.app.analysis.replay import as_experiment, replay
from ophyd_stem.app.views import LiveView
from ophyd_stem.sim import twin_microscope
from plans import adaptive_eels


def one_run(steps: int, folder: Path, view: LiveView | None) -> tuple[float, list]:
    RE = RunEngine({})
    docs: list = []
    RE.subscribe(lambda name, doc: docs.append((name, doc)))
    if view is not None:
        RE.subscribe(view)
    microscope = twin_microscope("nanoparticles", mode="local", assets_dir=folder, seed=2)
    RE(bps.mv(microscope.scan.width, 64, microscope.scan.height, 64))

    def make_agent(image):
        return DKLAgent(image, window=8, n_seed=3, seed=1, train_iters=60, finetune_iters=15)

    started = time.perf_counter()
    RE(
        adaptive_eels(
            microscope.scan,
            microscope.eels_points,
            make_agent,
            get_scalarizer("band:20:30"),
            steps=steps,
            maps_every=5,
        )
    )
    wall = time.perf_counter() - started
    microscope.sim_bridge.close()
    return wall, docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        one_run(3, folder, None)  # warm-up: imports, first fits
        base, docs = one_run(args.steps, folder, None)
        view = LiveView(out_dir=folder / "live", show=False)
        with_view, _ = one_run(args.steps, folder, view)
        every = LiveView(show=True)  # Agg: renders as a screen would, no files
        every_step, _ = one_run(args.steps, folder, every)
        t = time.perf_counter()
        report = forensics(docs)
        t_forensics = time.perf_counter() - t
        t = time.perf_counter()
        replayed = LiveView(out_dir=folder / "replay", show=False)
        n_docs = replay(docs, [replayed])
        t_replay = time.perf_counter() - t
        t = time.perf_counter()
        recording = as_experiment(docs, folder / "rec")
        t_rec = time.perf_counter() - t
        size = recording.path.stat().st_size / 2**20

    n = args.steps
    print(f"DKL on the twin, 64 x 64 survey, {n} steps (same process, same settings)\n")
    print(f"{'what':44s} {'total (s)':>10s} {'per step (ms)':>14s}")
    print(f"{'run without the live figure (baseline)':44s} {base:10.2f} {1e3 * base / n:14.0f}")
    for label, wall in (
        ("run with the figure off screen (PNG at end)", with_view),
        ("run with the figure rendered at every step", every_step),
    ):
        print(f"{label:44s} {wall:10.2f} {1e3 * wall / n:14.0f}")
        print(f"{'  added by the figure':44s} {wall - base:10.2f} {1e3 * (wall - base) / n:14.0f}")
    print(
        f"{'forensics (rebuild agent, re-run all steps)':44s} {t_forensics:10.2f} "
        f"{1e3 * t_forensics / n:14.0f}   {report.matches}/{len(report.checks)} match"
    )
    print(f"{f'replay of {n_docs} documents into the figure':44s} {t_replay:10.2f}")
    print(
        f"{'as_experiment (.npz, nearest-spectrum fill)':44s} {t_rec:10.2f} "
        f"{'':14s}   {size:.0f} MiB"
    )


if __name__ == "__main__":
    main()
