"""Zero-loss alignment: how much does the energy-scale jitter smear a peak-position map?

Run from the repository root (about half a minute on two cores)::

    python benchmarks/zlp_alignment.py              # 3 seeds, 32 x 32 spectrum images

For each seed and sample, the twin's spectrometer jitters (``energy_jitter`` eV rms from
spectrum to spectrum) and walks (``energy_drift`` eV/s of instrument time, the high tension
warming up); a 32 x 32 spectrum image is taken over the field, and a peak-position scalar
(the parabolic peak of ``agents.scalarizers.peak_position``) is read in each spectrum of one
material, as raw spectra and after :class:`agents.zlp.ZeroLossAligner` (each spectrum's
zero-loss peak located to a fraction of a channel and moved to 0 eV):

- **Ag bulk plasmon** (3.8 eV, sharp), nanoparticles sample, pixels labelled Ag;
- **GaAs bulk plasmon** (16.3 eV, broad), nanowire sample, pixels labelled GaAs.

Scatter = standard deviation of the peak position over those pixels; error = RMS distance
from the noise-free, jitter-free peak position at the same pixel (the twin's truth). The
row "no jitter" is the floor: the same spectrum image from a steady spectrometer.
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

from agents.patches import grid_points  # noqa: E402
from agents.scalarizers import peak_position  # noqa: E402
from agents.zlp import ZeroLossAligner, locate_zero_loss  # noqa: E402
from dm_bridge.backends.twin import TwinBackend  # noqa: E402

CASES = {
    "Ag plasmon 3.8 eV": ("nanoparticles", "Ag", (3.2, 4.4)),
    "GaAs plasmon 16.3 eV": ("nanowire", "GaAs", (13.0, 20.0)),
}


def run_case(
    sample: str, material: str, band, seed: int, jitter: float, drift: float, n: int
) -> Dict[str, np.ndarray]:
    twin = TwinBackend(sample, seed=seed, energy_jitter=jitter, energy_drift=drift)
    twin.acquire_image()
    labels = twin.get_truth()
    label = list(labels["label_names"]).index(material)
    pts = grid_points(labels["labels"].shape, n * n).astype(np.float64)
    keep = labels["labels"][pts[:, 1].astype(int), pts[:, 0].astype(int)] == label
    pts = pts[keep]
    acq = twin.acquire_spectra_at_points(pts)
    axis, truth = twin.truth_spectra(pts)
    aligned, zlp = ZeroLossAligner().align(acq.spectra, axis)
    return {
        "raw": np.asarray(peak_position(acq.spectra, axis, *band)),
        "aligned": np.asarray(peak_position(aligned, axis, *band)),
        "truth": np.asarray(peak_position(truth, axis, *band)),
        "zlp": np.asarray(zlp),
        "zlp_after": np.asarray(locate_zero_loss(aligned, axis)),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--grid", type=int, default=32, help="spectrum image side")
    parser.add_argument("--jitter", type=float, default=0.15, help="energy jitter, eV rms")
    parser.add_argument("--drift", type=float, default=2e-4, help="energy drift, eV/s")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = []
    for name, (sample, material, band) in CASES.items():
        runs = [run_case(sample, material, band, s, args.jitter, args.drift, args.grid)
                for s in range(args.seeds)]  # fmt: skip
        steady = [run_case(sample, material, band, s, 0.0, 0.0, args.grid)
                  for s in range(args.seeds)]  # fmt: skip

        def stats(rs, key):
            scatter = np.mean([np.nanstd(r[key]) for r in rs])
            error = np.mean([np.sqrt(np.nanmean((r[key] - r["truth"]) ** 2)) for r in rs])
            return scatter, error

        zlp = np.concatenate([r["zlp"] for r in runs])
        after = np.concatenate([r["zlp_after"] for r in runs])
        n = len(runs[0]["raw"])
        rows.append((name, "no jitter", *stats(steady, "raw"), np.nan, n))
        rows.append((name, "raw", *stats(runs, "raw"), np.std(zlp), n))
        rows.append((name, "ZLP-aligned", *stats(runs, "aligned"), np.std(after), n))
    wall = time.perf_counter() - started
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(
        f"\nZero-loss alignment, twin spectrometer jitter {args.jitter} eV rms + drift "
        f"{args.drift} eV/s, {args.grid}x{args.grid} spectrum images, {args.seeds} seeds"
    )
    print(f"load average (1, 5, 15 min): {load} on {os.cpu_count()} cores; wall {wall:.0f} s")
    header = (
        f"{'peak':22s}{'spectra':14s}{'scatter (eV)':>14s}{'error (eV)':>12s}"
        f"{'ZLP scatter':>13s}{'pixels':>8s}"
    )
    print(header)
    print("-" * len(header))
    for name, way, scatter, error, zs, n in rows:
        z = "-" if not np.isfinite(zs) else f"{zs:.4f}"
        print(f"{name:22s}{way:14s}{scatter:14.3f}{error:12.3f}{z:>13s}{n:8d}")
    print(
        "scatter: std of the peak position over the material's pixels; error: RMS from the "
        "noise-free, jitter-free peak at the same pixel; ZLP scatter: std of the zero-loss "
        "peak position (eV)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
