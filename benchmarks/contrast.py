"""Bright or dark columns: the image's own say, and the atom finders on a real ABF image.

Run from the repository root (3-6 minutes on two busy cores)::

    python benchmarks/contrast.py
    python benchmarks/contrast.py --quick      # fewer twin images, no ensemble

Prints four tables (and the load average: the machine is shared):

1. **Which way round** (:func:`agents.contrast.column_skewness`): the real HAADF graphene
   ``G-Si-2nm.npy``, the real ABF perovskite ``stem_abf_data.hspy`` and twin graphene and
   SrTiO3 images (HAADF, BF, ABF; noise as the physical current, 0.5 and 0.8; probe 0.09
   and 0.2 nm FWHM), each as recorded and inverted, clean and spoiled (0.1 % hot pixels at
   20x the image's range, a thickness gradient of 1.5x its range, a flat disc a fifth of
   the field across: vacuum or a hole). The baseline beside it: the sign of the plain
   (moment) skewness of the intensities. Right / ambiguous / wrong per method, the
   resolved images apart from the twin graphene under a 0.2 nm probe (0.142 nm spacing:
   not resolved).
2. **LoG* on the real ABF image** (512², 0.00933 nm/px): which zone axis (the pixel size
   the FFT gives with each SrTiO3 lattice against the file's), then the atoms with
   ``contrast`` bright / auto without a detector / auto with "ABF" / auto with the
   detector misnamed "HAADF": count against the lattice's density x the field, the
   plausibility check, time.
3. **LoG* on the real HAADF image**: ``auto`` against ``bright``: the same atoms?
4. **The ensemble** (the default one in the cache, when there is one): the real ABF image
   bright and auto, the real HAADF bright and auto.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
from scipy import stats
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.contrast import AMBIGUOUS, column_skewness  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
#: nearest-neighbour spacing of the twin's samples, nm (graphene C-C; SrTiO3 [001] Sr-TiO)
TWIN_NN = {"graphene": 0.142, "srtio3": 0.3905 / np.sqrt(2)}


def load_real() -> Dict[str, Tuple[np.ndarray, float, str]]:
    """``name -> (image, pixel size nm, detector)``."""
    from rsciio.hspy import file_reader

    out: Dict[str, Tuple[np.ndarray, float, str]] = {}
    image = np.load(SHARED / "G-Si-2nm.npy")
    coords = np.load(SHARED / "G-Si-2nm-coords.npy")[:, :2]
    d, _ = cKDTree(coords).query(coords, k=2)
    out["G-Si-2nm"] = (image, 0.142 / float(np.median(d[:, 1])), "HAADF")
    signal = file_reader(str(SHARED / "stem_abf_data.hspy"))[0]
    out["stem_abf"] = (np.asarray(signal["data"]), float(signal["axes"][1]["scale"]), "ABF")
    return out


def twin_images(quick: bool) -> List[Tuple[str, np.ndarray, float, str]]:
    """``(label, image, spacing px, truth)`` of twin images."""
    from dm_bridge.backends.twin import TwinBackend

    settings = [(None, 0.09), (0.5, 0.09), (0.8, 0.09), (None, 0.2), (0.5, 0.2)]
    if quick:
        settings = [(None, 0.09), (0.8, 0.09), (None, 0.2)]
    out = []
    for sample in ("graphene", "srtio3"):
        for noise, probe in settings:
            twin = TwinBackend(sample, seed=3, noise_level=noise, probe_fwhm=probe)
            twin.set_scan_parameters(signals=["HAADF", "BF", "ABF"])
            acq = twin.acquire_image()
            spacing = TWIN_NN[sample] / acq.pixel_size
            for signal in ("HAADF", "BF", "ABF"):
                label = f"twin {sample} noise {noise or 'phys'} probe {probe} {signal}"
                truth = "bright" if signal == "HAADF" else "dark"
                out.append((label, np.asarray(acq.images[signal], float), spacing, truth))
    return out


def spoil(image: np.ndarray, how: str, rng: np.random.Generator) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64).copy()
    lo, hi = np.percentile(img, [1, 99])
    if how == "hot":
        img[rng.random(img.shape) < 0.001] = hi + 20 * (hi - lo)
    elif how == "gradient":
        img += 1.5 * (hi - lo) * np.arange(img.shape[1])[None, :] / img.shape[1]
    elif how == "flat disc":
        rows, cols = np.indices(img.shape)
        r = np.hypot(rows - 0.3 * img.shape[0], cols - 0.3 * img.shape[1])
        img[r < 0.2 * img.shape[0]] = np.median(img)
    return img


def verdict(value: float, truth: str) -> str:
    if abs(value) < AMBIGUOUS:
        return "ambiguous"
    return "right" if ("bright" if value > 0 else "dark") == truth else "WRONG"


def table_statistic(quick: bool) -> None:
    rng = np.random.default_rng(0)
    cases: List[Tuple[str, np.ndarray, float, str, bool]] = []
    for name, (image, px, detector) in load_real().items():
        nn = 0.142 if name == "G-Si-2nm" else 0.3905 / 2  # SrTiO3 [110]: SrO-Ti 0.195 nm
        truth = "bright" if detector == "HAADF" else "dark"
        cases.append((f"real {name} ({detector})", image, nn / px, truth, True))
    for label, image, spacing, truth in twin_images(quick):
        cases.append((label, image, spacing, truth, "graphene" not in label or "0.2" not in label))
    spoils = ("clean", "hot", "gradient", "flat disc") if not quick else ("clean", "hot")
    tally: Dict[Tuple[str, bool], Dict[str, int]] = {}
    print("\n1. Which way round: column skewness (ambiguous under "
          f"{AMBIGUOUS}) beside the plain moment skewness")  # fmt: skip
    print(f"{'image':52s} {'as':9s} {'spoilt':10s} {'moment':>8s} {'at nn':>7s} {'6-24px':>7s}"
          f"  {'moment':9s} {'at nn':9s} {'6-24px':9s}")  # fmt: skip
    for label, image, spacing, truth, resolved in cases:
        for inverted in (False, True):
            want = truth if not inverted else {"bright": "dark", "dark": "bright"}[truth]
            for how in spoils:
                img = spoil(image, how, rng)
                img = -img if inverted else img
                values = (
                    float(stats.skew(img.ravel())),
                    column_skewness(img, spacing),
                    column_skewness(img),
                )
                marks = [verdict(v, want) for v in values]
                for method, mark in zip(("moment", "at nn", "6-24px"), marks):
                    counts = tally.setdefault((method, resolved), {})
                    counts[mark] = counts.get(mark, 0) + 1
                print(f"{label:52s} {'inverted' if inverted else 'recorded':9s} {how:10s} "
                      + " ".join(f"{v:+7.2f}" for v in values) + "  "
                      + " ".join(f"{m:9s}" for m in marks))  # fmt: skip
    print("\n   tally (right / ambiguous / WRONG):")
    for resolved in (True, False):
        what = "resolved images" if resolved else "twin graphene, 0.2 nm probe (unresolved)"
        for method in ("moment", "at nn", "6-24px"):
            c = tally.get((method, resolved), {})
            print(f"   {what:42s} {method:7s} {c.get('right', 0):4d} / "
                  f"{c.get('ambiguous', 0):3d} / {c.get('WRONG', 0):3d}")  # fmt: skip
    image = load_real()["stem_abf"][0]
    for side in (256, 512):
        crop = np.asarray(image[:side, :side], dtype=np.float64)
        t = time.perf_counter()
        for _ in range(5):
            column_skewness(crop)
        grid = (time.perf_counter() - t) / 5
        t = time.perf_counter()
        for _ in range(5):
            column_skewness(crop, 20.9)
        one = (time.perf_counter() - t) / 5
        print(f"   time per image {side}²: {1000 * one:.0f} ms at one spacing, "
              f"{1000 * grid:.0f} ms over 6-24 px")  # fmt: skip


def logstar_row(label: str, image: np.ndarray, px: float, spec: str, budget: int,
                **observe: Any) -> Dict[str, Any]:  # fmt: skip
    from agents.logstar import LoGStarAgent, get_lattice

    contrast = observe.pop("contrast", "auto")
    t = time.perf_counter()
    agent = LoGStarAgent(spec, pixel_size_nm=px, budget=budget, n_clusters=0, contrast=contrast)
    agent.observe(image, **observe)
    seconds = time.perf_counter() - t
    report = agent.report()
    check = report["plausibility"] or {}
    field = image.shape[0] * image.shape[1] * px**2
    expected = get_lattice(spec).density_per_nm2 * field
    decided = report["contrast"]
    print(f"{label:34s} {spec:24s} {decided['contrast']:6s} {decided['source']:9s} "
          f"{len(agent.atoms):5d} {expected:6.0f} {check.get('ok')!s:5s} "
          f"{check.get('on_columns', 0):5.2f} {check.get('missed_bright', 0):5.2f} "
          f"{check.get('on_lattice') or 0:5.2f} {seconds:6.1f}"
          + ("  (detector/image disagree)" if decided.get("warning") else ""))  # fmt: skip
    return {"agent": agent, "seconds": seconds}


def table_logstar(budget: int) -> np.ndarray:
    """Prints tables 2 and 3; returns LoG*'s atoms (row, col) of the ABF image, every column
    counted (SrO, Ti, O2), for the ensemble's table."""
    from agents.logstar import get_lattice
    from agents.logstar.calibration import estimate_pixel_size

    real = load_real()
    abf, px, _ = real["stem_abf"]
    print(f"\n2. LoG* on the real ABF image {abf.shape[0]}x{abf.shape[1]}, {px:.5f} nm/px "
          f"(budget {budget})")  # fmt: skip
    inverted = -abf.astype(np.float64)
    for spec in ("SrTiO3", "SrTiO3[110]"):
        est = estimate_pixel_size(inverted, get_lattice(spec), reference=px)
        print(f"   FFT with {spec:12s}: {est.pixel_size_nm:.5f} nm/px = "
              f"{est.pixel_size_nm / px:.4f} x the file's (clear: {est.clear})")  # fmt: skip
    print(f"{'run':34s} {'lattice':24s} {'taken':6s} {'by':9s} {'atoms':>5s} {'expect':>6s} "
          f"{'ok':5s} {'on col':>5s} {'miss':>5s} {'on lat':>5s} {'s':>6s}")  # fmt: skip
    logstar_row("bright (as before)", abf, px, "SrTiO3[110]", budget, contrast="bright")
    logstar_row("auto, no detector", abf, px, "SrTiO3[110]", budget)
    logstar_row("auto, detector ABF", abf, px, "SrTiO3[110]", budget, detector="ABF")
    logstar_row("auto, misnamed HAADF", abf, px, "SrTiO3[110]", budget, detector="HAADF")
    every = logstar_row("auto, with the O columns", abf, px, "SrTiO3[110]:SrO,Ti,O2", budget)
    logstar_row("auto, [001] typed", abf, px, "SrTiO3", budget)

    image, px_g, _ = real["G-Si-2nm"]
    print(f"\n3. LoG* on the real HAADF image G-Si-2nm, {px_g:.5f} nm/px (budget {budget})")
    rows = {
        c: logstar_row(c, image, px_g, "graphene", budget, contrast=c) for c in ("bright", "auto")
    }
    same = np.array_equal(rows["bright"]["agent"].atoms, rows["auto"]["agent"].atoms)
    print(f"   auto finds the same atoms as bright: {same}")
    return every["agent"].atoms[:, :2]


