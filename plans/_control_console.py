"""The operator's side of :class:`plans.control.OperatorControl`: the console methods, which
check an act and queue it (thread-safe, from the console's thread), and what the operator is
shown (the points pending approval, the LoG* front). The plan applies and records the queued
acts in the RunEngine's thread when it resumes (:mod:`plans.control`).
"""

import getpass
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

__all__ = ["MODES"]

MODES = ("free", "approve")


@dataclass
class _Action:
    kind: str
    who: str
    requested: float
    args: dict[str, Any] = field(default_factory=dict)


class _OperatorConsole:
    """The console methods of :class:`~plans.control.OperatorControl`, which sets the state
    they share with the plan side."""

    _mode: str
    operator: str
    _resolve: Optional[Callable[[str], Callable]]
    _lock: threading.Lock
    _queue: list[_Action]
    _pending: Optional[list[dict[str, Any]]]
    _front: Optional[dict[str, Any]]
    _asked: int

    @staticmethod
    def _check_mode(mode: str) -> str:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        return mode

    @property
    def mode(self) -> str:
        """``"free"`` or ``"approve"``."""
        return self._mode

    @property
    def pending(self) -> list[dict[str, Any]]:
        """The points waiting for approval, numbered as :meth:`veto` counts them (empty
        when nothing waits), with the operator's queued vetoes and additions applied."""
        with self._lock:
            if self._pending is None:
                return []
            points = [dict(p) for p in self._pending]
            for action in self._queue:
                points = _edit(points, action)
        return [{"index": i, **p} for i, p in enumerate(points)]

    @property
    def front_shown(self) -> Optional[dict[str, Any]]:
        """The LoG* front waiting for the operator's pick (``chosen``, ``front``), or None."""
        return self._front

    @property
    def asked(self) -> int:
        """How many times a plan has paused for the operator's decision (a remote client
        tells a new question from the one it answered)."""
        return self._asked

    @property
    def waiting(self) -> bool:
        """True while a plan waits for the operator's approval."""
        return self._pending is not None or self._front is not None

    def _queue_action(self, kind: str, who: Optional[str] = None, **args: Any) -> None:
        with self._lock:
            self._queue.append(_Action(kind, who or self.operator, time.time(), args))

    def approve(self, *, who: Optional[str] = None) -> list[dict[str, Any]]:
        """Approve the pending points (as :attr:`pending` shows them); ``RE.resume()``
        measures them. Returns them.

        Raises:
            RuntimeError: nothing is waiting for approval.
        """
        if not self.waiting:
            raise RuntimeError(
                "nothing waits for approval (in free mode the agent's points are measured at "
                "once: set_mode('approve') to review them)"
            )
        self._queue_action("approve", who)
        return self.pending

    def veto(self, *indices: int, who: Optional[str] = None) -> list[dict[str, Any]]:
        """Refuse pending points by their index in :attr:`pending` (none given: all).

        Vetoed points are not measured; if none is left, the agent is asked again (for other
        points) when the RunEngine resumes. Returns what is left.

        Raises:
            RuntimeError: nothing is waiting for approval.
            IndexError: an index that :attr:`pending` does not have.
        """
        if self._pending is None:
            raise RuntimeError("no points wait for approval; veto works in approve mode")
        current = self.pending
        chosen = list(range(len(current))) if not indices else [int(i) for i in indices]
        for i in chosen:
            if not 0 <= i < len(current):
                raise IndexError(f"no pending point {i}: pending are 0..{len(current) - 1}")
        points = [{k: v for k, v in current[i].items() if k != "index"} for i in chosen]
        self._queue_action("veto", who, indices=chosen, points=points)
        return self.pending

    def add(self, x: float, y: float, *, who: Optional[str] = None) -> list[dict[str, Any]]:
        """Measure ``(x, y)`` (pixels of the survey image: x = column, y = row) too: in
        approve mode with the pending points, in free mode at the next step.

        Raises:
            ValueError: positions that are not finite numbers.
        """
        x, y = float(x), float(y)
        if not (np.isfinite(x) and np.isfinite(y)):
            raise ValueError(f"positions must be finite numbers, got ({x}, {y})")
        self._queue_action("add", who, x=x, y=y)
        return self.pending

    def set_acquisition(
        self, name: Optional[str] = None, *, who: Optional[str] = None, **parameters: float
    ) -> None:
        """Change the agent's acquisition function or its exploration parameter, e.g.
        ``set_acquisition("ucb", beta=9)`` or ``set_acquisition(xi=0.1)``.

        Applied (and recorded) when the RunEngine resumes, before the agent is next asked;
        points already pending are asked for again unless approved in the same pause.
        """
        if name is None and not parameters:
            raise ValueError("give an acquisition name and/or its parameters (xi=, beta=)")
        for key, value in parameters.items():
            if not np.isfinite(float(value)):
                raise ValueError(f"{key} must be a finite number, got {value!r}")
        args = {"acquisition": None if name is None else str(name).lower(), **parameters}
        self._queue_action(
            "set_acquisition", who, **{k: v for k, v in args.items() if v is not None}
        )

    def set_scalarizer(
        self, scalarizer: Union[str, Callable], *, who: Optional[str] = None
    ) -> None:
        """Change what the agent maximises, e.g. ``set_scalarizer("band:5:15")``.

        Every spectrum measured so far is scalarized again and the agent relearns from the
        new values (recorded with the intervention); new spectra use it too.

        Raises:
            ValueError: an unknown scalarizer name (from ``agents.scalarizers``).
        """
        func = self._resolve_scalarizer(scalarizer)
        name = getattr(func, "__name__", repr(func))
        self._queue_action("set_scalarizer", who, name=name, func=func)

    def set_mode(self, mode: str, *, who: Optional[str] = None) -> None:
        """Switch between ``"free"`` and ``"approve"`` (applied when the RunEngine resumes)."""
        self._queue_action("set_mode", who, mode=self._check_mode(mode))

    def pick_front(
        self,
        index: Optional[int] = None,
        weight: Union[float, Sequence[float], None] = None,
        *,
        who: Optional[str] = None,
    ) -> None:
        """Pick a point of the LoG* Pareto front by index or by a weight between the rewards
        (1 = all on the first); applied to the current image and the next ones.

        Raises:
            ValueError: neither or both of index and weight.
        """
        if (index is None) == (weight is None):
            raise ValueError("give either index= or weight=")
        self._queue_action("pick_front", who, index=index, weight=weight)

    def _resolve_scalarizer(self, scalarizer: str | Callable) -> Callable:
        if callable(scalarizer):
            return scalarizer
        resolve = self._resolve
        if resolve is None:
            from agents.scalarizers import get_scalarizer  # numpy only; loaded when used

            resolve = get_scalarizer
        return resolve(str(scalarizer))

    def __repr__(self) -> str:
        waiting = f", {len(self.pending)} point(s) pending" if self._pending is not None else ""
        return f"OperatorControl(mode={self._mode!r}, operator={self.operator!r}{waiting})"


def _edit(points: list[dict[str, Any]], action: _Action) -> list[dict[str, Any]]:
    """``points`` after a queued veto or addition (other acts leave them as they are)."""
    if action.kind == "veto":
        gone = set(action.args["indices"])
        return [p for i, p in enumerate(points) if i not in gone]
    if action.kind == "add":
        return [*points, {"x": action.args["x"], "y": action.args["y"], "source": "operator"}]
    return points


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "operator"
