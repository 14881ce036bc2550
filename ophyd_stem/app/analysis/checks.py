"""A recorded decision compared with the replayed agent's (:class:`Check`), and the report of
them all (:class:`ForensicsReport`): what :mod:`.forensics` and the checks of
:mod:`.corrections` and :mod:`.latent` produce."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["POSITION_TOLERANCE", "Check", "ForensicsReport"]


#: positions closer than this (pixels) are the same decision
POSITION_TOLERANCE = 1e-6


@dataclass
class Check:
    """One comparison of a recorded decision with the replayed agent's.

    Attributes:
        step: the plan's step (image index for LoG*).
        what: ``"suggest"`` (the plan asked the agent), ``"resuggest"`` (asked again after
            the operator's veto or setting change), ``"points"``, ``"front"``, ``"choice"``
            or ``"atoms"``.
        recorded, replayed: the positions ``(N, 2)`` (or numbers) compared.
        match: True when they agree.
        distance: largest position difference, pixels (or relative difference of numbers).
    """

    step: int
    what: str
    recorded: Any
    replayed: Any
    match: bool
    distance: float = 0.0


@dataclass
class ForensicsReport:
    """The outcome of :func:`forensics`.

    Attributes:
        uid: the run.
        plan_name: its plan.
        agent: how the agent was rebuilt (class and settings).
        checks: every comparison, in order.
        interventions: interventions re-applied.
        value_error: largest relative difference between the recorded values and the
            scalarizer applied again to the recorded spectra (None when not checked).
        notes: what could not be checked, and why.
    """

    uid: str
    plan_name: str | None
    agent: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    interventions: int = 0
    value_error: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def matches(self) -> int:
        return sum(c.match for c in self.checks)

    @property
    def ok(self) -> bool:
        """True when every check matched (and there was something to check)."""
        return bool(self.checks) and self.matches == len(self.checks)

    @property
    def mismatches(self) -> list[Check]:
        return [c for c in self.checks if not c.match]

    def text(self) -> str:
        """A short report: the verdict, then a line per step."""
        lines = [
            f"forensics of {self.uid[:8]} ({self.plan_name}, agent {self.agent.get('class')}): "
            f"{self.matches} of {len(self.checks)} decisions match"
            + ("" if self.ok else "  <-- MISMATCH"),
            f"  interventions re-applied: {self.interventions}",
        ]
        if self.value_error is not None:
            lines.append(
                f"  values recomputed from the spectra: max relative error {self.value_error:.2g}"
            )
        for c in self.checks:
            mark = "ok " if c.match else "DIFF"
            lines.append(
                f"  {mark} step {c.step:3d} {c.what:9s} recorded {_short(c.recorded)}"
                + ("" if c.match else f"  replayed {_short(c.replayed)} (off by {c.distance:.3g})")
            )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "plan_name": self.plan_name,
            "agent": self.agent,
            "ok": self.ok,
            "matches": self.matches,
            "checks": len(self.checks),
            "interventions": self.interventions,
            "value_error": self.value_error,
            "mismatched_steps": sorted({c.step for c in self.mismatches}),
            "notes": self.notes,
        }


def _short(value: Any) -> str:
    arr = np.asarray(value, dtype=float) if not isinstance(value, str) else None
    if arr is None:
        return str(value)
    if arr.ndim == 2 and arr.shape[1] == 2:
        return ", ".join(f"({x:.1f}, {y:.1f})" for x, y in arr[:4]) + (
            " ..." if len(arr) > 4 else ""
        )
    return np.array2string(arr.ravel()[:6], precision=4)


def _xy(points: Any) -> np.ndarray:
    if len(points) == 0:
        return np.empty((0, 2))
    if isinstance(points[0], dict):
        return np.array([[p["x"], p["y"]] for p in points], dtype=float)
    return np.asarray(points, dtype=float).reshape(-1, 2)


def _compare(step: int, what: str, recorded: Any, replayed: Any) -> Check:
    a, b = _xy(recorded), _xy(replayed)
    if a.shape != b.shape:
        return Check(step, what, a, b, False, float("inf"))
    distance = float(np.max(np.abs(a - b))) if len(a) else 0.0
    return Check(step, what, a, b, distance <= POSITION_TOLERANCE, distance)
