"""What every figure of the project has, so a microscopist can read it at a glance.

* a **scale bar** in nm on every image and map (never pixel ticks: a person reads distances
  from the bar, as on the microscope's own screen);
* a **colour bar with units** beside every quantitative map;
* **panels only when they hold something** (a figure is laid out from the panels it has).

:func:`figure_problems` checks a drawn figure against these rules; the tests hold every
workflow figure and ``ophyd-stem show``'s overview to it.

Artists are tagged with ``gid`` (``"scalebar"``, ``"map:<what>"``, ``"survey"``) so the checks
can tell a survey image (grey, no colour bar needed) from a map (a quantity, colour bar
required).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "TITLE_ROOM",
    "add_colorbar",
    "add_scale_bar",
    "figure_problems",
    "nice_length",
    "panel_grid",
    "run_title",
    "show_image",
    "survey_name",
]


#: ``tight_layout(rect=...)`` that leaves room for the figure's title above the panels
TITLE_ROOM = (0.0, 0.0, 1.0, 0.95)


def run_title(start: Any, what: str = "", uid: str | None = None) -> str:
    """A figure's title: which run (plan, sample, scan id, uid) and what the figure shows,
    so a PNG mailed on its own still says what it is.

    Args:
        start: the run's start document (``plan_name``, ``sample``, ``scan_id``, ``uid``).
        what: what the figure shows, after a colon; empty: nothing.
        uid: the run's uid when ``start`` lacks it.

    Example:
        >>> run_title({"plan_name": "spectrum_image", "sample": "nanowire", "scan_id": 1,
        ...            "uid": "639ba5b1-8387"}, "zero-loss alignment")
        'spectrum_image on nanowire - scan 1 - 639ba5b1: zero-loss alignment'
    """
    sample = start.get("sample")
    title = (
        f"{start.get('plan_name')}" + (f" on {sample}" if sample else "")
        + f" - scan {start.get('scan_id')} - {str(uid or start.get('uid', ''))[:8]}"
    )  # fmt: skip
    return f"{title}: {what}" if what else title


def nice_length(field_nm: float, fraction: float = 0.2) -> float:
    """A round length (1, 2 or 5 x 10^k nm) close to ``fraction`` of the field of view."""
    target = max(float(field_nm) * fraction, 1e-6)
    decade = 10 ** math.floor(math.log10(target))
    for step in (5, 2, 1):
        if step * decade <= target:
            return step * decade
    return decade


def _length_label(nm: float) -> str:
    if nm >= 1000:
        return f"{nm / 1000:g} µm"
    return f"{nm:g} nm"


def add_scale_bar(ax: Any, pixel_size_nm: float | None, width_px: float | None = None) -> Any:
    """A scale bar (white on a dark outline, lower left) on an image drawn in pixel units.

    Args:
        ax: axes whose data coordinates are survey pixels.
        pixel_size_nm: nm per pixel; without it the axes keep pixel ticks and say so.
        width_px: the image width, px (default: the axes' x range).

    Returns:
        The scale bar artist, or None when the pixel size is not known or the image is a
        strip less than an eighth as tall as wide (a line scan: the x label says the scale).
    """
    from matplotlib import patheffects
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    if not pixel_size_nm or not np.isfinite(pixel_size_nm) or pixel_size_nm <= 0:
        ax.set_xlabel("x (px; pixel size not recorded)")
        ax.set_ylabel("y (px)")
        return None
    if width_px is None:
        lo, hi = ax.get_xlim()
        width_px = abs(hi - lo)
    bottom, top = ax.get_ylim()
    if abs(top - bottom) < width_px / 8:
        # a line scan's strip (10 x 1 positions): a bar and its label would cover it
        ax.set_xlabel(
            f"scale: {_length_label(float(f'{width_px * pixel_size_nm:.3g}'))} across "
            f"({pixel_size_nm:.3g} nm/px)",
            fontsize=8,
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return None
    length_nm = nice_length(width_px * pixel_size_nm)
    bar = AnchoredSizeBar(
        ax.transData,
        length_nm / pixel_size_nm,
        _length_label(length_nm),
        "lower left",
        pad=0.4,
        color="white",
        frameon=False,
        size_vertical=max(width_px / 100, 0.5),
        label_top=True,
        fontproperties={"size": 8, "weight": "bold"},
    )
    outline = [patheffects.withStroke(linewidth=2, foreground="black")]
    bar.txt_label._text.set_path_effects(outline)
    for patch in bar.size_bar.get_children():
        patch.set_path_effects([patheffects.withStroke(linewidth=1.5, foreground="black")])
    bar.set_gid("scalebar")
    ax.add_artist(bar)
    ax.set_xticks([])
    ax.set_yticks([])
    return bar


def add_colorbar(fig: Any, mappable: Any, ax: Any, label: str) -> Any:
    """A colour bar beside ``ax`` whose label says the quantity and its unit."""
    if not label:
        raise ValueError("a colour bar needs a label with the quantity and its unit")
    bar = fig.colorbar(mappable, ax=ax, shrink=0.8, pad=0.02)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return bar


def show_image(
    fig: Any,
    ax: Any,
    image: np.ndarray,
    pixel_size_nm: float | None,
    *,
    kind: str = "survey",
    cmap: str = "gray",
    label: str | None = None,
    extent: list[float] | None = None,
    width_px: float | None = None,
) -> Any:
    """An image or map with its scale bar (and, for a map, its colour bar).

    Args:
        kind: ``"survey"`` (a detector image: grey, no colour bar) or ``"map"`` (a
            quantity: ``label`` names it with its unit, e.g. ``"t/λ"``, ``"counts"``).
        extent: the image's extent in survey pixels, when it is sampled more coarsely.
        width_px: the field's width in survey pixels (default: the image's or extent's).
    """
    values = np.asarray(image, dtype=float)
    # the full range, as the detector gave it: a gold particle is bright, not clipped
    # a survey shrunk to the panel is smoothed (no moiré); a coarse map keeps its pixels
    interpolation = "antialiased" if kind == "survey" else "nearest"
    im = ax.imshow(values, cmap=cmap, extent=extent, interpolation=interpolation)
    im.set_gid("survey" if kind == "survey" else f"map:{label}")
    if width_px is None:
        width_px = abs(extent[1] - extent[0]) if extent is not None else float(values.shape[-1])
    add_scale_bar(ax, pixel_size_nm, width_px)
    if kind != "survey":
        add_colorbar(fig, im, ax, label or "")
    return im


def panel_grid(fig: Any, n: int, max_cols: int = 3) -> list[Any]:
    """``n`` axes on ``fig`` in rows of at most ``max_cols`` (four in one row: a 3 + 1
    layout would leave two holes); none left over."""
    n = max(int(n), 1)
    cols = n if n == 4 else min(n, max_cols)
    rows = math.ceil(n / cols)
    return [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def _has_content(ax: Any) -> bool:
    return bool(ax.images or ax.lines or ax.collections or ax.patches or ax.artists)


def _colorbar_problems(title: str, bar: Any) -> list[str]:
    if bar is None:
        return [f"{title!r}: colour-coded data without a colour bar"]
    if not bar.ax.get_ylabel() and not bar.ax.get_xlabel():
        return [f"{title!r}: colour bar without a label (quantity, unit)"]
    return []


def figure_problems(fig: Any) -> list[str]:
    """What in a drawn figure breaks the rules above (empty list: none).

    * every visible panel holds data (an image, lines, points, bars);
    * every image or map has a scale bar (``gid == "scalebar"``) unless its axes say the
      pixel size was not recorded, or say the scale below a strip (``"scale: ..."``);
    * every map (an image whose ``gid`` starts ``"map:"``) and every set of points coloured
      through a colour map has a colour bar whose label is not empty.
    """
    problems = []
    colorbar_axes = {id(ax._colorbar.ax) for ax in fig.axes if hasattr(ax, "_colorbar")}
    mapped = {}
    for ax in fig.axes:
        bar = getattr(ax, "_colorbar", None)
        if bar is not None:
            mapped[id(bar.mappable)] = bar
    for ax in fig.axes:
        if id(ax) in colorbar_axes or not ax.get_visible():
            continue
        title = ax.get_title() or "untitled panel"
        if not _has_content(ax):
            problems.append(f"{title!r}: empty panel")
            continue
        if ax.images:
            bars = [a for a in ax.artists if a.get_gid() == "scalebar"]
            said = ax.get_xlabel()  # (no pixel size; or a strip, its scale said below it)
            if not bars and "not recorded" not in said and not said.startswith("scale:"):
                problems.append(f"{title!r}: image without a scale bar")
        for im in ax.images:
            gid = im.get_gid() or ""
            if gid.startswith("map"):
                problems += _colorbar_problems(title, mapped.get(id(im)))
            elif gid != "survey":
                problems.append(f"{title!r}: image neither a survey nor a named map")
        for points in ax.collections:
            # points coloured through a colour map carry a quantity: they need its bar too
            if getattr(points, "get_array", lambda: None)() is not None:
                problems += _colorbar_problems(title, mapped.get(id(points)))
    return problems


def survey_name(signal: str | None) -> str:
    """How a figure names the survey: ``"HAADF survey"``; ``"survey"`` alone where the
    detector is not named (a recording that does not say serves it as ``"survey"``)."""
    return "survey" if not signal or signal == "survey" else f"{signal} survey"
