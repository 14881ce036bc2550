"""Figures for the operator: the front with the choice, atoms over the image, classes, maps.

Plain ``matplotlib.figure.Figure`` objects rendered with the Agg canvas: no pyplot, no global
state, no display needed, safe from threads and servers. Save with ``fig.savefig(path)`` or
show one in a notebook by leaving it as the last expression.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .pareto import ParetoPoint

__all__ = [
    "plot_atoms",
    "plot_clusters",
    "plot_front",
    "plot_parameter_maps",
    "plot_selection",
]

_CLASS_COLOURS = ("tab:cyan", "tab:red", "tab:orange", "tab:green", "tab:purple", "tab:pink")


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_front(
    front: Sequence[ParetoPoint],
    chosen: Optional[int] = None,
    all_values: Optional[np.ndarray] = None,
    ax: Any = None,
) -> Any:
    """The Pareto front (first two rewards), every point numbered, the chosen one highlighted.

    Args:
        front: Pareto points.
        chosen: index of the chosen point.
        all_values: ``(n_trials, n_rewards)`` of every trial, drawn faintly behind.
        ax: draw into this axes (else a new figure).

    Returns:
        The figure.
    """
    if ax is None:
        ax = _figure(4.5, 4.0).add_subplot()
    names = list(front[0].rewards) if front else ["reward 1", "reward 2"]
    if len(names) < 2:
        names = [*names, "(none)"]
    if all_values is not None and len(all_values):
        vals = np.asarray(all_values, dtype=float)
        ax.scatter(
            vals[:, 0],
            vals[:, 1] if vals.shape[1] > 1 else 0 * vals[:, 0],
            s=10,
            c="0.75",
            label="trials",
        )
    if front:
        y = np.array([[p.rewards[names[0]], p.rewards.get(names[1], 0.0)] for p in front])
        order = np.argsort(y[:, 0], kind="stable")
        ax.plot(y[order, 0], y[order, 1], "-o", c="tab:blue", ms=5, label="Pareto front")
        for p, (a, b) in zip(front, y):
            ax.annotate(str(p.index), (a, b), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if chosen is not None:
            ax.scatter(
                [y[chosen, 0]],
                [y[chosen, 1]],
                s=160,
                facecolors="none",
                edgecolors="tab:red",
                linewidths=2,
                label=f"chosen #{chosen}",
                zorder=5,
            )
    if front:
        # zoom on the front: trials with thousands of noise blobs would squash it to a dot
        hi = np.array([[p.rewards[names[0]], p.rewards.get(names[1], 0.0)] for p in front])
        x_max, y_max = (max(0.5, 1.5 * float(v)) for v in hi.max(axis=0))
        ax.set_xlim(-0.03 * x_max, x_max)
        ax.set_ylim(-0.03 * y_max, y_max)
        if all_values is not None and len(all_values):
            vals = np.asarray(all_values, dtype=float)
            beyond = int(np.count_nonzero((vals[:, 0] > x_max) | (vals[:, -1] > y_max)))
            if beyond:
                ax.text(
                    0.98,
                    0.02,
                    f"{beyond} trials beyond the axes",
                    ha="right",
                    transform=ax.transAxes,
                    fontsize=7,
                    color="0.4",
                )
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title("LoG* Pareto front")
    ax.legend(fontsize=7, loc="upper right")
    return ax.figure


def plot_atoms(
    image: np.ndarray,
    atoms: np.ndarray,
    labels: Optional[np.ndarray] = None,
    truth: Optional[np.ndarray] = None,
    title: str = "",
    ax: Any = None,
) -> Any:
    """Atoms (``(row, col, ...)``) as circles over the image, coloured by class if given;
    reference atoms (``truth``) as small crosses."""
    if ax is None:
        ax = _figure(4.5, 4.5).add_subplot()
    ax.imshow(np.asarray(image), cmap="gray", interpolation="nearest")
    pts = np.asarray(atoms, dtype=float)
    if pts.size == 0:
        pts = np.empty((0, 2))
    if truth is not None and len(truth):
        t = np.asarray(truth, dtype=float)
        ax.scatter(
            t[:, 1], t[:, 0], marker="x", s=12, c="yellow", linewidths=0.8, label="reference"
        )
    if len(pts):
        if labels is None:
            ax.scatter(
                pts[:, 1],
                pts[:, 0],
                s=22,
                facecolors="none",
                edgecolors="tab:red",
                linewidths=0.9,
                label=f"{len(pts)} atoms",
            )
        else:
            labels = np.asarray(labels)
            for j in np.unique(labels):
                sel = labels == j
                ax.scatter(
                    pts[sel, 1],
                    pts[sel, 0],
                    s=22,
                    facecolors="none",
                    edgecolors=_CLASS_COLOURS[int(j) % len(_CLASS_COLOURS)],
                    linewidths=0.9,
                    label=f"class {int(j)} ({int(sel.sum())})",
                )
    ax.set_axis_off()
    ax.set_title(title or "atoms")
    ax.legend(fontsize=6, loc="lower right")
    return ax.figure


def plot_selection(
    image: np.ndarray,
    front: Sequence[ParetoPoint],
    chosen: Optional[int],
    atoms: Optional[np.ndarray] = None,
    all_values: Optional[np.ndarray] = None,
    image_index: int = 0,
    params: Any = None,
) -> Any:
    """Front (choice highlighted) beside the chosen point's atoms over the image.

    Args:
        image: the survey image shown.
        front: Pareto points.
        chosen: index of the chosen point (``None``: parameters from elsewhere, e.g. the
            sliding windows; then give ``atoms`` and ``params``).
        atoms: atoms to draw (default: the chosen point's atoms on image ``image_index``).
        all_values: every trial's rewards, drawn faintly.
        image_index: which optimised image ``image`` is.
        params: the parameters named in the title (default: the chosen point's).
    """
    fig = _figure(9.0, 4.3)
    ax_front, ax_img = fig.subplots(1, 2)
    plot_front(front, chosen, all_values, ax=ax_front)
    point = front[chosen] if chosen is not None else None
    shown = atoms if atoms is not None else point.atoms[image_index]  # type: ignore[union-attr]
    p = params if params is not None else point.params  # type: ignore[union-attr]
    label = f"point #{chosen}" if chosen is not None else "chosen parameters"
    title = (
        f"{label}: {len(shown)} atoms\n"
        f"sigma {p.min_sigma:g}-{p.max_sigma:g} px, threshold {p.threshold:.3g}, "
        f"overlap {p.overlap:.2f}"
    )
    plot_atoms(image, shown, title=title, ax=ax_img)
    return fig


def plot_clusters(image: np.ndarray, atoms: np.ndarray, clusters: Any) -> Any:
    """Classes over the image, PCA scatter, and per class its centroid and dispersion image."""
    k = clusters.n_clusters
    fig = _figure(3.0 * (2 + k), 5.6)
    grid = fig.add_gridspec(2, 2 + k)
    ax_img = fig.add_subplot(grid[:, 0])
    plot_atoms(image, atoms, labels=clusters.labels, title="GMM classes", ax=ax_img)
    ax_pca = fig.add_subplot(grid[:, 1])
    for j in range(k):
        sel = clusters.labels == j
        ax_pca.scatter(
            clusters.pca_scores[sel, 0],
            clusters.pca_scores[sel, 1],
            s=8,
            c=_CLASS_COLOURS[j % len(_CLASS_COLOURS)],
            label=f"class {j}",
        )
    ax_pca.set_xlabel("PC 1")
    ax_pca.set_ylabel("PC 2")
    ax_pca.legend(fontsize=7)
    ax_pca.set_title("PCA of atom patches")
    for j in range(k):
        a = fig.add_subplot(grid[0, 2 + j])
        a.imshow(clusters.centroids[j], cmap="viridis")
        a.set_title(f"class {j} centroid", fontsize=8)
        a.set_axis_off()
        b = fig.add_subplot(grid[1, 2 + j])
        b.imshow(clusters.dispersions[j], cmap="magma")
        b.set_title(f"class {j} dispersion", fontsize=8)
        b.set_axis_off()
    return fig


def plot_parameter_maps(
    window_map: Any, names: Sequence[str] = ("min_sigma", "max_sigma", "threshold", "overlap")
) -> Any:
    """How the optimum varies across the image: one panel per parameter over the window grid."""
    fig = _figure(3.0 * len(names), 3.0)
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, name in zip(axes, names):
        m = window_map.parameter_map(name)
        im = ax.imshow(m, cmap="viridis")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("window column")
        ax.set_ylabel("window row")
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig
