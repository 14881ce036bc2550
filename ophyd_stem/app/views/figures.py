"""The figure of each workflow, drawn from a run's documents (live, in replay and in
``ophyd-stem show`` alike).

A figure has the panels its run holds data for, nothing else (:mod:`.decor`: every image
with a scale bar in nm, every map with a colour bar naming its quantity and unit).

DKL (``adaptive_eels``)
    the survey image with the measured points coloured by their value (the path joins them
    in order; the next suggestion a green star); the predicted mean and uncertainty maps and
    the acquisition map once the model exists; example spectra (the highest and lowest value
    measured, and the latest) with the scalarizer's band shaded; the learning curve.
edge-guided EELS (``edge_eels``)
    the survey image with the measured points along the edges, coloured by their value (the
    scalarizer's, else the relative thickness t/λ); the edge map; example spectra at the
    extremes of that value.
LoG* (``logstar``) and the U-Net ensemble (``dcnn``)
    :mod:`.forward`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from agents.runs import RunData

from .decor import TITLE_ROOM, add_colorbar, panel_grid, run_title, show_image, survey_name
from .physics import draw_physics, physics_history
from .spectra import (
    EXAMPLE_COLOURS,
    THICKNESS_LABEL,
    example_indices,
    plot_examples,
    relative_thickness,
)

__all__ = ["draw", "render", "run_values", "scalarizer_bands", "scalarizer_label"]

log = logging.getLogger(__name__)


def _undespiked(spec: str) -> str:
    """A spec without its ``despike:`` prefix."""
    spec = str(spec)
    return spec[len("despike:") :] if spec.startswith("despike:") else spec


def scalarizer_bands(spec: str | None) -> list[tuple[float, float]]:
    """The energy bands (eV) a scalarizer spec looks at: ``"band:20:30"`` -> ``[(20, 30)]``,
    ``"ratio:20:30:40:50"`` -> two bands; ``[]`` for a custom function."""
    if not spec:
        return []
    numbers = []
    for field in _undespiked(spec).split(":")[1:]:
        try:
            numbers.append(float(field))
        except ValueError:
            break
    return [(numbers[i], numbers[i + 1]) for i in range(0, len(numbers) - 1, 2)]


def scalarizer_label(spec: str | None) -> str:
    """What a scalarizer's values are, with their unit, for axes and colour bars."""
    if not spec:
        return "value"
    if _undespiked(spec) != str(spec):  # the same values, read after spikes were removed
        inner = scalarizer_label(_undespiked(spec))
        return str(spec) if inner == _undespiked(spec) else f"despiked {inner}"
    name = str(spec).split(":", 1)[0]
    bands = scalarizer_bands(spec)
    ranges = [f"{lo:g}-{hi:g} eV" for lo, hi in bands]
    if name == "band" and ranges:
        return f"intensity {ranges[0]} (counts·eV)"
    if name == "ratio" and len(ranges) == 2:
        return f"peak height ratio {ranges[0]} / {ranges[1]}"
    if name == "peak" and ranges:
        return f"peak position in {ranges[0]} (eV)"
    if name == "jump" and len(ranges) == 2:
        return f"edge jump ratio {ranges[1]} over {ranges[0]}"
    if name == "edge" and len(ranges) == 2:
        return f"edge signal {ranges[1]} above background (counts·eV)"
    return str(spec)


def auto_choice(data: RunData) -> str | None:
    """What an ``auto`` scalarizer chose (recorded with the decisions' reports), or None
    (another scalarizer, or a run from before 2026-12-05)."""
    if str(data.plan_args.get("scalarizer")).split(":")[-1] != "auto":
        return None
    reports = data.decisions.get("reports", [])
    return next((str(r["scalarizer"]) for r in reports if r and r.get("scalarizer")), None)


def _scalarizer_in_force(data: RunData) -> tuple[str | None, list[int]]:
    """The scalarizer's name now, and the measurement counts at which it changed."""
    name = auto_choice(data) or data.plan_args.get("scalarizer")
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


def _field_px(data: RunData) -> float | None:
    image = data.survey_image
    return None if image is None else float(image.shape[1])


def run_values(data: RunData) -> tuple[np.ndarray, str]:
    """One value per measured spectrum and what it is: the scalarizer's values when the run
    recorded them, else the relative thickness t/λ (empty when neither can be had)."""
    values = _values_in_force(data)
    if len(values) and len(values) == len(data.positions):
        return values, scalarizer_label(_scalarizer_in_force(data)[0])
    if data.spectra is not None and len(data.spectra):
        thickness = relative_thickness(data.energy_axis, data.spectra)
        if thickness is not None:
            return thickness, THICKNESS_LABEL
    return np.empty(0), ""


