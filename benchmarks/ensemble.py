"""Benchmark of the U-Net ensemble (ELIT-style): today's default against the first one, on
the twin and on a real image, with LoG* beside them.

Two ensembles, side by side in the same run:

* **baseline**: the first default (5 members x 300 steps on twin images of noise 0-0.8), used
  as it was: atoms are the components of the mean map, an atom's uncertainty is the members'
  variance over its footprint;
* **default**: what ``ophyd-stem train-ensemble`` makes now (``ophyd_stem.app.default_ensemble``:
  5 x 600 steps, the uncertainty calibrated on other twin images), used with the defaults of
  :func:`agents.ensemble.predict` (plausibility, whole atoms only, calibrated uncertainty).

Printed tables (figures go to benchmarks/out/; ``--docs`` copies them to docs/images/):

1. training: images, members, calibration, in seconds on this machine's CPU, beside the
   paper's GPU figures;
2. accuracy against the twin's truth (graphene and SrTiO3, noise 0.0-0.9, edge-excluded F1),
   both ensembles and LoG* on the same images;
3. uncertainty that flags errors: per data set (the twin test images plus hard ones: noise
   0.7-1.0, random sampling, thick contamination; the real ``G-Si-2nm`` before and after one
   unlabelled ELIT round), F1 strict and edge-excluded, the median uncertainty of false atoms
   over true ones, and the false-atom rate by uncertainty quintile (benchmarks/ensemble_scoring.py);
4. speed (:mod:`ensemble_speed`, beside this script) of the default ensemble: inference at
   128², 512² and 1024² on the CPU in float32 and bfloat16 and, when CUDA is present, on the
   GPU, with ``blob_log`` timed beside it; a training step on each device.

The real image is scored against its reference atoms only; nothing here is tuned on them.

Trained ensembles are cached under the ensemble cache (``OPHYD_STEM_CACHE``) as
``benchmark-<baseline|default>-<hash of the recipe>`` and reused; ``--retrain`` trains afresh.

Usage::

    python benchmarks/ensemble.py                 # full run: ~10 min training both ensembles
                                                  # on 2 cores at load ~5, ~3 min with them
                                                  # cached (~20 min cached at load 15)
    python benchmarks/ensemble.py --quick         # tiny ensembles, a smoke test (~1 min)
    python benchmarks/ensemble.py --docs          # also refresh docs/images/*.png
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ensemble_reference import SAMPLES, make_reference_finder  # beside this script
from ensemble_scoring import Tally, f1, score, variance_at

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
DOCS_IMAGES = REPO / "docs" / "images"
REAL_IMAGE = REPO.parent / "shared" / "data" / "G-Si-2nm.npy"
REAL_COORDS = REPO.parent / "shared" / "data" / "G-Si-2nm-coords.npy"
NOISE_LEVELS = [round(0.1 * i, 1) for i in range(10)]
#: the first default, as it was used: no plausibility, edge atoms kept, variance uncertainty
BASELINE_PREDICT = {"min_spacing": None, "exclude_edge": False, "calibration": None}
#: bump when the recipes change in a way the cache key does not see
RECIPE_VERSION = 3

# ------------------------------------------------------------------------------ training


@dataclass
class Variant:
    """One ensemble in the comparison, with how it is used."""

    label: str
    ensemble: Any
    predict: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)

    def __call__(self, image: np.ndarray, threads: int) -> Any:
        return self.ensemble.predict(image, num_threads=threads, **self.predict)


def _cached(name: str, args: argparse.Namespace) -> Any | None:
    from agents.ensemble import EnsembleNotFoundError, load_ensemble

    if args.retrain:
        return None
    try:
        ensemble = load_ensemble(name)
    except EnsembleNotFoundError:
        return None
    print(f"  using the cached ensemble {name!r} (--retrain to train afresh)")
    return ensemble


def _key(recipe: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]


def train_baseline(args: argparse.Namespace) -> Variant:
    """The first default: 5 x 300 steps, no calibration (its recipe, unchanged)."""
    from agents.ensemble import TrainingSettings, save_ensemble, train_ensemble
    from ophyd_stem.app.default_ensemble import TRAINING_NOISE
    from ophyd_stem.app.training_data import make_training_set

    settings = TrainingSettings(
        members=args.members, steps=args.baseline_steps, seed=args.seed, num_threads=1
    )
    recipe = {
        "v": RECIPE_VERSION,
        "settings": {**settings.to_dict(), "device": "cpu"},
        "images": args.train_images,
        "size": 128,
        "noise": list(TRAINING_NOISE),
    }
    name = f"benchmark-baseline-{_key(recipe)}"
    ensemble = _cached(name, args)
    timing = {"cached": float(ensemble is not None)}
    if ensemble is None:
        t0 = time.perf_counter()
        images, atoms = make_training_set(
            n_images=args.train_images, size=128, seed=args.seed, noise_levels=TRAINING_NOISE
        )
        timing["data_s"] = time.perf_counter() - t0
        ensemble = train_ensemble(
            images,
            atoms,
            replace_device(settings),
            description={"source": "digital twin", "noise_levels": list(TRAINING_NOISE)},
            compute=args.compute,
        )
        save_ensemble(ensemble, name, overwrite=True)
    timing["train_s"] = float(ensemble.metadata.get("train_seconds", float("nan")))
    return Variant("baseline", ensemble, dict(BASELINE_PREDICT), timing)


def replace_device(settings: Any) -> Any:
    """The benchmark measures the CPU path."""
    from dataclasses import replace

    return replace(settings, device="cpu")


def train_default(args: argparse.Namespace) -> Variant:
    """What ``ophyd-stem train-ensemble`` makes (ophyd_stem.app.default_ensemble)."""
    from ophyd_stem.app import default_ensemble as recipe_module

    recipe = {
        "v": RECIPE_VERSION,
        "members": args.members,
        "steps": args.steps,
        "images": args.train_images,
        "seed": args.seed,
        "noise": list(recipe_module.TRAINING_NOISE),
        "calibration": [
            args.calibration_images,
            recipe_module.CALIBRATION_SIZE,
            list(recipe_module.CALIBRATION_NOISE),
        ],
    }
    name = f"benchmark-default-{_key(recipe)}"
    ensemble = _cached(name, args)
    timing = {"cached": float(ensemble is not None)}
    if ensemble is None:
        lines: list[str] = []
        t0 = time.perf_counter()
        ensemble = recipe_module.train_default_ensemble(
            name,
            members=args.members,
            steps=args.steps,
            images=args.train_images,
            seed=args.seed,
            overwrite=True,
            log=lines.append,
            device="cpu",
            compute=args.compute,
            calibration_images=args.calibration_images,
            progress=False,
        )
        timing["total_s"] = time.perf_counter() - t0
        for line in lines:
            print(f"  {line}")
    timing["train_s"] = float(ensemble.metadata.get("train_seconds", float("nan")))
    return Variant("default", ensemble, {}, timing)


def print_training(variants: list[Variant], args: argparse.Namespace) -> None:
    print("\n## Training on the twin (CPU, one torch thread per member)")
    print("| ensemble | members × steps | training | all steps (images, training, calibration) |")
    print("| --- | --- | --- | --- |")
    for v in variants:
        t = v.timing
        steps = v.ensemble.metadata["training"]["steps"]
        total = (
            "cached"
            if t["cached"]
            else f"{t.get('total_s', t.get('data_s', 0) + t['train_s']):.0f} s"
        )
        cal = v.ensemble.metadata.get("calibration", {}).get("fitted_on", {})
        extra = (
            f"; calibrated on {cal['images']} images ({cal['false_atoms']} of {cal['atoms']} "
            f"atoms false, AUROC {cal['auroc']:.2f})"
            if cal
            else "; not calibrated"
        )
        print(
            f"| {v.label} | {len(v.ensemble)} × {steps} | {t['train_s']:.0f} s | {total}{extra} |"
        )
    print("| paper (V100 GPU) | 20 models | ~9 min | 155 s per model |")


# ------------------------------------------------------------------------------ twin


def twin(variants: list[Variant], args: argparse.Namespace) -> dict[str, Any]:
    """Both ensembles and the reference on the twin's test images, then on hard ones."""
    from ophyd_stem.app.training_data import make_training_set, twin_image

    rows: list[tuple] = []
    tallies = {v.label: Tally() for v in variants}
    per_image: dict[str, list[tuple]] = {v.label: [] for v in variants}
    missed_var: list[np.ndarray] = []
    found_var: list[np.ndarray] = []
    examples: dict[str, tuple] = {}
    levels = NOISE_LEVELS if not args.quick else [0.0, 0.3, 0.6, 0.9]
    for sample, (_, px) in SAMPLES.items():
        for level in levels:
            ref_name, reference = make_reference_finder(sample, px, args.threads)
            sums = {v.label: np.zeros(3, dtype=int) for v in variants}
            ref_sum = np.zeros(3, dtype=int)
            for k in range(args.images_per_level):
                image, truth, _ = twin_image(sample, size=256, noise_level=level, seed=1000 + k)
                for v in variants:
                    pred = v(image, args.threads)
                    s = score(pred.atoms, truth, image.shape)
                    sums[v.label] += s["edge"]
                    tallies[v.label].add(s, pred.uncertainty)
                    per_image[v.label].append((pred.image_uncertainty, 1.0 - s["f1"]))
                    if v.label == "default":
                        missed_var.append(variance_at(pred.variance, s["missed"]))
                        found_var.append(variance_at(pred.variance, pred.atoms[~s["false"]]))
                        if k == 0 and level == max(levels):
                            examples[f"twin {sample}, noise {level}"] = (image, pred, truth, s)
                ref_sum += score(reference(image), truth, image.shape)["edge"]
            rows.append((sample, level, sums, ref_name, ref_sum))
    # Uncertainty needs mistakes: add hard, varied images (noise 0.7-1.0, any sampling and
    # orientation, graphene under thick contamination), scored with the same rule.
    hard, hard_atoms = make_training_set(
        n_images=args.hard_images,
        size=256,
        noise_levels=(0.7, 1.0),
        sample_parameters={"graphene": {"contamination": (1.0, 4.0)}},
        margin=0,
        seed=args.seed + 99,
    )
    for image, truth in zip(hard, hard_atoms):
        for v in variants:
            pred = v(image, args.threads)
            s = score(pred.atoms, truth, image.shape)
            tallies[v.label].add(s, pred.uncertainty)
            per_image[v.label].append((pred.image_uncertainty, 1.0 - s["f1"]))
            if v.label == "default":
                missed_var.append(variance_at(pred.variance, s["missed"]))
                found_var.append(variance_at(pred.variance, pred.atoms[~s["false"]]))
    return {
        "rows": rows,
        "tallies": tallies,
        "per_image": per_image,
        "missed_var": np.concatenate(missed_var),
        "found_var": np.concatenate(found_var),
        "examples": examples,
    }


