"""Figures of docs/twin.md: one image and one set of spectra per twin sample.

Run from the repository root::

    python docs/scripts/twin_figures.py        # writes docs/images/twin_*.png (~20 s)

Each image figure shows the HAADF survey image as the bridge returns it beside its truth
(label map, atoms); each spectra figure shows spectra at marked positions, taken through the
same commands a plan would use. Everything is seeded, so the figures are reproducible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from dm_bridge.backends.twin import TwinBackend

OUT = Path(__file__).resolve().parents[1] / "images"
DPI = 80


def _save(fig: plt.Figure, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    size = path.stat().st_size
    assert size < 300_000, f"{path} is {size} bytes; keep figures under 300 kB"
    print(f"wrote {path} ({size // 1024} kB)")


def image_figure(twin: TwinBackend, name: str, title: str) -> None:
    image = twin.acquire_image()
    truth = twin.get_truth()
    img = image.images["HAADF"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4.3))
    fov = twin.scan.field_of_view
    extent = (0, fov, fov * img.shape[0] / img.shape[1], 0)
    a.imshow(img, cmap="gray", extent=extent)
    a.set_title(
        f"{title}: HAADF as acquired\n{img.shape[1]}×{img.shape[0]} px, "
        f"{twin.scan.dwell_time * 1e6:g} µs dwell"
    )
    a.set_xlabel("nm")
    labels = truth["labels"]
    names = truth["label_names"]
    cmap = plt.get_cmap("tab10", len(names))
    b.imshow(labels, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, extent=extent, alpha=0.85)
    atoms = truth["atoms"]
    if atoms is not None:
        p = image.pixel_size
        xy = atoms["xy_px"] * p
        for code, species in enumerate(atoms["species_names"]):
            sel = atoms["species"] == code
            b.scatter(xy[sel, 0], xy[sel, 1], s=6 if code == 0 else 14, label=species)
        b.legend(loc="lower right", fontsize=8, markerscale=1.5)
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(len(names))]
    b.legend(handles, names, loc="upper right", fontsize=7) if atoms is None else None
    b.set_title("truth: label map" + (" and atoms" if atoms is not None else ""))
    b.set_xlabel("nm")
    fig.tight_layout()
    _save(fig, f"twin_{name}_image.png")


def spectra_figure(
    twin: TwinBackend,
    name: str,
    title: str,
    points: Sequence[Tuple[float, float]],
    labels: Sequence[str],
    windows: Sequence[Tuple[float, float, float, dict]],
) -> None:
    """Spectra at ``points`` in each EELS window ``(offset, dispersion, exposure, kwargs)``."""
    img = twin.acquire_image().images["HAADF"]
    fig, axes = plt.subplots(1, 1 + len(windows), figsize=(4.2 + 4.6 * len(windows), 4.0))
    axes[0].imshow(img, cmap="gray")
    for (x, y), label in zip(points, labels):
        axes[0].plot(x, y, "o", mfc="none", ms=9, mew=2, label=label)
    axes[0].legend(fontsize=8, loc="lower right")
    axes[0].set_title(f"{title}: where")
    axes[0].set_axis_off()
    for ax, (offset, dispersion, exposure, style) in zip(axes[1:], windows):
        twin.set_eels_parameters(energy_offset=offset, dispersion=dispersion, exposure=exposure)
        acq = twin.acquire_spectra_at_points(points)
        for spectrum, label in zip(acq.spectra, labels):
            ax.plot(acq.energy_axis, spectrum, lw=0.8, label=label)
        if style.get("log"):
            ax.set_yscale("log")
        if "xlim" in style:
            ax.set_xlim(*style["xlim"])
            sel = (acq.energy_axis >= style["xlim"][0]) & (acq.energy_axis <= style["xlim"][1])
            top = acq.spectra[:, sel].max()
            low = max(acq.spectra[:, sel].min(), 0.5)
            ax.set_ylim(low * (0.8 if style.get("log") else 0), top * 1.1)
        for band in style.get("bands", []):
            ax.axvspan(*band, color="gold", alpha=0.25)
        for e, text in style.get("marks", []):
            ax.axvline(e, color="gray", lw=0.6, ls=":")
            ax.text(
                e,
                ax.get_ylim()[1],
                " " + text,
                fontsize=7,
                ha="right",
                va="top",
                rotation=90,
                color="dimgray",
            )
        ax.set_xlabel("energy loss (eV)")
        ax.set_ylabel(f"counts ({exposure:g} s)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, f"twin_{name}_spectra.png")


def nearest(truth: dict, species: int) -> Tuple[float, float]:
    xy = truth["atoms"]["xy_px"][truth["atoms"]["species"] == species]
    h, w = truth["labels"].shape
    d = np.hypot(xy[:, 0] - w / 2, xy[:, 1] - h / 2)
    return tuple(xy[np.argmin(d)])


def main() -> None:
    # graphene: the default 2 nm field, physical dose (as noisy as the real G-Si image)
    g = TwinBackend("graphene", seed=1)
    image_figure(g, "graphene", "graphene + Si")
    truth = g.get_truth()
    si = nearest(truth, 1)
    c = nearest(truth, 0)
    g2 = TwinBackend("graphene", seed=1, beam_current=200.0)
    spectra_figure(
        g2,
        "graphene",
        "graphene",
        [si, c],
        ["on Si", "on C"],
        [
            (-5.0, 0.02, 0.05, {"log": True, "marks": [(4.8, "π"), (14.6, "π+σ")]}),
            (80.0, 0.25, 2.0, {"log": True, "marks": [(99, "Si L2,3"), (284, "C K")]}),
        ],
    )

    s = TwinBackend("srtio3", seed=1)
    image_figure(s, "srtio3", "SrTiO3 [001]")
    truth = s.get_truth()
    s2 = TwinBackend("srtio3", seed=1, beam_current=500.0)
    spectra_figure(
        s2,
        "srtio3",
        "SrTiO3",
        [nearest(truth, 0), nearest(truth, 1)],
        ["Sr column", "Ti-O column"],
        [
            (-10.0, 0.1, 0.1, {"log": True, "marks": [(29.5, "plasmon")]}),
            (
                420.0,
                0.1,
                2.0,
                {"log": False, "xlim": (440, 570), "marks": [(456, "Ti L2,3"), (532, "O K")]},
            ),
        ],
    )

    w = TwinBackend("nanowire", seed=1)
    image_figure(w, "nanowire", "GaAs nanowire + Au cap")
    ends = w.get_truth()["interface_ends_px"]
    centre = ends.mean(axis=0)
    along = ends[1] - ends[0]
    normal = np.array([-along[1], along[0]]) / np.hypot(*along)
    normal = normal if normal[1] > 0 else -normal
    pts = [tuple(centre - 15 * normal), tuple(centre + 15 * normal), tuple(centre)]
    spectra_figure(
        w,
        "nanowire",
        "nanowire",
        pts,
        ["Au bulk", "GaAs bulk", "interface"],
        [
            (
                -5.0,
                0.05,
                0.05,
                {"log": True, "marks": [(10.5, "interface"), (16.3, "GaAs"), (25.5, "Au")]},
            )
        ],
    )

    n = TwinBackend("nanoparticles", seed=1)
    image_figure(n, "nanoparticles", "Au + Ag on lacey carbon")
    truth = n.get_truth()
    h, w_ = truth["labels"].shape

    def in_view(xy: np.ndarray) -> np.ndarray:
        return (xy[:, 0] > 2) & (xy[:, 0] < w_ - 3) & (xy[:, 1] > 2) & (xy[:, 1] < h - 3)

    gold = truth["gold_px"][in_view(truth["gold_px"])]
    big = gold[np.argmax(gold[:, 2])]
    plate = truth["silver_px"][in_view(truth["silver_px"])][0]
    labels = truth["labels"]
    rows, cols = np.nonzero(labels == truth["label_names"].index("carbon"))
    k = len(rows) // 2
    pts = [(big[0], big[1]), (plate[0], plate[1]), (cols[k], rows[k])]
    spectra_figure(
        n,
        "nanoparticles",
        "particles",
        pts,
        ["Au particle", "Ag plate", "carbon"],
        [
            (
                -2.0,
                0.05,
                0.05,
                {
                    "log": True,
                    "bands": [tuple(truth["target_band"])],
                    "marks": [(2.4, "Au LSP"), (3.8, "Ag"), (25.5, "Au")],
                },
            )
        ],
    )


if __name__ == "__main__":
    main()