def _survey_panel(fig: Any, ax: Any, data: RunData, drawn: dict[str, int]) -> None:
    """The survey image, the measured points coloured by value, the next suggestion."""
    image = data.survey_image
    show_image(fig, ax, image, data.pixel_size)
    drawn["survey"] = 1
    values, label = run_values(data)
    dec = data.decisions
    if len(dec.get("step", [])):
        xy = np.column_stack([dec["x"], dec["y"]])
        sources = np.asarray(dec.get("source", ["agent"] * len(xy)))
        ours = sources == "operator"
        ax.plot(xy[:, 0], xy[:, 1], "-", color="tab:orange", lw=0.6, alpha=0.7)
    else:
        xy = data.positions
        ours = np.zeros(len(xy), dtype=bool)
        if len(data.edge_points):
            pts = data.edge_points
            ax.plot(pts[:, 0], pts[:, 1], "-", color="tab:cyan", lw=0.5, label="beam path")
    if len(xy):
        colour_by = values if len(values) == len(xy) else None
        # mid-run the decisions come before their spectra's values: plain dots until then
        # (a colour map without values is a matplotlib warning at every live redraw)
        dots = ax.scatter(
            xy[~ours, 0],
            xy[~ours, 1],
            c=None if colour_by is None else colour_by[~ours],
            color="tab:orange" if colour_by is None else None,
            cmap=None if colour_by is None else "viridis",
            s=22 if len(xy) <= 200 else 8,
            edgecolors="k",
            linewidths=0.4,
            gid="measured",
            label="measured",
        )
        if colour_by is not None:
            add_colorbar(fig, dots, ax, label)
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
    ax.set_title(f"{survey_name(data.survey_signal)}, {len(xy)} measured points", fontsize=10)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    _legend(ax, loc="upper right", fontsize=7)


def _examples(data: RunData) -> tuple[list[int], list[str]]:
    """Which spectra to show: the extremes of the run's values (and the latest measured,
    while a run goes), labelled with value and position."""
    values, label = run_values(data)
    n = 0 if data.spectra is None else len(data.spectra)
    if not n:
        return [], []
    if len(values) != n:
        return [n - 1], ["latest"]
    indices = example_indices(values, k=2 if "step" in data.decisions else 3)
    if "step" in data.decisions and n - 1 not in indices:
        indices.append(n - 1)
    bands = scalarizer_bands(_scalarizer_in_force(data)[0])
    short = (
        "t/λ" if "t/λ" in label else (f"{bands[0][0]:g}-{bands[0][1]:g} eV:" if bands else "value")
    )
    labels = []
    for i in indices:
        what = "latest, " if i == n - 1 and "step" in data.decisions else ""
        value = f"{values[i]:.2f}" if short == "t/λ" else f"{values[i]:.3g}"
        labels.append(f"{what}{short} {value}")
    return indices, labels


def _mark_examples(ax: Any, data: RunData, indices: list[int]) -> None:
    for n, i in enumerate(indices):
        if len(data.positions) > i:
            x, y = data.positions[i]
            ax.scatter(
                [x],
                [y],
                s=90,
                facecolors="none",
                edgecolors=EXAMPLE_COLOURS[n % len(EXAMPLE_COLOURS)],
                linewidths=1.8,
                gid="example",
            )


def _draw_adaptive(fig: Any, data: RunData) -> dict[str, int]:
    drawn: dict[str, int] = {}
    last = data.maps[-1] if data.maps else None
    name, changes = _scalarizer_in_force(data)
    unit = scalarizer_label(name)
    maps = []
    if last is not None:
        acquisition = _acquisition_name(data)
        acq_label = _acq_label(acquisition, unit)
        for key, title, cmap, label in (
            ("mean", "predicted mean", "viridis", unit),
            ("std", "uncertainty (std)", "magma", f"std of {unit}"),
            ("acquisition", f"acquisition: {acquisition}", "cividis", acq_label),
        ):
            if key in last:
                maps.append((key, title, cmap, label))
    has_spectra = data.spectra is not None and len(data.spectra) > 0
    values = _values_in_force(data)
    physics = physics_history(data)  # the physics-informed agents' posterior, step by step
    panels = (
        (["survey"] if data.survey_image is not None else [])
        + [m[0] for m in maps]
        + (["edge_map"] if data.edge_map is not None and not maps else [])
        + (["spectra"] if has_spectra else [])
        + (["curve"] if len(values) >= 2 else [])
        + (["physics"] if physics is not None else [])
    )
    axes = dict(zip(panels, panel_grid(fig, len(panels))))
    if "survey" in axes:
        _survey_panel(fig, axes["survey"], data, drawn)
    for key, title, cmap, label in maps:
        ax = axes[key]
        record = np.asarray(last[key], dtype=float)
        show_image(
            fig,
            ax,
            np.where(np.isfinite(record), record, np.nan),
            data.pixel_size,
            kind="map",
            cmap=cmap,
            label=label,
            extent=_map_extent(last),
            width_px=_field_px(data),
        )
        ax.set_title(f"{title}, step {last.get('step', '?')}", fontsize=10)
        drawn[key] = 1
    if "edge_map" in axes:
        ax = axes["edge_map"]
        show_image(fig, ax, data.edge_map, data.pixel_size)
        method = (data.edge_report or {}).get("method", "")
        # the filter's name as people write it: "edge map (Canny)", not "edge map canny"
        named = {"canny": "Canny", "gradient": "gradient magnitude"}.get(method, method)
        ax.set_title(f"edge map ({named})" if named else "edge map", fontsize=10)
        drawn["edge_map"] = 1
    if "spectra" in axes:
        ax = axes["spectra"]
        indices, labels = _examples(data)
        plot_examples(ax, data.energy_axis, data.spectra, indices, labels, scalarizer_bands(name))
        if "survey" in axes:
            _mark_examples(axes["survey"], data, indices)
        ax.set_title("example spectra (circled on the survey)", fontsize=10)
        drawn["spectrum"] = len(indices)
    if "curve" in axes:
        ax = axes["curve"]
        n = np.arange(1, len(values) + 1)
        ax.plot(n, values, "o", ms=3, color="tab:gray", label="measured")
        ax.plot(
            n, np.maximum.accumulate(values), "-", color="tab:red", label="best so far", gid="best"
        )
        for c in changes:  # earlier values shown relabelled with the new scalarizer
            ax.axvline(c + 0.5, color="tab:blue", ls="--", lw=0.8)
        ax.set_xlabel("measurement")
        ax.set_ylabel(unit, fontsize=8)
        _legend(ax, fontsize=7)
        ax.set_title("learning curve", fontsize=10)
        drawn["curve"] = len(values)
    if physics is not None:
        drawn[physics[0]] = draw_physics(axes["physics"], *physics)
    return drawn


