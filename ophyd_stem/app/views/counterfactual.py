"""The counterfactual's figure: what was measured beside what another choice would have
measured, on the survey (``ophyd-stem replay RUN --counterfactual ALTERNATIVE``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.runs import RunData

from .decor import run_title, show_image

__all__ = ["draw_counterfactual"]


def draw_counterfactual(fig: Any, data: RunData, result: Any) -> Any:
    """Both trajectories on the survey: the recorded one (numbered in measuring order) and
    the alternative's, a dotted line from each recorded point to what the alternative
    chose at that step instead; returns the axes.

    Args:
        fig: the matplotlib figure to draw on.
        data: the run.
        result: its :class:`~ophyd_stem.app.analysis.counterfactual.CounterfactualResult`.
    """
    ax = fig.subplots()
    if data.survey_image is not None:
        show_image(fig, ax, data.survey_image, data.pixel_size)
    rec, alt = result.recorded, result.chosen[np.all(np.isfinite(result.chosen), axis=1)]
    trajectory = data.plan_name == "adaptive_eels"
    if trajectory:
        ax.plot(rec[:, 0], rec[:, 1], "-", color="tab:orange", lw=0.8)
        ax.plot(alt[:, 0], alt[:, 1], "--", color="tab:cyan", lw=0.8)
        label = "same step, other choice"  # once: the legend says what the dots join
        for (x0, y0), (x1, y1), same in zip(result.recorded, result.chosen, result.agree):
            if not same and np.isfinite(x1):
                ax.plot([x0, x1], [y0, y1], ":", color="w", lw=0.5, label=label)
                label = "_"
    ax.scatter(
        rec[:, 0],
        rec[:, 1],
        s=24,
        c="tab:orange",
        edgecolors="k",
        linewidths=0.4,
        label=f"recorded ({len(rec)})",
        gid="recorded",
    )
    ax.scatter(
        alt[:, 0],
        alt[:, 1],
        s=30,
        marker="x",
        c="tab:cyan",
        label=f"{result.alternative} ({len(alt)})",
        gid="alternative",
    )
    if trajectory:
        for i, (x, y) in enumerate(rec[:30]):
            ax.annotate(
                str(i + 1),
                (x, y),
                fontsize=6,
                color="tab:orange",
                xytext=(2, 2),
                textcoords="offset points",
            )
    if data.survey_image is not None:
        ax.set_xlim(-0.5, data.survey_image.shape[1] - 0.5)
        ax.set_ylim(data.survey_image.shape[0] - 0.5, -0.5)
    # white dots would vanish in a white legend box: a grey one, as the survey's
    ax.legend(loc="upper right", fontsize=8, facecolor="0.35", labelcolor="w")
    ax.set_title(run_title(data.start, f"recorded vs {result.alternative}", data.uid))
    return ax
