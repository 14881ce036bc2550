"""Figures of feature-space discovery: the survey's latent map and trajectories in it.

latent-space EELS (``latent_eels``, drawn live and by ``ophyd-stem show``)
    the survey with the EELS positions coloured by their latent cluster and numbered; the
    cluster map over the field; the novelty map (how unlikely each patch is under the
    clusters); the latent space, every patch coloured by cluster, the EELS positions on it.
a run's trajectory in latent space (the seed paper's Figure 4d; ``replay --latent``)
    the survey with the run's positions coloured by measurement, and the latent space with
    the same positions joined in order.

Every image has a scale bar in nm and every colour scale a labelled colour bar.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.runs import RunData

from .corrections import _survey
from .decor import add_colorbar, add_scale_bar, survey_name

__all__ = ["draw_latent", "draw_trajectory"]


def _cluster_colours(n: int) -> tuple[Any, dict[str, float]]:
    import matplotlib

    return matplotlib.colormaps["tab10"].resampled(max(n, 1)), {"vmin": -0.5, "vmax": n - 0.5}


def _grid_extent(x: np.ndarray, y: np.ndarray) -> list[float]:
    dx = x[0, 1] - x[0, 0] if x.shape[1] > 1 else 1.0
    dy = y[1, 0] - y[0, 0] if y.shape[0] > 1 else 1.0
    return [x.min() - dx / 2, x.max() + dx / 2, y.max() + dy / 2, y.min() - dy / 2]


def _cluster_bar(fig: Any, mappable: Any, ax: Any, n: int) -> None:
    bar = add_colorbar(fig, mappable, ax, "latent cluster (#)")
    bar.set_ticks(range(n))


def draw_latent(fig: Any, data: RunData) -> dict[str, int]:
    """The ``latent_eels`` figure on ``fig``; returns what was drawn."""
    from ..analysis.latent import recorded_latent_map

    drawn: dict[str, int] = {}
    latent = recorded_latent_map(data)
    dec = data.decisions
    measured = np.column_stack([dec.get("x", []), dec.get("y", [])]).astype(float)
    clusters = np.asarray(dec.get("cluster", []), dtype=int)
    panels = (1 if data.survey_image is not None else 0) + (3 if latent is not None else 0)
    axes = list(np.atleast_1d(fig.subplots(1, max(panels, 1))))
    n = int(np.max(latent["cluster"])) + 1 if latent is not None else max(clusters, default=0) + 1
    cmap, limits = _cluster_colours(n)
    width = None if data.survey_image is None else float(data.survey_image.shape[1])
    if data.survey_image is not None:
        ax = axes.pop(0)
        _survey(fig, ax, data)
        drawn["survey"] = 1
        if len(measured):
            dots = ax.scatter(*measured.T, c=clusters, cmap=cmap, **limits, s=60,
                              marker="*", edgecolors="k", linewidths=0.5, gid="eels")  # fmt: skip
            _cluster_bar(fig, dots, ax, n)
            for i, (x, y) in enumerate(measured):
                ax.annotate(str(i + 1), (x, y), fontsize=7, color="w",
                            xytext=(3, 3), textcoords="offset points")  # fmt: skip
            drawn["eels"] = len(measured)
        ax.set_title(f"{survey_name(data.survey_signal)}, EELS by latent cluster")
    if latent is None:
        return drawn
    x, y = np.asarray(latent["x"], float), np.asarray(latent["y"], float)
    extent = _grid_extent(x, y)
    ax = axes.pop(0)
    im = ax.imshow(latent["cluster"], cmap=cmap, **limits, extent=extent, interpolation="nearest")
    im.set_gid("map:cluster")
    _cluster_bar(fig, im, ax, n)
    add_scale_bar(ax, data.pixel_size, width or abs(extent[1] - extent[0]))
    if len(measured):
        ax.scatter(*measured.T, marker="*", s=50, c="w", edgecolors="k", linewidths=0.5)
    ax.set_title(f"latent clusters ({n})")
    drawn["clusters"] = n
    ax = axes.pop(0)
    novelty = -np.asarray(latent["log_density"], float)
    im = ax.imshow(novelty, cmap="magma", extent=extent, interpolation="nearest")
    im.set_gid("map:novelty")
    add_colorbar(fig, im, ax, "novelty (-log density)")
    add_scale_bar(ax, data.pixel_size, width or abs(extent[1] - extent[0]))
    ax.set_title("novelty: patches unlike the rest")
    drawn["novelty"] = 1
    ax = axes.pop(0)
    z = np.asarray(latent["z"], float).reshape(-1, np.shape(latent["z"])[-1])
    flat_x, flat_y = x.ravel(), y.ravel()
    _latent_scatter(fig, ax, z, np.asarray(latent["cluster"]).ravel(), n)
    if len(measured):
        index = [int(np.argmin((flat_x - px) ** 2 + (flat_y - py) ** 2)) for px, py in measured]
        path = z[index]
        ax.plot(path[:, 0], path[:, 1] if z.shape[1] > 1 else np.zeros(len(path)), "-",
                color="k", lw=0.6)  # fmt: skip
        ax.scatter(path[:, 0], path[:, 1] if z.shape[1] > 1 else np.zeros(len(path)),
                   marker="*", s=90, c="w", edgecolors="k", gid="eels_latent")  # fmt: skip
        for i, p in enumerate(path):
            ax.annotate(str(i + 1), (p[0], p[1] if len(p) > 1 else 0.0), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.set_title("latent space, EELS positions")
    drawn["latent_space"] = len(z)
    return drawn


def _latent_scatter(fig: Any, ax: Any, z: np.ndarray, cluster: np.ndarray, n: int) -> None:
    cmap, limits = _cluster_colours(n)
    second = z[:, 1] if z.shape[1] > 1 else np.zeros(len(z))
    dots = ax.scatter(z[:, 0], second, c=cluster, cmap=cmap, **limits, s=4, alpha=0.6,
                      gid="patches")  # fmt: skip
    _cluster_bar(fig, dots, ax, n)
    ax.set_xlabel("latent z1")
    ax.set_ylabel("latent z2" if z.shape[1] > 1 else "")


def draw_trajectory(fig: Any, data: RunData, space: dict[str, Any]) -> dict[str, int]:
    """A run's positions on its survey and in the latent space of that survey (Figure 4d)."""
    drawn: dict[str, int] = {}
    ax_image, ax_latent = fig.subplots(1, 2)
    positions = np.asarray(space["positions"], float).reshape(-1, 2)
    steps = np.arange(1, len(positions) + 1)
    if _survey(fig, ax_image, data):
        drawn["survey"] = 1
    if len(positions):
        ax_image.plot(*positions.T, "-", color="tab:orange", lw=0.6, alpha=0.8)
        dots = ax_image.scatter(*positions.T, c=steps, cmap="viridis", s=24, edgecolors="k",
                                linewidths=0.4, gid="measured")  # fmt: skip
        add_colorbar(fig, dots, ax_image, "measurement (#)")
        drawn["measured"] = len(positions)
    ax_image.set_title(f"{data.plan_name}: where it measured")
    z = np.asarray(space["z"], float)
    n = int(np.max(space["cluster"])) + 1 if len(space["cluster"]) else 1
    _latent_scatter(fig, ax_latent, z, np.asarray(space["cluster"]), n)
    path = np.asarray(space["trajectory"], float)
    if len(path):
        second = path[:, 1] if path.shape[1] > 1 else np.zeros(len(path))
        ax_latent.plot(path[:, 0], second, "-", color="k", lw=0.7)
        ax_latent.scatter(path[:, 0], second, c="tab:orange", s=26, edgecolors="k",
                          linewidths=0.4, gid="trajectory")  # fmt: skip
        for i in (0, len(path) - 1):
            ax_latent.annotate("start" if i == 0 else "end", (path[i, 0], second[i]),
                               fontsize=8, xytext=(4, 4), textcoords="offset points")  # fmt: skip
        drawn["trajectory"] = len(path)
    reached = len(set(np.asarray(space["trajectory_cluster"]).tolist()))
    ax_latent.set_title(f"trajectory in latent space: {reached} of {n} clusters visited")
    return drawn
