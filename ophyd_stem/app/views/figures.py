"""The figure of each workflow, drawn from a run's documents (live, in replay and in
``ophyd-stem show`` alike).

adaptive EELS (``adaptive_eels``, ``edge_eels``)
    the survey image with the measured points (numbered by step) and the next suggestion
    (pending points, or where the agent's acquisition map peaks); the DKL predicted mean
    and uncertainty maps; the acquisition map or the edge map; the latest spectrum with the
    scalarizer's band(s) shaded; the learning curve (best value against measurements).
LoG* (``logstar``)
    the Pareto front with the chosen point, and the atoms (by class) over the survey image
    with the EELS points.
U-Net ensemble (``dcnn``)
    the atoms coloured by their uncertainty with the EELS points, the ensemble's mean
    probability and the members' variance maps.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from agents.runs import RunData

__all__ = ["draw", "render", "scalarizer_bands"]

log = logging.getLogger(__name__)


def scalarizer_bands(spec: str | None) -> list[tuple[float, float]]:
    """The energy bands (eV) a scalarizer spec looks at: ``"band:20:30"`` -> ``[(20, 30)]``,
    ``"ratio:20:30:40:50"`` -> two bands; ``[]`` for a custom function."""
    if not spec:
        return []
    numbers = []
    for field in str(spec).split(":")[1:]:
        try:
            numbers.append(float(field))
        except ValueError:
            break
    return [(numbers[i], numbers[i + 1]) for i in range(0, len(numbers) - 1, 2)]


def _scalarizer_in_force(data: RunData) -> tuple[str | None, list[int]]:
    """The scalarizer's name now, and the measurement counts at which it changed."""
    name = data.plan_args.get("scalarizer")
    changes = []
    steps = np.asarray(data.decisions.get("step", []))
    for iv in data.interventions:
        if iv.get("kind") == "set_scalarizer":
            name = iv.get("after")
            changes.append(int(np.sum(steps < iv.get("step", 0))))
    return (None if name is None else str(name)), changes


def _values_in_force(data: RunData) -> np.ndarray:
    """The measured values in the units of the scalarizer in force: after a scalarizer
    change, the earlier measurements take the relabelled values recorded with it."""
    values = data.values.copy()
    for iv in data.interventions:
        if iv.get("kind") == "set_scalarizer":
            relabelled = np.asarray((iv.get("detail") or {}).get("values", []), dtype=float)
            m = min(len(relabelled), len(values))
            values[:m] = relabelled[:m]
    return values


def _next_points(data: RunData) -> np.ndarray:
    """Where the agent goes next: the points pending approval, else the acquisition peak."""
    measured = len(data.decisions.get("step", []))
    for iv in reversed(data.interventions):
        if iv.get("kind") in ("suggested", "veto", "add"):
            pending = iv.get("after") or []
            if iv.get("kind") == "suggested" and int(iv.get("step", 0)) > _last_step(data):
                return np.array([[p["x"], p["y"]] for p in pending], dtype=float).reshape(-1, 2)
            break
    if data.maps and measured:
        last = data.maps[-1]
        acq = np.asarray(last.get("acquisition", []), dtype=float)
        if acq.size and np.isfinite(acq).any():
            i = int(np.nanargmax(np.where(np.isfinite(acq), acq, -np.inf)))
            return np.array([[np.ravel(last["x"])[i], np.ravel(last["y"])[i]]], dtype=float)
    return np.empty((0, 2))


def _last_step(data: RunData) -> int:
    steps = data.decisions.get("step", [])
    return int(np.max(steps)) if len(steps) else 0


def _map_extent(record: dict[str, Any]) -> list[float] | None:
    x, y = np.asarray(record.get("x", [])), np.asarray(record.get("y", []))
    if x.ndim != 2 or y.ndim != 2:
        return None
    dx = (x[0, 1] - x[0, 0]) if x.shape[1] > 1 else 1.0
    dy = (y[1, 0] - y[0, 0]) if y.shape[0] > 1 else 1.0
    return [x.min() - dx / 2, x.max() + dx / 2, y.max() + dy / 2, y.min() - dy / 2]


