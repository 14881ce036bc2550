"""The overview figure of any run (``ophyd-stem show``): where it measured, what it saw.

Panels, each only when the run has its data:

survey
    the survey image with its scale bar; the spectra's positions as small points (a grid as
    its outline: a thousand markers would hide the specimen), the example spectra's positions
    circled in their colours.
map
    a grid's spectra as a map of their contrast: the relative thickness t/λ (log-ratio),
    which shows vacuum, support, particles and caps as a microscopist expects (the total
    intensity would not: a thick gold cap scatters its electrons out of the aperture and
    looks dark); on the survey's scale, with a colour bar.
spectra
    example spectra at the extremes of that contrast (and evenly between), coloured as the
    circles that show where they were measured.
"""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np

from agents.runs import RunData

from .decor import panel_grid, show_image, survey_name
from .spectra import (
    EXAMPLE_COLOURS,
    example_indices,
    plot_examples,
)

__all__ = ["grid_map", "overview"]

#: more positions than this are drawn as their outline (a grid) or as tiny points
_MANY_POINTS = 100


def grid_map(positions: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, list[float]] | None:
    """Values measured on a regular grid of positions as an image, with its extent in the
    survey's pixels; None when the positions are not a full grid."""
    positions = np.asarray(positions, dtype=float)
    if positions.ndim != 2 or len(positions) < 4:
        return None
    xs = np.unique(np.round(positions[:, 0], 6))
    ys = np.unique(np.round(positions[:, 1], 6))
    if len(xs) * len(ys) != len(positions) or len(xs) < 2 or len(ys) < 2:
        return None
    image = np.full((len(ys), len(xs)), np.nan)
    cols = np.searchsorted(xs, np.round(positions[:, 0], 6))
    rows = np.searchsorted(ys, np.round(positions[:, 1], 6))
    image[rows, cols] = values
    dx, dy = np.diff(xs).mean(), np.diff(ys).mean()
    extent = [xs[0] - dx / 2, xs[-1] + dx / 2, ys[-1] + dy / 2, ys[0] - dy / 2]
    return image, extent


def _values(data: RunData) -> tuple[np.ndarray, str]:
    """One number per spectrum showing the contrast: the run's own scalarizer values when it
    recorded them, else t/λ, else the total counts."""
    from .figures import run_values

    values, label = run_values(data)
    if len(values) == len(data.spectra) and np.isfinite(values).any():
        return values, label
    return np.asarray(data.spectra, dtype=float).sum(axis=1), "total counts"


def overview(fig: Any, data: RunData, shape: Any = None) -> bool:
    """Draw the overview of a run on ``fig``; False when there was nothing to draw.

    Args:
        fig: an empty matplotlib figure (it is resized for its panels).
        data: the unpacked run.
        shape: the plan's grid shape, when it recorded one (only a hint: the map is made
            whenever the positions form a full grid).
    """
    image = data.survey_image
    has_spectra = data.spectra is not None and len(data.spectra) > 0
    values, label = _values(data) if has_spectra else (np.empty(0), "")
    gridded = (
        grid_map(data.positions, values)
        if has_spectra and len(data.positions) == len(values)
        else None
    )
    panels = (
        (["survey"] if image is not None else [])
        + (["map"] if gridded is not None else [])
        + (["spectra"] if has_spectra else [])
    )
    if not panels:
        return False
    axes = dict(zip(panels, panel_grid(fig, len(panels))))
    fig.set_size_inches(5.2 * len(panels), 4.6)
    examples = example_indices(values, k=3) if has_spectra else []
    width = None if image is None else float(image.shape[1])

    if "survey" in axes:
        ax = axes["survey"]
        show_image(fig, ax, image, data.pixel_size)
        ax.set_title(survey_name(data.survey_signal), fontsize=10)
        _positions(ax, data, gridded)
        ax.set_xlim(-0.5, image.shape[1] - 0.5)
        ax.set_ylim(image.shape[0] - 0.5, -0.5)
    if "map" in axes:
        ax = axes["map"]
        picture, extent = gridded
        rows, cols = picture.shape
        show_image(
            fig,
            ax,
            picture,
            data.pixel_size,
            kind="map",
            cmap="viridis",
            label=label,
            extent=extent,
            width_px=width or abs(extent[1] - extent[0]),
        )
        short = "relative thickness t/λ" if "t/λ" in label else label.split(" (")[0]
        ax.set_title(f"{short}, {rows} x {cols} spectra", fontsize=10)
    if "spectra" in axes:
        ax = axes["spectra"]
        short = "t/λ" if "t/λ" in label else label.split(" (")[0]
        # each example's value with its unit (the title names the quantity)
        unit = label[label.rfind("(") + 1 : -1] if label.endswith(")") else ""
        labels = [
            f"{short} {values[i]:.2f}" if "t/λ" in label else f"{values[i]:.3g} {unit}".strip()
            for i in examples
        ]
        plot_examples(ax, data.energy_axis, data.spectra, examples, labels)
        circled = " (circled where measured)" if len(data.positions) else ""
        span = f": lowest to highest {short}" if len(examples) > 1 else ""
        # (wrapped: a long quantity, "despiked edge signal 455-485 eV above background",
        # ran past the figure's edge)
        ax.set_title(textwrap.fill(f"EELS{span}{circled}", 55), fontsize=10)
        for name in ("survey", "map"):
            if name in axes:
                _circle(axes[name], data, examples)
    return True


#: where spectra were measured: a colour no example spectrum has, so the circle of the
#: example drawn in orange did not vanish among orange dots (a DKL run's best spectrum)
POSITIONS_COLOUR = "tab:cyan"


def _positions(ax: Any, data: RunData, gridded: Any) -> None:
    """Where the spectra were measured, without hiding the specimen."""
    xy = data.positions
    if not len(xy):
        return
    if gridded is not None and len(xy) > _MANY_POINTS:
        from matplotlib.patches import Rectangle

        x0, x1, y1, y0 = gridded[1]
        rows, cols = gridded[0].shape
        ax.add_patch(
            Rectangle(
                (x0, y0),
                x1 - x0,
                y1 - y0,
                fill=False,
                ls="--",
                lw=1.0,
                ec=POSITIONS_COLOUR,
                gid="grid",
                label=f"{rows} x {cols} grid",
            )
        )
    else:
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=10 if len(xy) <= _MANY_POINTS else 2,
            c=POSITIONS_COLOUR,
            gid="measured",
            label=f"{len(xy)} spectr{'um' if len(xy) == 1 else 'a'}",
        )
    ax.legend(loc="upper right", fontsize=7, framealpha=0.7)


def _circle(ax: Any, data: RunData, indices: list[int]) -> None:
    for n, i in enumerate(indices):
        if len(data.positions) > i:
            x, y = data.positions[i]
            ax.scatter(
                [x],
                [y],
                s=110,
                facecolors="none",
                edgecolors=EXAMPLE_COLOURS[n % len(EXAMPLE_COLOURS)],
                linewidths=2.0,
                gid="example",
                zorder=3,  # above the measured positions, which may crowd around it
            )
