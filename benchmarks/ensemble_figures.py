"""Figures of benchmarks/ensemble.py: F1 against noise, examples, calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_TITLES = {"graphene": "twin graphene", "srtio3": "twin SrTiO3"}


def _f1(s: dict[str, int]) -> float:
    d = 2 * s["tp"] + s["fp"] + s["fn"]
    return 2 * s["tp"] / d if d else 1.0


def figures(
    acc: dict[str, Any], real: dict[str, Any] | None, cal: dict[str, Any], out: Path
) -> list[Path]:
    """Write the accuracy, example and calibration figures to ``out``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []

    # 1. accuracy against noise
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, sample in zip(axes, SAMPLE_TITLES):
        rows = [r for r in acc["rows"] if r[0] == sample]
        levels = [r[1] for r in rows]
        ax.plot(levels, [_f1(r[2]) for r in rows], "o-", label="U-Net ensemble")
        ax.plot(levels, [_f1(r[4]) for r in rows], "s--", label=rows[0][3])
        ax.set_title(SAMPLE_TITLES[sample])
        ax.set_xlabel("noise level")
        ax.grid(alpha=0.3)
    lowest = min(min(_f1(r[2]), _f1(r[4])) for r in acc["rows"])
    axes[0].set_ylim(min(0.9, lowest - 0.02), 1.005)
    axes[0].set_ylabel("F1")
    axes[0].legend(loc="lower left")
    fig.tight_layout()
    written.append(_save(fig, out / "ensemble_accuracy.png"))

    # 2. examples: image with atoms coloured by uncertainty, mean map, variance map
    cases = dict(acc["examples"])
    if real is not None:
        pred, s = real["twin-trained ensemble"]
        cases["real G-Si-2nm"] = (real["image"], pred, real["truth"], s)
        pred2, s2 = real["after one ELIT round"]
        cases["real, after ELIT"] = (real["image"], pred2, real["truth"], s2)
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
        row[0].set_title(f"{title}: F1 {s['f1']:.3f}", fontsize=8)
        fig.colorbar(sc, ax=row[0], fraction=0.046, label="atom uncertainty")
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

    # 3. calibration
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    table = cal["table"]
    axes[0].bar(range(len(table)), [t[3] for t in table], color="tab:red")
    axes[0].set_xticks(range(len(table)), [f"{t[0]:.0e}\n–{t[1]:.0e}" for t in table], fontsize=7)
    axes[0].set_xlabel("atom uncertainty bin (mean variance)")
    axes[0].set_ylabel("error rate (false positives)")
    axes[1].scatter(cal["img_unc"], cal["img_err"], s=12)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("image uncertainty (mean variance)")
    axes[1].set_ylabel("error (1 - F1)")
    axes[1].set_title(f"Spearman ρ = {cal['spearman']:.2f}", fontsize=9)
    fig.tight_layout()
    written.append(_save(fig, out / "ensemble_calibration.png"))
    return written


def _save(fig: Any, path: Path, dpi: int = 80) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
