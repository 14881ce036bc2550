"""Discovery in the rVAE's latent space: how soon does each kind of structure get a spectrum?

Run from the repository root (a few minutes on two cores)::

    python benchmarks/latent_discovery.py             # 5 seeds
    python benchmarks/latent_discovery.py --seeds 2   # quicker look

For each seed, the twin's Au/Ag nanoparticle sample (``TwinBackend("nanoparticles", seed=s)``)
gives a HAADF survey; its true phases (vacuum, carbon, Ag, Au: the twin's label map) are the
kinds of structure to be found. Each method picks ``--spectra`` EELS positions:

- **latent**: ``agents.latent.LatentAgent`` (a rotation-invariant VAE in pyro trained on the
  survey's patches, a Gaussian mixture over its latent space, one spectrum per cluster
  representative, then the least likely patches);
- **bandit-TS**: ``agents.bandit.BanditAgent`` over k-means arms (rewarded with the 20-30 eV
  band, as in ``dkl_discovery.py``);
- **random**, **raster**: uniformly random pixels; a regular grid.

Scored: phases covered by the first 5 and by all spectra (of the 4 present), the spectrum at
which the rarest phase (Au, ~1-4 % of the field) is first measured, and the rVAE's training
time, wall clock and CPU (one torch thread: on a busy machine the two differ widely). Also
draws ``benchmarks/out/latent_trajectory.png``: the survey's latent map with a
20-step DKL run's trajectory in it (the seed paper's Figure 4d).
"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.bandit import BanditAgent  # noqa: E402
from agents.latent import LatentAgent, latent_trajectory  # noqa: E402
from agents.patches import grid_points  # noqa: E402
from agents.scalarizers import get_scalarizer  # noqa: E402
from dm_bridge.backends.twin import TwinBackend  # noqa: E402

OUT = REPO / "benchmarks" / "out"
METHODS = ("latent", "bandit-TS", "random", "raster")


def _picks(
    method: str, twin, image: np.ndarray, n: int, seed: int
) -> tuple[np.ndarray, tuple[float, float]]:
    """The method's ``n`` positions, and its rVAE's (wall, CPU) training seconds."""
    if method == "latent":
        agent = LatentAgent(image, n_clusters=5, seed=seed)
        pts = np.array([[s["x"], s["y"]] for s in agent.suggest(n)])
        return pts, (float(agent.vae.train_seconds), float(agent.vae.train_cpu_seconds))
    if method == "random":
        rng = np.random.default_rng(seed)
        flat = rng.choice(image.size, size=n, replace=False)
        return np.column_stack([flat % image.shape[1], flat // image.shape[1]]), (0.0, 0.0)
    if method == "raster":
        return grid_points(image.shape, n), (0.0, 0.0)
    scalarize = get_scalarizer("band:20:30")
    agent = BanditAgent(image, n_arms=8, seed=seed)
    pts = []
    for _ in range(n):
        s = agent.suggest(1)[0]
        p = np.array([[s["x"], s["y"]]])
        acq = twin.acquire_spectra_at_points(p)
        agent.ingest(p, np.atleast_1d(scalarize(acq.spectra, acq.energy_axis)))
        pts.append(p[0])
    return np.array(pts), (0.0, 0.0)


def run(seed: int, n: int) -> Dict[str, Dict[str, float]]:
    out = {}
    for method in METHODS:
        twin = TwinBackend("nanoparticles", seed=seed)
        image = twin.acquire_image().images["HAADF"]
        truth = twin.get_truth()
        labels = truth["labels"]
        names = list(truth["label_names"])
        present = [k for k in range(len(names)) if (labels == k).any()]
        rare = min(present, key=lambda k: (labels == k).mean())
        pts, seconds = _picks(method, twin, image, n, seed)
        got = labels[np.rint(pts[:, 1]).astype(int), np.rint(pts[:, 0]).astype(int)]
        first_rare = np.flatnonzero(got == rare)
        out[method] = {
            "present": len(present),
            "by5": len(set(got[:5].tolist())),
            "all": len(set(got.tolist())),
            "first_rare": float(first_rare[0] + 1) if len(first_rare) else np.nan,
            "rare_name": names[rare],
            "seconds": seconds[0],
            "cpu": seconds[1],
        }
    return out


def figure(seed: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agents.dkl import DKLAgent

    twin = TwinBackend("nanoparticles", seed=seed)
    image = twin.acquire_image().images["HAADF"]
    scalarize = get_scalarizer("band:20:30")
    latent = LatentAgent(image, n_clusters=5, seed=seed)
    dkl = DKLAgent(image, window=16, n_seed=5, seed=seed)
    for _ in range(20):
        s = dkl.suggest(1)[0]
        p = np.array([[s["x"], s["y"]]])
        acq = twin.acquire_spectra_at_points(p)
        dkl.ingest(p, np.atleast_1d(scalarize(acq.spectra, acq.energy_axis)))
    traj = latent_trajectory(latent, dkl.positions)
    pixel = twin.get_truth().get("frame", {}).get("pixel_size", None)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), dpi=100)
    ax = axes[0]
    ax.imshow(image, cmap="gray")
    ax.plot(dkl.positions[:, 0], dkl.positions[:, 1], "-o", color="C1", ms=3, lw=0.8)
    ax.set_title("DKL trajectory in real space (20 spectra)", fontsize=9)
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    if pixel:
        bar = 20.0 / pixel  # 20 nm
        ax.plot([8, 8 + bar], [image.shape[0] - 8] * 2, color="w", lw=3)
        ax.text(8 + bar / 2, image.shape[0] - 12, "20 nm", color="w", ha="center", fontsize=8)
    ax = axes[1]
    sc = ax.scatter(latent.z[:, 0], latent.z[:, 1], c=latent.cluster, s=2, cmap="tab10",
                    alpha=0.4)  # fmt: skip
    ax.plot(traj["z"][:, 0], traj["z"][:, 1], "-o", color="k", ms=3, lw=0.8)
    ax.plot(*traj["z"][0], "s", color="C1", ms=7, label="first")
    ax.plot(*traj["z"][-1], "*", color="C3", ms=10, label="last")
    ax.set_xlabel("latent z1 (rVAE, no units)")
    ax.set_ylabel("latent z2")
    ax.set_title("the same trajectory in the rVAE latent space (Fig. 4d)", fontsize=9)
    cbar = fig.colorbar(sc, ax=ax)
    cbar.set_label("latent cluster (Gaussian mixture)")
    ax.legend(fontsize=8, loc="best")
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    fig.suptitle(f"twin Au/Ag particles, seed {seed}; load average {load}", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--spectra", type=int, default=10)
    parser.add_argument("--no-figure", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = [run(s, args.spectra) for s in range(args.seeds)]
    wall = time.perf_counter() - started
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nLatent-space discovery, twin Au/Ag particles, {args.seeds} seeds, "
          f"{args.spectra} spectra per method")  # fmt: skip
    print(f"load average (1, 5, 15 min): {load} on {os.cpu_count()} cores; wall {wall:.0f} s")
    header = (
        f"{'method':11s}{'phases by 5':>13s}{'phases by ' + str(args.spectra):>14s}"
        f"{'rare phase at':>15s}{'rare found':>12s}{'train (s)':>11s}{'CPU (s)':>9s}"
    )
    print(header)
    print("-" * len(header))
    present = np.mean([r["latent"]["present"] for r in results])
    for m in METHODS:
        rows = [r[m] for r in results]
        firsts = [r["first_rare"] for r in rows]
        found = sum(np.isfinite(f) for f in firsts)
        at = f"{np.nanmedian(firsts):.0f}" if found else "-"
        print(
            f"{m:11s}{np.mean([r['by5'] for r in rows]):13.2f}"
            f"{np.mean([r['all'] for r in rows]):14.2f}{at:>15s}"
            f"{f'{found}/{len(rows)}':>12s}{np.mean([r['seconds'] for r in rows]):11.1f}"
            f"{np.mean([r['cpu'] for r in rows]):9.1f}"
        )
    print(f"phases present: {present:.1f} on average; rare phase: "
          f"{results[0]['latent']['rare_name']} (median spectrum of its first hit)")  # fmt: skip
    if not args.no_figure:
        png = OUT / "latent_trajectory.png"
        figure(0, png)
        print(f"figure: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
