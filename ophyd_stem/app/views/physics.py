"""The physics-informed agents' panel: what the run learnt about the physics, step by step.

Every decision of a physics GP run (``agent="physics"``) reports the posterior of the edge
profile's parameters; every decision of a competing-hypotheses run (``agent="hypotheses"``)
reports each hypothesis' posterior probability. The adaptive figure adds one panel drawing
that history: the probabilities against the measurement (0-1), or the edge width and shift
(posterior mean and +-1 std, px) -- the physics the paper's "hypothesis learning" is about,
next to the maps that drove the decisions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.runs import RunData

__all__ = ["draw_physics", "physics_history"]

#: the edge profile's parameters drawn (both in px of the survey)
EDGE_PARAMETERS = ("edge_width", "edge_shift")


def _reports(data: RunData) -> list[dict[str, Any]]:
    return [r if isinstance(r, dict) else {} for r in data.decisions.get("reports") or []]


def physics_history(data: RunData) -> tuple[str, dict[str, np.ndarray]] | None:
    """``("hypotheses", {name: (N,) probability})``, ``("physics", {"edge_width": (N, 2)
    mean and std px, ...})``, or None for a run of another agent (or of one decision)."""
    reports = _reports(data)
    if len(reports) < 2:
        return None
    last = next((r for r in reversed(reports) if r.get("hypotheses")), None)
    if last is not None:
        series = {}
        for name in last["hypotheses"]:
            rows = [((r.get("hypotheses") or {}).get(name) or {}) for r in reports]
            series[name] = np.array([p.get("probability", np.nan) for p in rows], dtype=float)
        return "hypotheses", series
    if any(r.get("physics") for r in reports):
        series = {}
        for name in EDGE_PARAMETERS:
            rows = [((r.get("physics") or {}).get(name) or {}) for r in reports]
            series[name] = np.array(
                [[p.get("mean", np.nan), p.get("std", np.nan)] for p in rows], dtype=float
            )
        return "physics", series
    return None


def draw_physics(ax: Any, kind: str, series: dict[str, np.ndarray]) -> int:
    """Draw :func:`physics_history`'s result on ``ax``; returns the number of lines."""
    lines = 0
    if kind == "hypotheses":
        for name, p in series.items():
            ax.plot(np.arange(1, len(p) + 1), p, "-o", ms=3, label=name, gid=f"p:{name}")
            lines += 1
        ax.set_ylim(0, 1)
        ax.set_ylabel("posterior probability")
        final = {name: p[-1] for name, p in series.items() if np.isfinite(p[-1])}
        best = max(final, key=final.get) if final else "?"
        ax.set_title(f"competing hypotheses: {best} most probable "
                     f"(p = {final.get(best, np.nan):.2f})", fontsize=10)  # fmt: skip
    else:
        for name, values in series.items():
            mean, std = values[:, 0], values[:, 1]
            n = np.arange(1, len(mean) + 1)
            (line,) = ax.plot(n, mean, "-", label=name.replace("_", " "), gid=name)
            ax.fill_between(n, mean - std, mean + std, color=line.get_color(), alpha=0.2)
            lines += 1
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_ylabel("posterior, mean +- std (px)")
        ax.set_title("edge profile's physical parameters", fontsize=10)
    ax.set_xlabel("measurement")
    ax.legend(fontsize=7)
    return lines
