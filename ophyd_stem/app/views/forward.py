"""Figures of the forward workflows: atoms first, then EELS at chosen atoms.

LoG* (``logstar``)
    the Pareto front with the chosen point; the atoms over the survey image, one colour per
    class (the legend counts them; the brightest class is the one EELS targets), the EELS
    positions numbered; the spectra measured there, in the colours of their numbers.
U-Net ensemble (``dcnn``)
    the atoms coloured by the ensemble's uncertainty, with the EELS positions; the mean
    probability map; the members' variance map; the spectra measured.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.runs import RunData

from .decor import add_colorbar, panel_grid, show_image
from .spectra import EXAMPLE_COLOURS, plot_examples

__all__ = ["draw_dcnn", "draw_logstar"]

#: colours of the atom classes, dimmest first (the last class, the brightest, in red)
_CLASS_COLOURS = ("tab:cyan", "gold", "tab:olive", "tab:pink", "tab:red")


def _legend(ax: Any, **kwargs: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _eels_positions(ax: Any, data: RunData, drawn: dict[str, int]) -> None:
    """The EELS positions as numbered crosses, in the colours of their spectra."""
    if not len(data.positions):
        return
    from matplotlib import patheffects

    colours = [EXAMPLE_COLOURS[i % len(EXAMPLE_COLOURS)] for i in range(len(data.positions))]
    crosses = ax.scatter(
        data.positions[:, 0],
        data.positions[:, 1],
        marker="x",
        c=colours,
        s=110,
        linewidths=2.5,
        zorder=4,
        gid="eels",
        label="EELS",
    )
    # a white rim: the crosses stay visible over atoms of any class colour
    crosses.set_path_effects([patheffects.withStroke(linewidth=4.5, foreground="white")])
    if len(data.positions) <= 12:
        for i, (x, y) in enumerate(data.positions):
            ax.annotate(
                str(i + 1),
                (x, y),
                xytext=(4, 4),
                textcoords="offset points",
                color=colours[i],
                fontsize=9,
                fontweight="bold",
                path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")],
            )
    drawn["eels"] = len(data.positions)


def _spectra_panel(ax: Any, data: RunData, drawn: dict[str, int]) -> None:
    n = len(data.spectra)
    shown = list(range(min(n, len(EXAMPLE_COLOURS))))
    labels = [f"#{i + 1}" for i in shown]  # the numbers beside the crosses on the image
    plot_examples(ax, data.energy_axis, data.spectra, shown, labels)
    more = f" (first {len(shown)} of {n})" if n > len(shown) else ""
    ax.set_title(f"EELS at the numbered positions{more}", fontsize=10)
    drawn["spectrum"] = len(shown)


#: the LoG* rewards in words on the front's axes (docs/logstar.md): both are fractions of
#: the atoms the lattice expects in the field
REWARD_LABELS = {
    "quality_count": "QC: |found - expected| / expected atoms",
    "error_rate": "ER: atoms too close to another / expected",
}


def draw_logstar(fig: Any, data: RunData) -> dict[str, int]:
    drawn: dict[str, int] = {}
    front = data.front
    image_index = int(front[-1].get("image", 0)) if front else 0
    front = [p for p in front if int(p.get("image", 0)) == image_index]
    rewards = [
        k
        for k in (front[0] if front else {})
        if k not in ("image", "point", "chosen", "parameters")
    ]
    image = data.survey_images[image_index] if len(data.survey_images) > image_index else None
    has_spectra = data.spectra is not None and len(data.spectra) > 0
    panels = (
        (["front"] if len(rewards) >= 2 else [])
        + (["image"] if image is not None else [])
        + (["spectra"] if has_spectra else [])
    )
    axes = dict(zip(panels, panel_grid(fig, len(panels))))
    if "front" in axes:
        ax = axes["front"]
        a = np.array([p[rewards[0]] for p in front], dtype=float)
        b = np.array([p[rewards[1]] for p in front], dtype=float)
        order = np.argsort(a)
        ax.plot(a[order], b[order], "-o", color="tab:blue", ms=4, gid="front")
        chosen = [i for i, p in enumerate(front) if p.get("chosen")]
        for i in chosen:
            ax.scatter(
                [a[i]],
                [b[i]],
                s=160,
                marker="*",
                c="tab:red",
                zorder=3,
                gid="chosen",
                label=f"chosen #{front[i]['point']}",
            )
        ax.set_xlabel(REWARD_LABELS.get(rewards[0], rewards[0]), fontsize=8)
        ax.set_ylabel(REWARD_LABELS.get(rewards[1], rewards[1]), fontsize=8)
        _legend(ax, fontsize=8)
        ax.set_title("LoG* Pareto front (both rewards: lower is better)", fontsize=10)
        drawn["front"] = len(front)
        drawn["chosen"] = len(chosen)
    if "image" in axes:
        ax = axes["image"]
        show_image(fig, ax, image, data.pixel_size)
        drawn["survey"] = 1
        atoms = data.atoms
        if atoms and len(atoms.get("x", [])):
            keep = np.asarray(atoms.get("image", np.zeros(len(atoms["x"])))) == image_index
            x, y = np.asarray(atoms["x"])[keep], np.asarray(atoms["y"])[keep]
            classes = np.asarray(atoms.get("cluster", np.full(len(keep), -1)))[keep]
            known = sorted(int(c) for c in set(classes.tolist()))
            for c in known:
                mine = classes == c
                if c < 0:
                    colour, label = "tab:cyan", f"atoms ({mine.sum()})"
                else:
                    colour = _CLASS_COLOURS[-1] if c == max(known) else _CLASS_COLOURS[c % 4]
                    brightest = ", brightest" if c == max(known) and len(known) > 1 else ""
                    label = f"class {c}{brightest} ({mine.sum()})"
                ax.scatter(x[mine], y[mine], c=colour, s=8, gid="atoms", label=label)
            drawn["atoms"] = int(keep.sum())
        _eels_positions(ax, data, drawn)
        _legend(ax, loc="upper right", fontsize=7, framealpha=0.7)
        ax.set_title(f"atoms by class, image {image_index}", fontsize=10)
    if "spectra" in axes:
        _spectra_panel(axes["spectra"], data, drawn)
    return drawn


def _uncertainty_label(data: RunData) -> str:
    """What the atoms' uncertainty is in this run: a calibrated ensemble records the
    probability that an atom is false, an uncalibrated one the members' variance."""
    methods = {(record.get("report") or {}).get("uncertainty_method") for record in data.dcnn}
    if methods == {"calibrated"}:
        return "atom's uncertainty (probability of being false)"
    return "atom's uncertainty (members' variance)"