def table_ensemble(logstar_atoms: np.ndarray) -> None:
    from agents.ensemble import EnsembleAgent, EnsembleNotFoundError
    from agents.metrics import match_atoms

    try:
        EnsembleAgent("default", device="cpu")
    except EnsembleNotFoundError:
        print("\n4. the ensemble: no default ensemble in the cache (ophyd-stem train-ensemble)")
        return
    real = load_real()
    print("\n4. The default ensemble (CPU, default threads)")
    print(f"{'image':12s} {'contrast':9s} {'taken':6s} {'by':9s} {'atoms':>5s} {'median p':>8s} "
          f"{'s':>6s}")  # fmt: skip
    found = {}
    for name in ("stem_abf", "G-Si-2nm"):
        image = real[name][0]
        for contrast in ("bright", "auto"):
            agent = EnsembleAgent("default", device="cpu", contrast=contrast)
            t = time.perf_counter()
            prediction = agent.observe(image)
            seconds = time.perf_counter() - t
            decided = agent.report()["contrast"]
            found[name, contrast] = prediction.xy
            p = float(np.median(prediction.probability)) if len(prediction.xy) else float("nan")
            print(f"{name:12s} {contrast:9s} {decided['contrast']:6s} {decided['source']:9s} "
                  f"{len(prediction.xy):5d} {p:8.3f} {seconds:6.1f}")  # fmt: skip
    same = np.array_equal(found["G-Si-2nm", "bright"], found["G-Si-2nm", "auto"])
    print(f"   G-Si-2nm: auto finds the same atoms as bright: {same}")
    from agents.logstar import get_lattice

    px = real["stem_abf"][1]
    field = real["stem_abf"][0].size * px**2
    two = get_lattice("SrTiO3[110]").density_per_nm2 * field
    three = get_lattice("SrTiO3[110]:SrO,Ti,O2").density_per_nm2 * field
    print(f"   stem_abf field {field:.1f} nm²: SrTiO3 [110] has {two:.0f} SrO + Ti columns, "
          f"{three:.0f} with the O columns")  # fmt: skip
    reference = logstar_atoms[:, ::-1]  # (x, y) as the ensemble's
    for contrast in ("bright", "auto"):
        score = match_atoms(found["stem_abf", contrast], reference, max_distance=4.0)
        print(f"   stem_abf {contrast:6s} against LoG*'s {len(reference)} columns (SrO, Ti, O2; "
              f"within 4 px = 0.04 nm): F1 {score.f1:.3f} (TP {score.tp}, FP {score.fp}, "
              f"FN {score.fn})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer twin images, no ensemble")
    parser.add_argument("--budget", type=int, default=40, help="LoG* trials per image")
    args = parser.parse_args()
    logging.getLogger("agents").setLevel(logging.ERROR)  # the failed checks are in the table
    warnings.simplefilter("ignore")
    print(f"load average at start: {os.getloadavg()}")
    table_statistic(args.quick)
    columns = table_logstar(args.budget if not args.quick else 16)
    if not args.quick:
        table_ensemble(columns)
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
