"""Figures of benchmarks/ensemble.py: F1 against noise, examples, calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_TITLES = {"graphene": "twin graphene", "srtio3": "twin SrTiO3"}


def figures(acc: dict[str, Any], real: dict[str, Any] | None, out: Path) -> list[Path]:
    """Write the accuracy, example and uncertainty figures to ``out``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ensemble_scoring import Tally, f1

    out.mkdir(parents=True, exist_ok=True)
    written = []
    labels = list(acc["tallies"])

    # 1. accuracy against noise
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    lowest = 1.0
    for ax, sample in zip(axes, SAMPLE_TITLES):
        rows = [r for r in acc["rows"] if r[0] == sample]
        levels = [r[1] for r in rows]
        for label, style in zip(labels, ("o:", "o-")):
            values = [f1(r[2][label]) for r in rows]
            ax.plot(levels, values, style, label=f"ensemble ({label})")
            lowest = min(lowest, *values)
        values = [f1(r[4]) for r in rows]
        lowest = min(lowest, *values)
        ax.plot(levels, values, "s--", label=rows[0][3])
        ax.set_title(SAMPLE_TITLES[sample])
        ax.set_xlabel("noise level")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(min(0.9, lowest - 0.02), 1.005)
    axes[0].set_ylabel("F1 (edge-excluded)")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out / "ensemble_accuracy.png"))

    # 2. examples (the default ensemble): atoms coloured by uncertainty, mean, variance
    cases = dict(acc["examples"])
    if real is not None:
        for label in ("default", "default + ELIT"):
            if label in real["results"]:
                pred, s = real["results"][label]
                cases[f"real G-Si-2nm, {label}"] = (real["image"], pred, real["truth"], s)
    fig, axes = plt.subplots(len(cases), 3, figsize=(8, 2.6 * len(cases)))
    crop = (slice(0, 128), slice(0, 128))  # a corner of each image: atoms big enough to see
    for row, (title, (image, pred, truth, s)) in zip(np.atleast_2d(axes), cases.items()):
        inside = np.all(pred.atoms < 127.5, axis=1)
        true_inside = np.all(truth < 127.5, axis=1)
        row[0].imshow(image[crop], cmap="gray")
        row[0].plot(*truth[true_inside][:, ::-1].T, "o", mfc="none", mec="lime", ms=6, mew=0.8)
        sc = row[0].scatter(
            pred.atoms[inside, 1],
            pred.atoms[inside, 0],
            c=pred.uncertainty[inside],
            s=10,
            cmap="autumn",
        )
        row[0].set_title(f"{title}: F1 {f1(s['strict']):.3f} strict", fontsize=8)
        fig.colorbar(sc, ax=row[0], fraction=0.046, label="P(false atom)")
        row[1].imshow(pred.mean[crop], vmin=0, vmax=1, cmap="viridis")
        row[1].set_title("mean probability", fontsize=8)
        im = row[2].imshow(pred.variance[crop], cmap="magma")
        row[2].set_title("variance across members", fontsize=8)
        fig.colorbar(im, ax=row[2], fraction=0.046)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    written.append(_save(fig, out / "ensemble_examples.png", dpi=60))

    # 3. false-atom rate by uncertainty quintile, baseline and default, twin and real
    sets = [("twin test + hard images", acc["tallies"])]
    if real is not None:
        tallies = {}
        for label in labels:
            pred, s = real["results"][label]
            tallies[label] = Tally()
            tallies[label].add(s, pred.uncertainty)
        sets.append(("real G-Si-2nm", tallies))
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 3.4))
    for ax, (title, tallies) in zip(np.atleast_1d(axes), sets):
        width = 0.8 / len(tallies)
        for i, (label, tally) in enumerate(tallies.items()):
            st = tally.stats()
            rates = [q[3] for q in st["quintiles"]]
            ax.bar(
                np.arange(len(rates)) + (i - 0.5) * width,
                rates,
                width,
                label=f"{label}: FP/TP median {st['ratio']:.1f}x",
            )
        ax.set_xticks(range(5), ["1 (most\ncertain)", "2", "3", "4", "5 (least\ncertain)"])
        ax.set_xlabel("quintile of the atom uncertainty")
        ax.set_ylabel("false-atom rate")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out / "ensemble_calibration.png"))
    return written


def _save(fig: Any, path: Path, dpi: int = 80) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
