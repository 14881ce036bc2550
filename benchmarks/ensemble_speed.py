"""U-Net ensemble speed on the CPU and, when CUDA is present, on the GPU.

Run from the repository root (a few minutes on two cores)::

    python benchmarks/ensemble_speed.py            # untrained members: speed does not
                                                   # depend on the weights
    python benchmarks/ensemble_speed.py --quick    # 128² and 512² only
    python benchmarks/ensemble.py                  # calls this with its trained ensemble,
                                                   # adding how far bfloat16 moves the atoms

Inference, seconds per image (median of repeats after a warm-up call; best in brackets), for
K members of the project's default architecture (3 levels, 8 filters) on a twin graphene
image, all in this process:

- **CPU float32**: ``device="cpu"`` (explicitly; what ``"auto"`` gives without a GPU),
  the default: the members rewritten for a CPU (decision 0016), one thread (decision 0010):
  the production path on a CPU;
- **CPU bfloat16**: the same with ``precision="bfloat16"`` (opt-in on a CPU; the autocast a
  GPU uses by default);
- **blob_log**: scikit-image's LoG with fixed parameters, the non-learning baseline (CPU);
- **GPU**: ``device="cuda"``: bfloat16 autocast, the whole image in one tile, mean and
  variance reduced on the GPU, host copies included; "not measured" without CUDA.

Then one training step (batch of 8 crops of 64²) on each device. Targets: CPU 5 members on a
512² image <= 0.4 s; GPU (H200) 5 members on 1024² <= 15 ms, 20 members <= 50 ms.

Last, the CPU target **quiet and loaded**: 5 members on the 512² image, the machine as found
and with two CPU-bound processes beside it (``--hogs``). Every cell is three fresh processes
taking turns with the other cells' (the load of a shared machine changes by the minute; and
the default path asks glibc to keep freed memory, once per process, so the baseline needs
processes of its own): the **baseline** (``engine="modules"``: each member's own torch
module, one after the other, glibc's malloc as it comes: how every CPU prediction ran before
the rewrite) beside the **default** (the members rewritten for a CPU,
:mod:`agents.ensemble.cpu_net`, one thread) and the rewrite with ``num_threads=2`` (two
members at once, the same numbers), with the load averages, and how far the default moves
the probabilities and the atoms.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: (members, image side) rows of the inference table
ROWS = ((5, 128), (5, 512), (5, 1024), (20, 1024))
TARGETS = {("cpu", 5, 512): 0.4, ("gpu", 5, 1024): 0.015, ("gpu", 20, 1024): 0.050}
NO_GPU = "not measured: no CUDA device"


def timed(fn: Callable[[], Any], repeats: int) -> Tuple[float, float, float]:
    """``(median, best, median CPU)`` seconds of ``repeats`` calls after one warm-up call.

    On a shared machine the best and the CPU time say how fast the machine is; the median
    wall time is what a user would see right now."""
    fn()
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), min(times), statistics.median(cpu)


def members(ensemble: Any, k: int) -> Any:
    """An ensemble of ``k`` members made of the given ones (cycled): for timing only."""
    import copy

    from agents.ensemble import Ensemble

    return Ensemble([copy.deepcopy(ensemble.members[i % len(ensemble)]) for i in range(k)])


def untrained(k: int = 5, seed: int = 0) -> Any:
    import torch

    from agents.ensemble import Ensemble, UNet, UNetConfig

    torch.manual_seed(seed)
    return Ensemble([UNet(UNetConfig()).eval() for _ in range(k)])


def blob_log_finder() -> Callable[[np.ndarray], np.ndarray]:
    from skimage.feature import blob_log

    def find(image: np.ndarray) -> np.ndarray:
        img = image.astype(np.float64)
        img = (img - img.min()) / (np.ptp(img) or 1.0)
        return blob_log(img, min_sigma=2, max_sigma=6, num_sigma=5, threshold=0.05)

    return find


def inference(ensemble: Any, quick: bool, repeats: int) -> List[Dict[str, Any]]:
    import torch

    from agents.ensemble import predict
    from ophyd_stem.app.training_data import twin_image

    gpu = torch.cuda.is_available()
    reference = blob_log_finder()
    rows = []
    for k, size in ROWS if not quick else ROWS[:2]:
        image, _, _ = twin_image("graphene", size=size, noise_level=0.3, pixel_size=2.0 / 256)
        ens = members(ensemble, k)
        n = repeats if size <= 512 else max(1, repeats // 2)
        if k > 5:
            n = 1  # 20 members at 1024² take seconds per call on a CPU
        row: Dict[str, Any] = {"k": k, "size": size, "load": os.getloadavg()[0]}
        row["cpu"] = timed(lambda e=ens, im=image: predict(e, im, device="cpu"), n)
        row["bf16"] = timed(
            lambda e=ens, im=image: predict(e, im, device="cpu", precision="bfloat16"), n
        )
        row["blob_log"] = timed(lambda im=image: reference(im), n) if k == 5 else None
        row["gpu"] = (
            timed(lambda e=ens, im=image: predict(e, im, device="cuda"), 10) if gpu else None
        )
        rows.append(row)
    return rows


def agreement(ensemble: Any) -> Dict[str, float]:
    """How far bfloat16 moves a trained ensemble's answer on a 512² twin image."""
    from agents.ensemble import predict
    from agents.metrics import match_atoms
    from ophyd_stem.app.training_data import twin_image

    image, _, _ = twin_image("graphene", size=512, noise_level=0.3, pixel_size=2.0 / 256)
    fp32 = predict(ensemble, image, device="cpu")
    bf16 = predict(ensemble, image, device="cpu", precision="bfloat16")
    match = match_atoms(bf16.atoms, fp32.atoms, 1.0)
    return {
        "atoms_fp32": len(fp32.atoms),
        "atoms_bf16": len(bf16.atoms),
        "matched": match.tp,
        "max_probability_difference": float(np.abs(fp32.mean - bf16.mean).max()),
    }