def draw_dcnn(fig: Any, data: RunData) -> dict[str, int]:
    """The U-Net ensemble: atoms coloured by their uncertainty, the mean probability and the
    members' variance maps of the latest image, the spectra measured."""
    drawn: dict[str, int] = {}
    maps = data.streams.get("dcnn_maps")
    index = len(data.survey_images) - 1
    columns = {
        key: (maps.field(key) if maps is not None and len(maps) else None)
        for key in ("mean", "variance")
    }
    has_spectra = data.spectra is not None and len(data.spectra) > 0
    panels = (
        (["image"] if index >= 0 else [])
        + [key for key, column in columns.items() if column is not None]
        + (["spectra"] if has_spectra else [])
    )
    axes = dict(zip(panels, panel_grid(fig, len(panels))))
    width = float(data.survey_images[index].shape[1]) if index >= 0 else None
    if "image" in axes:
        ax = axes["image"]
        show_image(fig, ax, data.survey_images[index], data.pixel_size)
        drawn["survey"] = 1
        atoms = data.atoms
        if atoms and len(atoms.get("x", [])):
            keep = np.asarray(atoms.get("image", np.zeros(len(atoms["x"]))), dtype=int) == index
            colour = np.asarray(atoms.get("uncertainty", np.zeros(len(keep))), dtype=float)[keep]
            dots = ax.scatter(
                np.asarray(atoms["x"])[keep],
                np.asarray(atoms["y"])[keep],
                c=colour,
                cmap="plasma",
                s=10,
                gid="atoms",
            )
            add_colorbar(fig, dots, ax, _uncertainty_label(data))
            drawn["atoms"] = int(keep.sum())
        _eels_positions(ax, data, drawn)
        _legend(ax, loc="upper right", fontsize=7, framealpha=0.7)
        ax.set_title(f"atoms, image {max(index, 0)}", fontsize=10)
    for key, title, cmap, label in (
        ("mean", "mean probability", "viridis", "probability of an atom"),
        ("variance", "members' variance", "magma", "variance (probability²)"),
    ):
        if key in axes:
            show_image(
                fig,
                axes[key],
                np.asarray(columns[key][-1]),
                data.pixel_size,
                kind="map",
                cmap=cmap,
                label=label,
                width_px=width,
            )
            axes[key].set_title(title, fontsize=10)
            drawn[key] = 1
    if "spectra" in axes:
        _spectra_panel(axes["spectra"], data, drawn)
    return drawn
