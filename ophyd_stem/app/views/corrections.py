"""Figures of the instrument corrections: specimen drift and the zero-loss peak.

drift-corrected EELS (``drift_corrected_edge_eels``)
    the survey with the sites the edges chose and where the beam was sent, and the specimen's
    drift trajectory since the survey (the displacement of each re-scan, drawn from the
    field's centre, coloured by time); the drift against time (nm); the correlation peak of
    each registration with the trust threshold; the correction applied to each spectrum (nm).
zero-loss alignment (any run with a ``zero_loss`` stream; ``spectrum_image``'s figure)
    where the zero-loss peak was found in each spectrum, as a map over the field (meV); its
    position spectrum by spectrum with the batch's median (the slow walk); the peak region of
    the mean spectrum as measured and aligned.

Every image has a scale bar in nm, every colour scale a colour bar naming its quantity and
unit, and a panel is drawn only when the run holds its data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from agents.runs import RunData

from .decor import TITLE_ROOM, add_colorbar, run_title, show_image, survey_name

__all__ = ["draw_drift", "draw_zero_loss", "has_zero_loss", "render_zero_loss"]


def _survey(fig: Any, ax: Any, data: RunData) -> bool:
    image = data.survey_image
    if image is None:
        return False
    show_image(fig, ax, image, data.pixel_size)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    return True


def _columns(data: RunData, stream: str) -> dict[str, np.ndarray]:
    found = data.streams.get(stream)
    if found is None:
        return {}
    return {k.split("-", 1)[-1]: np.asarray(c) for k, c in found.columns.items()}


# ---------------------------------------------------------------------- drift


def draw_drift(fig: Any, data: RunData) -> dict[str, int]:
    """The drift-corrected run's figure on ``fig``; returns what was drawn."""
    drawn: dict[str, int] = {}
    drift = _columns(data, "drift")
    dec = data.decisions
    has_drift = bool(len(drift.get("dx", [])))
    has_dec = bool(len(dec.get("step", [])))
    panels = 1 + (2 if has_drift else 0) + (1 if has_dec else 0)
    axes = list(np.atleast_1d(fig.subplots(1, panels)))
    pixel = data.pixel_size or 0.0
    ax = axes.pop(0)
    if _survey(fig, ax, data):
        drawn["survey"] = 1
    if len(data.edge_points):
        ax.scatter(*data.edge_points.T, s=6, c="tab:cyan", gid="sites", label="edge sites")
        drawn["sites"] = len(data.edge_points)
    if has_dec:
        ax.scatter(dec["x"], dec["y"], s=6, c="tab:orange", marker="x", gid="beam",
                   label="beam (corrected)")  # fmt: skip
        drawn["beam"] = len(dec["x"])
    if has_drift and data.survey_image is not None:
        rows, cols = data.survey_image.shape
        minutes = np.asarray(drift["time"], dtype=float) / 60
        path = np.column_stack([np.r_[0.0, drift["dx"]], np.r_[0.0, drift["dy"]]])
        centre = np.array([(cols - 1) / 2, (rows - 1) / 2])
        ax.plot(*(centre + path).T, "-", color="w", lw=1.0, alpha=0.8)
        dots = ax.scatter(*(centre + path[1:]).T, c=minutes, cmap="plasma", s=22,
                          edgecolors="k", linewidths=0.4, gid="trajectory",
                          label="drift since the survey")  # fmt: skip
        add_colorbar(fig, dots, ax, "instrument time (min)")
        drawn["trajectory"] = len(minutes)
    ax.set_title("survey: sites, beam, drift path")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=7)
    if has_drift:
        minutes = np.asarray(drift["time"], dtype=float) / 60
        used = np.asarray(drift.get("used", np.ones(len(minutes))), dtype=bool)
        scale, unit = (pixel, "nm") if pixel else (1.0, "px")
        ax = axes.pop(0)
        for key, colour in (("dx", "tab:blue"), ("dy", "tab:red")):
            values = np.asarray(drift[key], dtype=float) * scale
            ax.plot(minutes, values, "-o", color=colour, ms=3, label=key[1], gid=f"drift_{key}")
            if (~used).any():
                ax.scatter(minutes[~used], values[~used], facecolors="none",
                           edgecolors="k", s=40, label="not trusted")  # fmt: skip
        ax.set_xlabel("instrument time (min)")
        ax.set_ylabel(f"specimen displacement ({unit})")
        ax.set_title("drift since the survey")
        ax.legend(fontsize=7)
        drawn["drift"] = len(minutes)
        ax = axes.pop(0)
        ax.plot(minutes, drift["peak"], "-o", color="tab:green", ms=3, gid="peak")
        threshold = (data.edge_report.get("drift") or {}).get("min_peak")
        if threshold is not None:
            ax.axhline(float(threshold), color="k", ls="--", lw=0.8, label="trusted above")
            ax.legend(fontsize=7)
        ax.set_xlabel("instrument time (min)")
        ax.set_ylabel("correlation peak (0-1)")
        ax.set_title("registration quality")
    if has_dec:
        ax = axes.pop(0)
        shift = np.hypot(dec.get("correction_x", 0.0), dec.get("correction_y", 0.0))
        scale, unit = (pixel, "nm") if pixel else (1.0, "px")
        n = np.arange(1, len(shift) + 1)
        ax.plot(n, np.asarray(shift, dtype=float) * scale, ".", color="tab:orange", gid="shift")
        outside = np.asarray(dec.get("outside_field", np.zeros(len(n))), dtype=bool)
        if outside.any():
            ax.plot(n[outside], np.asarray(shift)[outside] * scale, "x", color="k",
                    label="site drifted out of the field")  # fmt: skip
            ax.legend(fontsize=7)
        ax.set_xlabel("spectrum")
        ax.set_ylabel(f"beam correction ({unit})")
        ax.set_title("correction applied")
        drawn["correction"] = len(n)
    return drawn