def training_steps(repeats: int) -> Dict[str, Optional[float]]:
    """Seconds per training step (batch 8 of 64²) on the CPU and the GPU."""
    import torch

    from agents.ensemble import TrainingSettings, prepare_training_data, train_member

    rng = np.random.default_rng(0)
    images = rng.random((8, 128, 128)).astype(np.float32)
    atoms = [rng.uniform(4, 124, size=(60, 2)) for _ in range(8)]
    data = prepare_training_data(images, atoms)
    steps = 10
    out: Dict[str, Optional[float]] = {}
    for name, device in (("cpu", "cpu"), ("gpu", "cuda")):
        if device == "cuda" and not torch.cuda.is_available():
            out[name] = None
            continue
        settings = TrainingSettings(steps=steps, batch_size=8, crop_size=64, device=device)
        out[name] = timed(lambda s=settings: train_member(data, s, 0), repeats)[0] / steps
    return out


def _cell(t: Optional[Tuple[float, ...]], unit: float = 1.0, fmt: str = "{:.3f} s") -> str:
    if t is None:
        return "-"
    return f"{fmt.format(t[0] * unit)} ({fmt.format(t[1] * unit)}; {t[2]:.3f} CPU s)"


def print_tables(rows: List[Dict[str, Any]], steps: Dict[str, Optional[float]]) -> None:
    import torch

    from agents.device import describe, resolve_device

    gpu = torch.cuda.is_available()
    gpu_name = describe(resolve_device("cuda"))["name"] if gpu else None
    auto = describe(resolve_device("auto"))
    print(
        f"\n## Ensemble inference, seconds per image: median wall (best wall; median CPU "
        f"seconds); device='auto' resolves to "
        f"{auto['name']} here; CPU: {torch.get_num_threads()} torch threads outside the calls, "
        f"1 inside (decision 0010)"
    )
    gpu_head = f"GPU ({gpu_name}, bf16)" if gpu else "GPU"
    print(
        f"| members | image | load avg | CPU float32 | CPU bfloat16 | blob_log (CPU) | {gpu_head} |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        g = _cell(r["gpu"], 1000, "{:.1f} ms") if r["gpu"] else NO_GPU
        print(
            f"| {r['k']} | {r['size']}² | {r['load']:.1f} | {_cell(r['cpu'])} | {_cell(r['bf16'])} "
            f"| {_cell(r['blob_log'])} | {g} |"
        )
    print("paper (V100 GPU, 20 members): < 6 s per 1000² image")
    for (where, k, size), goal in TARGETS.items():
        row = next((r for r in rows if r["k"] == k and r["size"] == size), None)
        key = "cpu" if where == "cpu" else "gpu"
        if where == "cpu":
            print(f"target CPU {k} members at {size}² <= {goal} s: see the quiet/loaded table")
            continue
        if row is None or row[key] is None:
            verdict = "not measured" + (": no CUDA device" if key == "gpu" and not gpu else "")
        else:
            verdict = ("met" if row[key][0] <= goal else "NOT met") + f" ({row[key][0]:.3f} s)"
        print(f"target {where.upper()} {k} members at {size}² <= {goal} s: {verdict}")
    print("\n## One training step, batch 8 of 64² (median of repeats)")
    print(f"| CPU | {gpu_head.replace(', bf16', '')} |")
    print("| --- | --- |")
    gpu_step = f"{1000 * steps['gpu']:.1f} ms" if steps.get("gpu") is not None else NO_GPU
    print(f"| {1000 * (steps['cpu'] or float('nan')):.1f} ms | {gpu_step} |")


#: the quiet/loaded table's columns: label -> predict() keywords
LOAD_VARIANTS = {
    "baseline: member modules, 1 thread": {"engine": "modules", "num_threads": 1},
    "default: CPU rewrite, 1 thread": {},
    "CPU rewrite, num_threads=2 (2 members at once)": {"num_threads": 2},
}

_LOAD_CHILD = r"""
import json, os, sys, time
sys.path.insert(0, {repo!r})
from agents.ensemble import load_ensemble, predict
from ophyd_stem.app.training_data import twin_image
ensemble = load_ensemble({path!r})
image, _, _ = twin_image("graphene", size=512, noise_level=0.3, pixel_size=2.0 / 256)
kwargs = json.loads({kwargs!r})
load = os.getloadavg()[0]
predict(ensemble, image, device="cpu", **kwargs)
wall, cpu = [], []
for _ in range({repeats}):
    t0, c0 = time.perf_counter(), time.process_time()
    predict(ensemble, image, device="cpu", **kwargs)
    wall.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
print(json.dumps(dict(wall=wall, cpu=cpu, load=load)))
"""

_HOG = "while True:\n    pass\n"


def _fresh_process(path: str, kwargs: Dict[str, Any], repeats: int) -> Dict[str, float]:
    code = _LOAD_CHILD.format(repo=str(REPO), path=path, kwargs=json.dumps(kwargs), repeats=repeats)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"timing {kwargs} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def under_load(ensemble: Any, repeats: int, hogs: int = 2, rounds: int = 3) -> List[Dict[str, Any]]:
    """The CPU target's table: the variants of :data:`LOAD_VARIANTS`, the machine as found
    and with ``hogs`` CPU-bound processes beside it.

    Each variant runs ``rounds`` times in a fresh process (``repeats`` calls after a
    warm-up), the variants taking turns, so that the other jobs on a shared machine weigh
    on all of them alike; a cell is the median over all its calls.
    """
    from agents.ensemble import save_ensemble

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(save_ensemble(ensemble, Path(tmp) / "ensemble"))
        for condition in ("as found", f"+{hogs} CPU-bound processes"):
            procs: List[subprocess.Popen] = []
            runs: Dict[str, List[Dict[str, Any]]] = {label: [] for label in LOAD_VARIANTS}
            try:
                if condition != "as found":
                    procs = [subprocess.Popen([sys.executable, "-c", _HOG]) for _ in range(hogs)]
                    time.sleep(1.0)  # let the scheduler see them
                for _ in range(rounds):
                    for label, kwargs in LOAD_VARIANTS.items():
                        runs[label].append(_fresh_process(path, kwargs, repeats))
            finally:
                for p in procs:
                    p.kill()
                    p.wait()
            cells = {}
            for label, got in runs.items():
                wall = [w for r in got for w in r["wall"]]
                cpu = [c for r in got for c in r["cpu"]]
                loads = [r["load"] for r in got]
                cells[label] = {
                    "wall": statistics.median(wall),
                    "best": min(wall),
                    "cpu": statistics.median(cpu),
                    "load": (min(loads), max(loads)),
                }
            rows.append({"condition": condition, **cells})
    return rows


def equivalence(ensemble: Any) -> List[Dict[str, Any]]:
    """How far the default CPU path moves the baseline's answer (twin and real image)."""
    from agents.ensemble import predict, predict_members
    from agents.metrics import match_atoms
    from ophyd_stem.app.training_data import twin_image

    images = {
        "twin graphene 512², noise 0.3": twin_image(
            "graphene", size=512, noise_level=0.3, pixel_size=2.0 / 256
        )[0]
    }
    real = REPO.parent / "shared" / "data" / "G-Si-2nm.npy"
    if real.is_file():
        images["real G-Si-2nm 256²"] = np.load(real)
    rows = []
    for name, image in images.items():
        maps = [
            predict_members(ensemble, image, device="cpu", engine=e) for e in ("modules", "auto")
        ]
        before, now = (
            predict(ensemble, image, device="cpu", engine=e) for e in ("modules", "auto")
        )
        same = len(before.atoms) == len(now.atoms) and match_atoms(
            now.atoms, before.atoms, 1e-3
        ).tp == len(now.atoms)
        rows.append(
            {
                "image": name,
                "dp": float(np.abs(maps[0] - maps[1]).max()),
                "atoms": (len(before.atoms), len(now.atoms)),
                "same": same,
                "dxy": float(np.abs(now.atoms - before.atoms).max())
                if same and len(now.atoms)
                else 0.0,
            }
        )
    return rows


def print_load_table(rows: List[Dict[str, Any]], agree: List[Dict[str, Any]]) -> None:
    print(
        "\n## CPU target, 5 members on a 512² image, quiet and loaded: median wall (best "
        "wall; median CPU seconds) over all calls of 3 fresh processes per cell, the cells "
        "taking turns; load averages at their starts"
    )
    print("| machine | " + " | ".join(LOAD_VARIANTS) + " |")
    print("| --- | " + " | ".join("---" for _ in LOAD_VARIANTS) + " |")
    for r in rows:
        cells = " | ".join(
            f"{r[k]['wall']:.3f} s ({r[k]['best']:.3f}; {r[k]['cpu']:.3f} CPU) at load "
            f"{r[k]['load'][0]:.1f}-{r[k]['load'][1]:.1f}"
            for k in LOAD_VARIANTS
        )
        print(f"| {r['condition']} | {cells} |")
    base, default = list(LOAD_VARIANTS)[:2]
    for r in rows:
        verdict = "met" if r[default]["wall"] <= TARGETS[("cpu", 5, 512)] else "NOT met"
        print(
            f"target <= 0.4 s, {r['condition']}: {verdict} by the default "
            f"({r[default]['wall']:.3f} s; baseline {r[base]['wall']:.3f} s, "
            f"{r[base]['wall'] / r[default]['wall']:.2f}x)"
        )
    for a in agree:
        print(
            f"default vs baseline, {a['image']}: max |Δ probability| {a['dp']:.1e}; atoms "
            f"{a['atoms'][0]} vs {a['atoms'][1]}, "
            + (f"the same (largest shift {a['dxy']:.1e} px)" if a["same"] else "DIFFERENT")
        )


def run(ensemble: Optional[Any], quick: bool = False, repeats: int = 5, hogs: int = 2) -> None:
    """The speed tables; with a trained ensemble, also bfloat16's effect on its atoms."""
    trained = ensemble is not None
    ensemble = ensemble if trained else untrained()
    rows = inference(ensemble, quick, repeats)
    steps = training_steps(3)
    print_tables(rows, steps)
    print_load_table(under_load(ensemble, repeats, hogs), equivalence(ensemble))
    if trained:
        a = agreement(ensemble)
        print(
            f"bfloat16 on the trained ensemble, 512² twin image: {a['atoms_bf16']} atoms vs "
            f"{a['atoms_fp32']} in float32, {a['matched']} within 1 px; largest change of the "
            f"mean probability {a['max_probability_difference']:.3f}"
        )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="128² and 512² only")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ensemble", help="a saved ensemble's name (default: untrained)")
    parser.add_argument("--hogs", type=int, default=2, help="CPU-bound processes when loaded")
    args = parser.parse_args(argv)
    # a terminated benchmark must not leave its CPU-bound processes behind
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import torch

    print(
        f"# ensemble speed (torch {torch.__version__}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at start)"
    )
    ensemble = None
    if args.ensemble:
        from agents.ensemble import load_ensemble

        ensemble = load_ensemble(args.ensemble)
    run(ensemble, args.quick, args.repeats, args.hogs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
