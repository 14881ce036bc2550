"""``ophyd-stem show``: a run summarised in a few lines and drawn in one PNG."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_report"]


def _streams(run: Any) -> list[str]:
    return list(run)


def _find_image(run: Any) -> tuple[str, str] | None:
    """(stream, key) of the first survey image in the run."""
    for stream in sorted(_streams(run), key=lambda s: s != "survey"):
        for key in run[stream]:
            if key.startswith("scan-") and key not in ("scan-pixel_size",):
                return stream, key
    return None


def _configuration_value(run: Any, stream: str, name: str) -> Any:
    for obj in run[stream].metadata.get("configuration", {}).values():
        data = obj.get("data", {})
        if name in data:
            return data[name]
    return None


def run_report(run: Any, out_dir: Path) -> tuple[str, Path]:
    """Summarise ``run`` (a tiled Bluesky run) as text and write its figure to ``out_dir``.

    The figure shows the survey image with the measured beam positions, the spectra (mean
    and a few individual ones, on their energy axis) and, for a grid, the intensity map.

    Returns:
        The text summary and the path of the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = run.metadata["start"]
    stop = run.metadata.get("stop") or {}
    uid = start["uid"]
    lines = [
        f"run {uid}  (scan {start.get('scan_id')})",
        f"  plan        {start.get('plan_name')} {start.get('plan_args', '')}",
        f"  started     {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(start['time']))}",
        f"  sample      {start.get('sample')}   operator {start.get('operator', '-')}",
        f"  instrument  {start.get('instrument', {}).get('name', '-')}",
        f"  status      {stop.get('exit_status', 'running or interrupted')}",
    ]
    counts = stop.get("num_events") or {}
    lines.append(f"  streams     {', '.join(f'{k}: {v}' for k, v in counts.items())}")

    panels: list[tuple[str, Any]] = []
    image_ref = _find_image(run)
    positions = None
    if "primary" in _streams(run) and "stem-beam-x" in run["primary"]:
        primary = run["primary"]
        positions = np.column_stack([primary["stem-beam-x"].read(), primary["stem-beam-y"].read()])
    if image_ref is not None:
        panels.append(("image", image_ref))
    spectra = None
    if "primary" in _streams(run) and "eels-spectrum" in run["primary"]:
        spectra = np.asarray(run["primary"]["eels-spectrum"].read(), dtype=np.float64)
        panels.append(("spectra", None))
        shape = start.get("shape")
        if shape and len(shape) == 2 and spectra.shape[0] == shape[0] * shape[1]:
            panels.append(("map", tuple(shape)))
        lines.append(f"  spectra     {spectra.shape[0]} x {spectra.shape[1]} channels")
    if not panels:
        lines.append("  (no survey image or spectra to draw)")

    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 4.5))
    axes = np.atleast_1d(axes)
    for ax, (kind, ref) in zip(axes, panels):
        if kind == "image":
            stream, key = ref
            stack = np.asarray(run[stream][key].read())
            image = stack.reshape(-1, *stack.shape[-2:])[-1]
            ax.imshow(image, cmap="gray")
            ax.set_title(f"{key} ({stream})")
            if positions is not None and len(positions):
                ax.scatter(positions[:, 0], positions[:, 1], s=6, c="tab:orange", label="spectra")
                ax.legend(loc="upper right", fontsize=8)
            pixel = _configuration_value(run, stream, "scan-pixel_size")
            if pixel:
                ax.set_xlabel(f"x (px; {pixel:.4g} nm/px)")
            ax.set_ylabel("y (px)")
        elif kind == "spectra":
            axis = _configuration_value(run, "primary", "eels-energy_axis")
            energy = (
                np.asarray(axis) if axis is not None else np.arange(spectra.shape[1], dtype=float)
            )
            ax.plot(energy, spectra.mean(axis=0), color="k", lw=1.5, label="mean")
            for i in np.linspace(0, len(spectra) - 1, min(5, len(spectra))).astype(int):
                ax.plot(energy, spectra[i], lw=0.6, alpha=0.7, label=f"#{i}")
            ax.set_yscale("log")
            ax.set_xlabel("energy loss (eV)" if axis is not None else "channel")
            ax.set_ylabel("counts")
            ax.set_title("EELS")
            ax.legend(fontsize=7)
        elif kind == "map":
            rows, cols = ref
            ax.imshow(spectra.sum(axis=1).reshape(rows, cols), cmap="viridis")
            ax.set_title("total intensity per position")
            ax.set_xlabel("column")
            ax.set_ylabel("row")
    fig.suptitle(f"{start.get('plan_name')} - scan {start.get('scan_id')} - {uid[:8]}")
    fig.tight_layout()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"run-{start.get('scan_id')}-{uid[:8]}.png"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return "\n".join(lines), png