def print_accuracy(rows: list, labels: list[str]) -> None:
    ref_name = rows[0][3] if rows else "reference"
    print("\n## Accuracy against twin truth (256² images, edge-excluded, sums over images)")
    head = " | ".join(f"{label} F1 (FP/FN)" for label in labels)
    print(f"| sample | noise | {head} | {ref_name} F1 (FP/FN) |")
    print("| --- | --- |" + " --- |" * (len(labels) + 1))
    for sample, level, sums, _, r in rows:
        cells = " | ".join(f"{f1(sums[lb]):.3f} ({sums[lb][1]}/{sums[lb][2]})" for lb in labels)
        print(f"| {sample} | {level:.1f} | {cells} | {f1(r):.3f} ({r[1]}/{r[2]}) |")


# ------------------------------------------------------------------------------ real image


def real_image(variants: list[Variant], args: argparse.Namespace) -> dict[str, Any] | None:
    from agents.ensemble import TrainingSettings, iterative_training, prepare_training_data
    from ophyd_stem.app.training_data import make_training_set

    if not REAL_IMAGE.is_file():
        print(f"\n(real image not found at {REAL_IMAGE}: skipped)")
        return None
    image = np.load(REAL_IMAGE)
    truth = np.load(REAL_COORDS)[:, :2]
    out: dict[str, Any] = {"image": image, "truth": truth, "results": {}, "elit": {}}
    ref_name, reference = make_reference_finder("graphene", 2.0 / 256, args.threads)
    out["reference"] = (ref_name, score(reference(image), truth, image.shape))
    # ELIT: one round on the real image itself (no labels), with twin data kept in the mix
    images, atoms = make_training_set(n_images=32, size=128, seed=args.seed + 7)
    labelled = prepare_training_data(images, atoms)
    for v in variants:
        pred = v(image, args.threads)
        out["results"][v.label] = (pred, score(pred.atoms, truth, image.shape))
        base = TrainingSettings.from_dict(v.ensemble.metadata.get("training", {}))
        settings = TrainingSettings.from_dict(
            {
                **base.to_dict(),
                "steps": max(20, base.steps // 4),
                "learning_rate": base.learning_rate / 3,
                "num_threads": 1,
                "device": "cpu",
            }
        )
        t0 = time.perf_counter()
        retrained = iterative_training(
            v.ensemble,
            [image],
            labelled=labelled,
            settings=settings,
            predict_kwargs={**v.predict, "num_threads": args.threads},
            compute=args.compute,
        )
        seconds = time.perf_counter() - t0
        after = Variant(f"{v.label} + ELIT", retrained, v.predict)
        pred2 = after(image, args.threads)
        out["results"][after.label] = (pred2, score(pred2.atoms, truth, image.shape))
        out["elit"][v.label] = {**retrained.metadata["history"][-1], "seconds": seconds}
    return out


def print_uncertainty(acc: dict[str, Any], real: dict[str, Any] | None) -> None:
    print(
        "\n## Uncertainty that flags errors (false atom = no reference atom within half a "
        "bond, strict rule; quintiles by the ensemble's reported uncertainty, lowest first)"
    )
    print(
        "| data | ensemble | F1 strict (TP/FP/FN) | F1 edge-excluded | FP/TP median "
        "uncertainty | AUROC | false-atom rate by uncertainty quintile |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    sets = [("twin test + hard", acc["tallies"])]
    if real is not None:
        tallies = {}
        for label, (pred, s) in real["results"].items():
            tallies[label] = Tally()
            tallies[label].add(s, pred.uncertainty)
        sets.append(("real G-Si-2nm", tallies))
    for name, tallies in sets:
        for label, tally in tallies.items():
            st = tally.stats()
            q = " / ".join(f"{rate:.3f}" for *_, rate in st["quintiles"])
            tp, fp, fn = st["strict"]
            print(
                f"| {name} | {label} | {st['f1_strict']:.3f} ({tp}/{fp}/{fn}) "
                f"| {st['f1_edge']:.3f} | {st['ratio']:.2f} | {st['auroc']:.2f} | {q} |"
            )
    if real is not None:
        ref_name, r = real["reference"]
        print(
            f"| real G-Si-2nm | {ref_name} | {f1(r['strict']):.3f} "
            f"({'/'.join(str(v) for v in r['strict'])}) | {r['f1']:.3f} | – | – | – |"
        )
        for label, e in real["elit"].items():
            print(
                f"ELIT round on {label}: kept {e['pseudo_atoms_kept']} confident atoms as labels,"
                f" ignored {e['pseudo_atoms_rejected']}; {e['steps']} steps per member, "
                f"{e['seconds']:.0f} s"
            )


def print_quintiles(acc: dict[str, Any]) -> None:
    from scipy.stats import spearmanr

    print("\n## Twin: uncertainty ranges of the quintiles (test + hard images)")
    print("| ensemble | quintile | uncertainty | atoms | false-atom rate |")
    print("| --- | --- | --- | --- | --- |")
    for label, tally in acc["tallies"].items():
        for i, (lo, hi, n, rate) in enumerate(tally.stats()["quintiles"], 1):
            print(f"| {label} | {i} | {lo:.2e} – {hi:.2e} | {n} | {rate:.3f} |")
    for label, rows in acc["per_image"].items():
        unc, err = np.array(rows).T
        rho = float(spearmanr(unc, err).statistic)
        print(
            f"{label}: per image, Spearman correlation of the image uncertainty (mean "
            f"variance) with its error (1 - F1) = {rho:.2f} over {len(rows)} images"
        )
    missed, found = acc["missed_var"], acc["found_var"]
    if len(missed):
        print(
            f"default: variance at the centre of atoms it missed: median {np.median(missed):.2e} "
            f"({len(missed)} atoms) vs at atoms it found: median {np.median(found):.2e}"
        )


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run for a smoke test")
    parser.add_argument("--retrain", action="store_true", help="ignore the cached ensembles")
    parser.add_argument("--docs", action="store_true", help="copy the figures to docs/images")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for inference")
    parser.add_argument("--compute", help="train members on a Dask cluster (e.g. local:2)")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--steps", type=int, default=600, help="steps per member (default)")
    parser.add_argument("--baseline-steps", type=int, default=300, help="steps (baseline)")
    parser.add_argument("--train-images", type=int, default=160)
    parser.add_argument("--calibration-images", type=int, default=48)
    parser.add_argument("--images-per-level", type=int, default=3)
    parser.add_argument("--hard-images", type=int, default=24, help="for the uncertainty")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.members, args.steps, args.baseline_steps = 2, 60, 30
        args.train_images, args.calibration_images = 32, 8
        args.images_per_level, args.hard_images = 1, 4

    # Waiting OpenMP threads sleep instead of spinning (decision 0010); before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    def load() -> float:
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    print(
        f"# U-Net ensemble benchmark (torch {torch.__version__}, {args.threads} inference "
        f"threads, {os.cpu_count()} CPUs, load average {load():.1f} at start)"
    )
    variants = [train_baseline(args), train_default(args)]
    print_training(variants, args)
    acc = twin(variants, args)
    print_accuracy(acc["rows"], [v.label for v in variants])
    real = real_image(variants, args)
    print_uncertainty(acc, real)
    print_quintiles(acc)
    from ensemble_speed import run as speed_tables  # beside this script

    speed_tables(variants[-1].ensemble, quick=args.quick)
    print(f"\nload average {load():.1f} at the end (2 cores shared with other jobs)")
    from ensemble_figures import figures  # beside this script

    written = figures(acc, real, OUT)
    print("\nfigures: " + ", ".join(str(p.relative_to(REPO)) for p in written))
    if args.docs:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        for p in written:
            shutil.copy(p, DOCS_IMAGES / p.name)
            print(f"copied to docs/images/{p.name} ({p.stat().st_size // 1024} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
