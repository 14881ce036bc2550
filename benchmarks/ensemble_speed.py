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
  the default thread policy (1 thread, decision 0010): the production path on a CPU;
- **CPU bfloat16**: the same with ``precision="bfloat16"`` (opt-in on a CPU; the autocast a
  GPU uses by default);
- **blob_log**: scikit-image's LoG with fixed parameters, the non-learning baseline (CPU);
- **GPU**: ``device="cuda"``: bfloat16 autocast, the whole image in one tile, mean and
  variance reduced on the GPU, host copies included; "not measured" without CUDA.

Then one training step (batch of 8 crops of 64²) on each device. Targets: CPU 5 members on a
512² image <= 0.4 s; GPU (H200) 5 members on 1024² <= 15 ms, 20 members <= 50 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
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


def run(ensemble: Optional[Any], quick: bool = False, repeats: int = 5) -> None:
    """The speed tables; with a trained ensemble, also bfloat16's effect on its atoms."""
    trained = ensemble is not None
    ensemble = ensemble if trained else untrained()
    rows = inference(ensemble, quick, repeats)
    steps = training_steps(3)
    print_tables(rows, steps)
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
    args = parser.parse_args(argv)
    import torch

    print(
        f"# ensemble speed (torch {torch.__version__}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at start)"
    )
    ensemble = None
    if args.ensemble:
        from agents.ensemble import load_ensemble

        ensemble = load_ensemble(args.ensemble)
    run(ensemble, args.quick, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