def _legend(ax: Any, **kwargs: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _draw_adaptive(fig: Any, data: RunData) -> dict[str, int]:
    drawn: dict[str, int] = {}
    axes = fig.subplots(2, 3).ravel()
    ax = axes[0]
    image = data.survey_image
    if image is not None:
        ax.imshow(image, cmap="gray")
        drawn["survey"] = 1
    dec = data.decisions
    if len(dec.get("step", [])):
        xy = np.column_stack([dec["x"], dec["y"]])
        sources = np.asarray(dec.get("source", ["agent"] * len(xy)))
        ours = sources == "operator"
        ax.plot(xy[:, 0], xy[:, 1], "-", color="tab:orange", lw=0.6, alpha=0.7)
        ax.scatter(
            xy[~ours, 0],
            xy[~ours, 1],
            c=np.asarray(dec["step"])[~ours],
            cmap="autumn",
            s=22,
            edgecolors="k",
            linewidths=0.4,
            gid="measured",
            label="measured",
        )
        if ours.any():
            ax.scatter(
                xy[ours, 0],
                xy[ours, 1],
                marker="s",
                s=26,
                c="tab:cyan",
                edgecolors="k",
                gid="operator",
                label="added by operator",
            )
        drawn["measured"] = len(xy)
    elif len(data.positions):
        ax.scatter(
            data.positions[:, 0],
            data.positions[:, 1],
            s=6,
            c="tab:orange",
            gid="measured",
            label="spectra",
        )
        drawn["measured"] = len(data.positions)
    nxt = _next_points(data)
    if len(nxt):
        ax.scatter(
            nxt[:, 0],
            nxt[:, 1],
            marker="*",
            s=160,
            c="tab:green",
            edgecolors="k",
            gid="next",
            label="next",
        )
        drawn["next"] = len(nxt)
    if len(data.edge_points) and "step" not in dec:
        pts = data.edge_points
        ax.plot(pts[:, 0], pts[:, 1], "-", color="tab:cyan", lw=0.5, label="beam path")
    ax.set_title(f"{data.survey_signal} survey, measured points")
    if image is not None:
        ax.set_xlim(-0.5, image.shape[1] - 0.5)
        ax.set_ylim(image.shape[0] - 0.5, -0.5)
    _legend(ax, loc="upper right", fontsize=7)

    last = data.maps[-1] if data.maps else None
    for ax, key, title, cmap in (
        (axes[1], "mean", "predicted mean", "viridis"),
        (axes[2], "std", "uncertainty (std)", "magma"),
    ):
        if last is not None and key in last:
            im = ax.imshow(last[key], cmap=cmap, extent=_map_extent(last))
            fig.colorbar(im, ax=ax, shrink=0.8)
            ax.set_title(f"{title}, step {last.get('step', '?')}")
            drawn[key] = 1
        else:
            ax.set_title(f"{title} (no model yet)")
            ax.set_axis_off()

    ax = axes[5]
    if last is not None and "acquisition" in last:
        acq = np.asarray(last["acquisition"], dtype=float)
        im = ax.imshow(
            np.where(np.isfinite(acq), acq, np.nan), cmap="cividis", extent=_map_extent(last)
        )
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set_title("acquisition")
        drawn["acquisition"] = 1
    elif data.edge_map is not None:
        ax.imshow(data.edge_map, cmap="gray")
        ax.set_title("edge map")
        drawn["edge_map"] = 1
    else:
        ax.set_axis_off()

    ax = axes[3]
    name, changes = _scalarizer_in_force(data)
    if data.spectra is not None and len(data.spectra):
        energy = data.energy_axis
        if energy is None or len(energy) != data.spectra.shape[-1]:
            energy = np.arange(data.spectra.shape[-1], dtype=float)
        ax.plot(energy, data.spectra[-1], color="k", lw=0.8, gid="spectrum")
        for lo, hi in scalarizer_bands(name):
            ax.axvspan(lo, hi, color="tab:orange", alpha=0.3)
        positive = np.asarray(data.spectra[-1]) > 0
        if positive.any():
            ax.set_yscale("log")
        ax.set_xlabel("energy loss (eV)")
        ax.set_title(f"latest spectrum, {name or 'no scalarizer'}")
        drawn["spectrum"] = 1
    else:
        ax.set_title("no spectrum yet")

    ax = axes[4]
    values = _values_in_force(data)
    if len(values):
        n = np.arange(1, len(values) + 1)
        ax.plot(n, values, "o", ms=3, color="tab:gray", label="measured")
        ax.plot(
            n, np.maximum.accumulate(values), "-", color="tab:red", label="best so far", gid="best"
        )
        for c in changes:  # earlier values shown relabelled with the new scalarizer
            ax.axvline(c + 0.5, color="tab:blue", ls="--", lw=0.8)
        ax.set_xlabel("measurement")
        ax.set_ylabel(name or "value")
        _legend(ax, fontsize=7)
        drawn["curve"] = len(values)
    ax.set_title("learning curve")
    return drawn


def _draw_logstar(fig: Any, data: RunData) -> dict[str, int]:
    drawn: dict[str, int] = {}
    ax_front, ax_image = fig.subplots(1, 2)
    front = data.front
    image_index = int(front[-1].get("image", 0)) if front else 0
    front = [p for p in front if int(p.get("image", 0)) == image_index]
    rewards = [
        k
        for k in (front[0] if front else {})
        if k not in ("image", "point", "chosen", "parameters")
    ]
    if len(rewards) >= 2:
        a = np.array([p[rewards[0]] for p in front], dtype=float)
        b = np.array([p[rewards[1]] for p in front], dtype=float)
        order = np.argsort(a)
        ax_front.plot(a[order], b[order], "-o", color="tab:blue", ms=4, gid="front")
        chosen = [i for i, p in enumerate(front) if p.get("chosen")]
        for i in chosen:
            ax_front.scatter(
                [a[i]],
                [b[i]],
                s=160,
                marker="*",
                c="tab:red",
                zorder=3,
                gid="chosen",
                label=f"chosen #{front[i]['point']}",
            )
        ax_front.set_xlabel(rewards[0])
        ax_front.set_ylabel(rewards[1])
        _legend(ax_front, fontsize=8)
        drawn["front"] = len(front)
        drawn["chosen"] = len(chosen)
    ax_front.set_title("LoG* Pareto front")
    image = data.survey_images[image_index] if len(data.survey_images) > image_index else None
    if image is not None:
        ax_image.imshow(image, cmap="gray")
        drawn["survey"] = 1
    atoms = data.atoms
    if atoms and len(atoms.get("x", [])):
        keep = np.asarray(atoms.get("image", np.zeros(len(atoms["x"])))) == image_index
        ax_image.scatter(
            np.asarray(atoms["x"])[keep],
            np.asarray(atoms["y"])[keep],
            c=np.asarray(atoms.get("cluster", np.zeros(len(keep))))[keep],
            cmap="tab10",
            s=8,
            gid="atoms",
        )
        drawn["atoms"] = int(keep.sum())
    _draw_eels(ax_image, data, drawn, colour="tab:red")
    ax_image.set_title(f"atoms, image {image_index}")
    return drawn


def _draw_eels(ax: Any, data: RunData, drawn: dict[str, int], colour: str) -> None:
    """The EELS positions of a forward workflow (LoG*, DCNN) as crosses over its image."""
    if not len(data.positions):
        return
    ax.scatter(
        data.positions[:, 0],
        data.positions[:, 1],
        marker="x",
        c=colour,
        s=40,
        gid="eels",
        label="EELS",
    )
    _legend(ax, fontsize=8)
    drawn["eels"] = len(data.positions)


def _draw_dcnn(fig: Any, data: RunData) -> dict[str, int]:
    """The U-Net ensemble: atoms coloured by their uncertainty, the mean probability and the
    members' variance maps of the latest image."""
    drawn: dict[str, int] = {}
    ax_image, ax_mean, ax_var = fig.subplots(1, 3)
    maps = data.streams.get("dcnn_maps")
    index = len(data.survey_images) - 1
    if index >= 0:
        ax_image.imshow(data.survey_images[index], cmap="gray")
        drawn["survey"] = 1
    atoms = data.atoms
    if atoms and len(atoms.get("x", [])):
        keep = np.asarray(atoms.get("image", np.zeros(len(atoms["x"]))), dtype=int) == index
        colour = np.asarray(atoms.get("uncertainty", np.zeros(len(keep))), dtype=float)[keep]
        dots = ax_image.scatter(
            np.asarray(atoms["x"])[keep],
            np.asarray(atoms["y"])[keep],
            c=colour,
            cmap="plasma",
            s=10,
            gid="atoms",
        )
        fig.colorbar(dots, ax=ax_image, shrink=0.8, label="uncertainty")
        drawn["atoms"] = int(keep.sum())
    _draw_eels(ax_image, data, drawn, colour="tab:green")
    ax_image.set_title(f"atoms, image {max(index, 0)}")
    for ax, key, title, cmap in (
        (ax_mean, "mean", "mean probability", "viridis"),
        (ax_var, "variance", "members' variance", "magma"),
    ):
        column = maps.field(key) if maps is not None and len(maps) else None
        if column is not None:
            im = ax.imshow(np.asarray(column[-1]), cmap=cmap)
            fig.colorbar(im, ax=ax, shrink=0.8)
            drawn[key] = 1
        ax.set_title(title)
    return drawn


def draw(fig: Any, data: RunData) -> dict[str, int]:
    """Draw a run's workflow figure on ``fig``; returns what was drawn (artist counts)."""
    fig.clear()
    if data.plan_name == "logstar":
        drawn = _draw_logstar(fig, data)
    elif data.plan_name == "dcnn":
        drawn = _draw_dcnn(fig, data)
    else:
        drawn = _draw_adaptive(fig, data)
    fig.suptitle(
        f"{data.plan_name} - scan {data.start.get('scan_id')} - {data.uid[:8]}"
        + (f" ({data.exit_status})" if data.exit_status else "")
    )
    return drawn


def _figure(plan_name: str | None, show: bool) -> Any:
    size = {"logstar": (11, 5), "dcnn": (16, 5)}.get(str(plan_name), (15, 9))
    if show:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=size)
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def render(data: RunData, path: str | Path, dpi: int = 80) -> tuple[Path, dict[str, int]]:
    """Draw a run's figure headless and save it as a PNG; returns ``(path, drawn)``."""
    fig = _figure(data.plan_name, show=False)
    drawn = draw(fig, data)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path, drawn
