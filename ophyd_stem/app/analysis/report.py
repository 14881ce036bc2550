"""``ophyd-stem show``: a run summarised in a few lines, drawn in PNGs, kept as HTML.

Every run gets the overview figure (survey image with the measured positions, spectra, a
grid's map). Runs with decisions (``adaptive_eels``, ``edge_eels``, ``logstar``) also get
their workflow's figure, the same one the live view draws (:mod:`ophyd_stem.app.views`),
and the summary says what was decided: best value, decisions by source, the operator's
interventions, where the data is. The text and the figures go into one HTML page beside
the PNGs.
"""

from __future__ import annotations

import collections
import html
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["decision_summary", "run_report"]


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

    figures = [png]
    if start.get("plan_name") in ("adaptive_eels", "edge_eels", "logstar", "dcnn"):
        from agents.runs import unpack_run

        from ..views import render

        data = unpack_run(run)
        lines += decision_summary(data)
        workflow, _ = render(data, out_dir / f"run-{start.get('scan_id')}-{uid[:8]}-workflow.png")
        figures.append(workflow)
        lines.append(f"  workflow    {workflow}")
    lines += _where(run, image_ref)
    page = _write_html(out_dir / f"run-{start.get('scan_id')}-{uid[:8]}.html", lines, figures)
    lines.append(f"  summary     {page}")
    return "\n".join(lines), png


def decision_summary(data: Any) -> list[str]:
    """Lines on what a run decided: best value, decisions by source, interventions, atoms.

    Args:
        data: an unpacked run (:class:`agents.runs.RunData`).
    """
    lines = []
    values = data.values
    if len(values):
        best = int(np.argmax(values))
        sources = collections.Counter(data.decisions.get("source", []))
        lines.append(
            f"  best value  {values[best]:.5g} at ({data.decisions['x'][best]:.1f}, "
            f"{data.decisions['y'][best]:.1f}) px, measurement {best + 1} of {len(values)} "
            f"(step {int(data.decisions['step'][best])})"
        )
        lines.append(
            "  decisions   "
            + ", ".join(f"{n} {k}" for k, n in sorted(sources.items()))
            + f"; scalarizer {data.plan_args.get('scalarizer')}"
        )
    if len(data.edge_points):
        lines.append(f"  edge points {len(data.edge_points)} chosen along the edges")
    for record in data.logstar:
        lines.append(
            f"  LoG* image {record.get('image')}: {record.get('n_atoms')} atoms, front point "
            f"#{record.get('chosen')}" + (" (optimised)" if record.get("optimised") else "")
        )
    if data.interventions:
        acts = [iv for iv in data.interventions if iv.get("who") != "agent"]
        kinds = collections.Counter(iv.get("kind") for iv in acts)
        who = sorted({str(iv.get("who")) for iv in acts})
        lines.append(
            f"  operator    {len(acts)} intervention(s) by {', '.join(who) or '-'}: "
            + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        )
        for iv in acts:
            when = time.strftime("%H:%M:%S", time.localtime(iv.get("requested", iv["time"])))
            after = json.dumps(iv.get("after"))
            lines.append(
                f"    {when} step {iv.get('step')}: {iv.get('kind')} by {iv.get('who')} -> "
                + (after if len(after) <= 70 else after[:67] + "...")
            )
    return lines


def _where(run: Any, image_ref: tuple[str, str] | None) -> list[str]:
    """Where the run's data lives: the catalog entry and the image files."""
    lines = []
    uri = getattr(run, "uri", None)
    if uri:
        lines.append(f"  catalog     {uri}")
    if image_ref is not None:
        try:
            sources = run[image_ref[0]][image_ref[1]].data_sources()
            files = sorted({a.data_uri for ds in sources for a in ds.assets})
        except Exception:  # an older server or a run without files: nothing to add
            files = []
        for uri in files:
            lines.append(f"  image file  {uri.replace('file://localhost', '')}")
    return lines


def _write_html(path: Path, lines: list[str], figures: list[Path]) -> Path:
    images = "\n".join(
        f'<p><img src="{html.escape(f.name)}" style="max-width:100%"></p>' for f in figures
    )
    path.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>"
        + html.escape(lines[0])
        + "</title></head><body>\n<pre>"
        + html.escape("\n".join(lines))
        + "</pre>\n"
        + images
        + "\n</body></html>\n"
    )
    return path