# ---------------------------------------------------------------------- zero loss


def has_zero_loss(data: RunData) -> bool:
    return bool(len(data.zero_loss.get("zlp", [])))


def _grid_of(data: RunData, values: np.ndarray) -> tuple[np.ndarray, list[float]] | None:
    """A spectrum image's values as its ``rows x cols`` map and the map's extent in survey
    pixels (None when the run is not a full grid)."""
    shape = data.start.get("shape")
    if not shape or len(shape) != 2 or int(shape[0]) * int(shape[1]) != len(values):
        return None
    rows, cols = int(shape[0]), int(shape[1])
    x = np.asarray(data.zero_loss["x"], float).reshape(rows, cols)
    y = np.asarray(data.zero_loss["y"], float).reshape(rows, cols)
    dx = (x[0, -1] - x[0, 0]) / max(cols - 1, 1) or 1.0
    dy = (y[-1, 0] - y[0, 0]) / max(rows - 1, 1) or 1.0
    extent = [x.min() - dx / 2, x.max() + dx / 2, y.max() + dy / 2, y.min() - dy / 2]
    return values.reshape(rows, cols), extent


def draw_zero_loss(fig: Any, data: RunData) -> dict[str, int]:
    """The zero-loss alignment's figure on ``fig`` (a spectrum image's figure: without
    alignment, the survey with the grid and the mean spectrum); returns what was drawn."""
    drawn: dict[str, int] = {}
    rows = data.zero_loss
    aligned = has_zero_loss(data)
    spectra = data.spectra is not None and len(data.spectra) > 0
    panels = (1 if data.survey_image is not None else 0) + int(aligned) + int(spectra)
    axes = list(np.atleast_1d(fig.subplots(1, max(panels, 1))))
    if data.survey_image is not None:
        ax = axes.pop(0)
        _survey(fig, ax, data)
        drawn["survey"] = 1
        if aligned:
            zlp = 1e3 * np.asarray(rows["zlp"], dtype=float)  # meV: sub-channel positions
            grid = _grid_of(data, zlp)
            # at least +-1 meV: a steady spectrometer's peaks look as still as they are
            limit = max(float(np.nanmax(np.abs(zlp))), 1.0)
            colours = {"cmap": "coolwarm", "vmin": -limit, "vmax": limit}
            if grid is not None:  # a spectrum image: the map over the grid's region
                values, extent = grid
                im = ax.imshow(values, extent=extent, interpolation="nearest", **colours)
                im.set_gid("map:zero-loss peak")
                mapped = im
            else:  # points: each spectrum's peak where it was taken
                mapped = ax.scatter(rows["x"], rows["y"], c=zlp, s=18, edgecolors="k",
                                    linewidths=0.3, gid="zlp_map", **colours)  # fmt: skip
            add_colorbar(fig, mapped, ax, "zero-loss peak found at (meV)")
            ax.set_title("where the zero-loss peak was")
            drawn["zlp_map"] = len(zlp)
        elif len(data.positions):
            ax.scatter(*data.positions.T, s=4, c="tab:orange", gid="positions")
            ax.set_title(f"{survey_name(data.survey_signal)}, {len(data.positions)} spectra")
    if aligned:
        ax = axes.pop(0)
        zlp = 1e3 * np.asarray(rows["zlp"], dtype=float)  # meV
        n = np.arange(1, len(zlp) + 1)
        trusted = np.asarray(rows.get("trusted", np.ones(len(zlp))), dtype=bool)
        ax.plot(n[trusted], zlp[trusted], ".", ms=3, color="tab:gray", label="each spectrum")
        if (~trusted).any():
            ax.plot(n[~trusted], np.nan_to_num(zlp[~trusted]), "x", color="k",
                    label="not trusted (left as measured)")  # fmt: skip
        # one spectrum (a LoG* run's EELS at its one dopant): a line of one point is not
        # drawn, so mark it; its scatter is no number to print
        ax.plot(n, 1e3 * np.asarray(rows["walk"], dtype=float), "-" if len(n) > 1 else "_",
                ms=12, color="tab:red", lw=1.5, label="batch median (walk)",
                gid="walk")  # fmt: skip
        ax.axhline(0.0, color="k", lw=0.5)
        # spectra are counted: whole numbers, and room for the first and the last
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0.5, len(n) + 0.5)
        ax.set_xlabel("spectrum, in the order measured")
        ax.set_ylabel("zero-loss peak position (meV)")
        found = zlp[np.isfinite(zlp)]
        if len(found) > 1:
            ax.set_title(f"energy scale: {np.std(found):.1f} meV rms as measured")
        else:
            ax.set_title("energy scale: one spectrum" + (
                f", peak at {found[0] + 0.0:+.1f} meV" if len(found) else ", no peak found"
            ))  # fmt: skip
        ax.legend(fontsize=7)
        drawn["zlp_trace"] = len(zlp)
    if spectra:
        ax = axes.pop(0)
        raw = np.asarray(data.spectra, dtype=float).mean(axis=0)
        energy = data.energy_axis
        if energy is None or len(energy) != len(raw):
            energy = np.arange(len(raw), dtype=float)
        ax.plot(energy, raw, color="tab:gray", lw=1.0, label="mean as measured", gid="raw")
        if aligned:
            mean = np.asarray(data.aligned_spectra, dtype=float).mean(axis=0)
            ax.plot(energy, mean, color="k", lw=1.2, label="mean aligned", gid="aligned")
            near = np.abs(energy) <= 2.0
            if near.sum() > 3:
                ax.set_xlim(-2.0, 2.0)
                ax.set_ylim(0, 1.1 * max(raw[near].max(), mean[near].max()))
            ax.set_title("zero-loss peak, mean spectrum")
        else:
            ax.set_yscale("log")
            ax.set_title("mean spectrum")
        ax.set_xlabel("energy loss (eV)")
        ax.set_ylabel("counts")
        ax.legend(fontsize=7)
        drawn["spectrum"] = 1
    return drawn


def render_zero_loss(data: RunData, path: str | Path, dpi: int = 80) -> Path:
    """The zero-loss figure of any aligned run, headless, as a PNG (beside the workflow's
    own figure in ``ophyd-stem show``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.6))
    draw_zero_loss(fig, data)
    fig.suptitle(run_title(data.start, "zero-loss alignment", data.uid))
    fig.tight_layout(rect=TITLE_ROOM)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
