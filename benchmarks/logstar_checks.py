"""LoG* that knows materials: the pixel size from the image's FFT, and the plausibility check.

Run from the repository root (5-10 minutes on two busy cores)::

    python benchmarks/logstar_checks.py
    python benchmarks/logstar_checks.py --quick       # fewer images, smaller budgets

Prints three tables (and the load average: the machine is shared):

1. **Pixel size from the FFT** (``agents.logstar.calibration.estimate_pixel_size``) against
   the truth: the twin's graphene and SrTiO3 [001] (calibration known) at noise 0.0, 0.5 and
   0.9; synthetic images of library lattices (``agents.logstar.render``: Gaussian columns
   of brightness Z^1.7, shot noise); the real ``G-Si-2nm.npy`` against its reference atoms'
   own lattice (their second neighbours, one cell apart), beside the nearest-neighbour
   shortcut the LoG* benchmark used so far.
2. **LoG* with the plausibility check** (``agents.logstar.plausibility``) on the twin, on
   the real graphene (pixel size from the FFT, and from the shortcut), and on synthetic WS2:
   there is no WS2 image in ``../shared/data`` and the twin has no dichalcogenide sample, so
   the WS2 images are drawn from the lattice library (a monolayer, W and S2 columns; and a
   2H multilayer, every column W + S2). LoG*'s own rewards (QC, ER at the automatic pick),
   F1 against the drawn truth and the check's three numbers side by side.
3. **Right count, wrong places**: atoms placed by hand where the rewards cannot see the
   error (the S2 sites typed as W, the W sites shifted by 0.05 nm or jittered by 0.05 nm,
   a square lattice of the W columns' density): the count and spacing rewards, then the
   check.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.logstar import LoGStarAgent, get_lattice  # noqa: E402
from agents.logstar.calibration import estimate_pixel_size  # noqa: E402
from agents.logstar.lattice import Lattice  # noqa: E402
from agents.logstar.plausibility import check_plausibility  # noqa: E402
from agents.logstar.render import lattice_sites, render_lattice  # noqa: E402
from agents.logstar.rewards import RewardContext, default_rewards, evaluate_rewards  # noqa: E402
from agents.metrics import match_atoms  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
SYNTHETIC = (
    ("graphene", 0.010),
    ("hBN", 0.008),
    ("MoS2", 0.012),
    ("WS2", 0.015),
    ("WSe2:bulk", 0.015),
    ("SrTiO3", 0.016),
    ("Si[110]", 0.012),
    ("GaAs[110]", 0.012),
    ("Au[001]", 0.015),
    ("Au[110]", 0.015),
)
WS2_PX = 0.015


def twin(sample: str, noise: float, seed: int = 1) -> Tuple[np.ndarray, float, np.ndarray]:
    from dm_bridge.backends.twin import TwinBackend

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the twin's EELS model warns on empty bands
        backend = TwinBackend(sample, seed=seed, noise_level=noise)
        acq = backend.acquire_image()
        truth = backend.get_truth()["atoms"]
    xy = np.asarray(truth["xy_px"], dtype=float)
    if sample == "srtio3":  # HAADF shows the Sr and Ti-O columns
        names = list(truth["species_names"])
        keep = np.isin(truth["species"], [names.index("Sr"), names.index("TiO")])
        xy = xy[keep]
    rc = xy[:, ::-1]
    h, w = acq.images["HAADF"].shape
    inside = (rc[:, 0] >= 0) & (rc[:, 0] <= h - 1) & (rc[:, 1] >= 0) & (rc[:, 1] <= w - 1)
    return acq.images["HAADF"], acq.scan.field_of_view / acq.scan.width, rc[inside]


def real_graphene() -> Optional[Dict[str, Any]]:
    if not (SHARED / "G-Si-2nm.npy").is_file():
        return None
    image = np.load(SHARED / "G-Si-2nm.npy")
    ref = np.load(SHARED / "G-Si-2nm-coords.npy")[:, :2]
    d, _ = cKDTree(ref).query(ref, k=10)
    nn = float(np.median(d[:, 1]))
    second = d[(d > 1.5 * nn) & (d < 1.9 * nn)]
    return {
        "image": image,
        "reference": ref,
        "from_atoms": 0.246 / float(np.mean(second)),
        "shortcut": 0.142 / nn,
    }


def pixel_table(quick: bool) -> List[Tuple[str, float, float, float, float]]:
    rows = []
    for sample, spec in (("graphene", "graphene"), ("srtio3", "SrTiO3")):
        for noise in (0.0, 0.9) if quick else (0.0, 0.5, 0.9):
            image, px, _ = twin(sample, noise)
            est = estimate_pixel_size(image, get_lattice(spec))
            rows.append(
                (f"twin {sample}, noise {noise}", px, est.pixel_size_nm, est.spread, est.contrast)
            )
    for spec, px in SYNTHETIC[:4] if quick else SYNTHETIC:
        image = render_lattice(
            get_lattice(spec), (256, 256), px, rotation_deg=23, counts=30, seed=2
        )
        est = estimate_pixel_size(image, get_lattice(spec))
        rows.append((f"synthetic {spec}", px, est.pixel_size_nm, est.spread, est.contrast))
    real = real_graphene()
    if real is not None:
        est = estimate_pixel_size(real["image"], get_lattice("graphene"))
        rows.append(
            ("real G-Si-2nm", real["from_atoms"], est.pixel_size_nm, est.spread, est.contrast)
        )
        rows.append(
            ("  (NN shortcut)", real["from_atoms"], real["shortcut"], float("nan"), float("nan"))
        )
    return rows


def run_logstar(image: np.ndarray, spec: str, px: Optional[float], budget: int) -> LoGStarAgent:
    agent = LoGStarAgent(spec, pixel_size_nm=px, budget=budget, n_clusters=0, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the check's warning: it is in the report, printed
        agent.observe(image)
    return agent


def agent_row(name: str, agent: LoGStarAgent, truth: Optional[np.ndarray]) -> Dict[str, Any]:
    report = agent.report()
    px = report["pixel_size_nm"]
    chosen = report["chosen"]["rewards"] if report.get("chosen") else {}
    f1 = float("nan")
    if truth is not None:
        f1 = match_atoms(agent.atoms[:, :2], truth, 0.5 * agent.lattice.nn_distance_px(px)).f1
    return {
        "name": name,
        "px": px,
        "source": report["pixel_size"].get("source"),
        "qc": chosen.get("quality_count", float("nan")),
        "er": chosen.get("error_rate", float("nan")),
        "f1": f1,
        "check": report["plausibility"],
    }


def check_table(quick: bool, budget: int) -> List[Dict[str, Any]]:
    rows = []
    for sample, spec in (("graphene", "graphene"), ("srtio3", "SrTiO3")):
        for noise in (0.0, 0.9) if quick else (0.0, 0.5, 0.9):
            image, px, truth = twin(sample, noise)
            rows.append(
                agent_row(f"twin {sample} {noise}", run_logstar(image, spec, px, budget), truth)
            )
    real = real_graphene()
    if real is not None:
        for label, px in (("FFT", None), ("NN shortcut", real["shortcut"])):
            agent = run_logstar(real["image"], "graphene", px, budget)
            rows.append(agent_row(f"real G-Si-2nm, px {label}", agent, real["reference"]))
    for drawn, typed in (
        ("WS2", "WS2"),
        ("WS2", "WS2:W"),
        ("WS2:bulk", "WS2:W"),
        ("WS2:bulk", "WS2:bulk"),
    ):
        lattice = get_lattice(drawn)
        image = render_lattice(
            lattice, (192, 192), WS2_PX, rotation_deg=17, sigma_nm=0.06, counts=40
        )
        sites, kind = lattice_sites(lattice, (192, 192), WS2_PX, rotation_deg=17)
        truth = sites if typed == drawn or drawn == "WS2:bulk" else sites[kind == 0]
        if typed.endswith(":W") and drawn == "WS2:bulk":
            truth = None  # no W-only truth in a column that holds W and S2 alike
        agent = run_logstar(image, typed, WS2_PX, budget)
        rows.append(agent_row(f"synthetic {drawn} typed {typed}", agent, truth))
    return rows


def wrong_places() -> List[Tuple[str, np.ndarray, Dict[str, Any]]]:
    lattice = get_lattice("WS2")
    image = render_lattice(lattice, (192, 192), WS2_PX, rotation_deg=17, sigma_nm=0.06, counts=40)
    sites, kind = lattice_sites(lattice, (192, 192), WS2_PX, rotation_deg=17)
    w, s2 = sites[kind == 0], sites[kind == 1]
    typed = get_lattice("WS2:W")
    side = float(np.sqrt(1 / typed.density_per_nm2))
    square = Lattice.from_unit_cell("square, the W density", (side, side), 90.0, [(0.0, 0.0)])
    rng = np.random.default_rng(0)
    cases = (
        ("the W sites (right)", w, typed),
        ("the S2 sites, typed W", s2, typed),
        ("W shifted 0.05 nm", w + np.array([0.04, 0.03]) / WS2_PX, typed),
        ("W jittered 0.05 nm rms", w + rng.normal(0, 0.05 / WS2_PX / np.sqrt(2), w.shape), typed),
        ("W sites, square lattice", w, square),
    )
    out = []
    for name, atoms, lat in cases:
        ctx = RewardContext.build(lat, WS2_PX, image.shape)
        rewards = evaluate_rewards(default_rewards(), [atoms], [image], [ctx])
        out.append((name, rewards, check_plausibility(atoms, image, lat, WS2_PX).as_dict()))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, smaller budget")
    args = parser.parse_args(argv)
    budget = 24 if args.quick else 40
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")

    print("\n1. Pixel size from the image's FFT (nm/px)")
    print("| image | true | FFT | error | spread | contrast |")
    print("|---|---|---|---|---|---|")
    for name, true, est, spread, contrast in pixel_table(args.quick):
        print(
            f"| {name} | {true:.5f} | {est:.5f} | {100 * (est / true - 1):+.2f} % | "
            f"{100 * spread:.2f} % | {contrast:.0f} |"
        )

    print(f"\n2. LoG* (automatic pick, weight 0.5, {budget} trials) and the plausibility check")
    print(
        "| image | pixel nm (source) | QC | ER | F1 | on columns | bright missed | "
        "on lattice | check |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in check_table(args.quick, budget):
        c = r["check"]
        lattice = "-" if c["on_lattice"] is None else f"{c['on_lattice']:.2f}"
        print(
            f"| {r['name']} | {r['px']:.5f} ({r['source']}) | {r['qc']:.3f} | {r['er']:.3f} | "
            f"{r['f1']:.3f} | {c['on_columns']:.2f} | {c['missed_bright']:.2f} | {lattice} | "
            f"{'ok' if c['ok'] else 'WARNS'} |"
        )

    print("\n3. Right count, wrong places (synthetic WS2, typed as its W columns)")
    print("| atoms | QC | ER | on columns | bright missed | on lattice | check |")
    print("|---|---|---|---|---|---|---|")
    for name, rewards, c in wrong_places():
        lattice = "-" if c["on_lattice"] is None else f"{c['on_lattice']:.2f}"
        print(
            f"| {name} | {rewards[0]:.3f} | {rewards[1]:.3f} | {c['on_columns']:.2f} | "
            f"{c['missed_bright']:.2f} | {lattice} | {'ok' if c['ok'] else 'WARNS'} |"
        )
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