def _acquisition_name(data: RunData) -> str:
    """The acquisition function in force at the last decision (the operator may change it)."""
    for report in reversed(data.decisions.get("reports") or []):
        if isinstance(report, dict) and isinstance(report.get("acquisition"), dict):
            return str(report["acquisition"].get("name") or "acquisition")
        config = report.get("config") if isinstance(report, dict) else None
        if isinstance(config, dict):  # the physics agents' acquisition, the bandit's policy
            if isinstance(config.get("acquisition"), str):
                return config["acquisition"]
            if config.get("policy"):
                return str(config["policy"])
    return str(data.plan_args.get("acquisition") or "acquisition")


def _acq_label(acquisition: str, unit: str = "value") -> str:
    """The acquisition map's colour-bar label: these three are in the value's own unit
    (``unit`` is :func:`scalarizer_label`'s, e.g. ``intensity 20-30 eV (counts·eV)``)."""
    name = {
        "ei": "expected improvement",
        "ucb": "upper confidence bound",
        "uncertainty": "predicted std",
        "thompson": "Thompson draw",  # a sample of the posterior: the value's unit
    }.get(acquisition)
    return f"{name} of {unit}" if name else f"{acquisition} (agent's units)"


def draw(fig: Any, data: RunData) -> dict[str, int]:
    """Draw a run's workflow figure on ``fig``; returns what was drawn (artist counts)."""
    from .corrections import draw_drift, draw_zero_loss
    from .forward import draw_dcnn, draw_logstar
    from .latent import draw_latent

    fig.clear()
    if data.plan_name == "logstar":
        drawn = draw_logstar(fig, data)
    elif data.plan_name == "dcnn":
        drawn = draw_dcnn(fig, data)
    elif data.plan_name == "drift_corrected_edge_eels":
        drawn = draw_drift(fig, data)
    elif data.plan_name == "spectrum_image":
        drawn = draw_zero_loss(fig, data)
    elif data.plan_name == "latent_eels":
        drawn = draw_latent(fig, data)
    else:
        drawn = _draw_adaptive(fig, data)
    _fit(fig)
    # a grid has no agent: its workflow figure is the zero-loss alignment, and says so
    what = "zero-loss alignment" if data.plan_name == "spectrum_image" else ""
    fig.suptitle(
        run_title(data.start, what, data.uid)
        + (f" ({data.exit_status})" if data.exit_status else "")
    )
    return drawn


def _fit(fig: Any) -> None:
    """Size the figure for its panels (as :func:`.decor.panel_grid` lays them out)."""
    panels = max(len([ax for ax in fig.axes if not hasattr(ax, "_colorbar")]), 1)
    cols = panels if panels == 4 else min(panels, 3)
    rows = -(-panels // cols)
    size = (5.2 * cols, 4.4 * rows + 0.4)
    if tuple(np.round(fig.get_size_inches(), 2)) != tuple(np.round(size, 2)):
        fig.set_size_inches(*size, forward=True)


def _figure(plan_name: str | None, show: bool) -> Any:
    """A figure for a workflow; :func:`draw` sizes it for the panels it gets."""
    size = (15.6, 4.8)
    if show:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=size)
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def render(data: RunData, path: str | Path, dpi: int = 80) -> tuple[Path, dict[str, int]]:
    """Draw a run's figure headless and save it as a PNG; returns ``(path, drawn)``."""
    fig = _figure(data.plan_name, show=False)
    drawn = draw(fig, data)
    fig.tight_layout(rect=TITLE_ROOM)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path, drawn
