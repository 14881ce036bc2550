"""The one small interface every agent shares: ``ingest``, ``suggest``, ``report``.

An agent decides where to measure next. It is pure: numpy (and torch, inside the agents that
need it) in, beam positions out; it never imports bluesky, ophyd or the bridge, so the same
object runs in-process in a plan, in a notebook on recorded data, or behind a remote service.

Positions follow the project's convention: ``x`` = column, ``y`` = row, in pixels of the
survey image's scan field, floats.

The interface also satisfies bluesky-adaptive 1.0's ``Optimizer`` protocol *structurally*
(``suggest(num_points) -> Sequence[Mapping]`` with an ``"_id"`` per suggestion,
``ingest(points: Sequence[Mapping])``, ``get_best_points()``) without importing that package:

>>> import numpy as np
>>> from agents.edges import EdgeAgent
>>> survey = np.zeros((64, 64)); survey[:, 32:] = 1.0     # one straight interface
>>> agent = EdgeAgent(survey, budget=10)
>>> agent.suggest(2)
[{'_id': 0, 'x': 32.0, 'y': 1.0, ...}, {'_id': 1, 'x': 31.0, 'y': 8.0, ...}]
>>> agent.ingest([[32.0, 1.0]], [3.1])                    # arrays: positions and values
>>> agent.ingest([{"_id": 1, "x": 31.0, "y": 8.0, "value": 2.0}])   # Optimizer form
>>> agent.get_best_points()
[(0, {'x': 32.0, 'y': 1.0}, {'value': 3.1})]
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Agent", "Suggestion", "as_positions"]

#: A suggestion: ``{"_id": int, "x": float, "y": float, ...agent-specific extras}``
Suggestion = dict

#: key of the measured outcome in the mapping form of :meth:`Agent.ingest`
VALUE_KEY = "value"


def as_positions(x: Any) -> np.ndarray:
    """Coerce positions to a float64 ``(N, 2)`` array of ``(x, y)``.

    Raises:
        ValueError: if ``x`` cannot be read as ``(N, 2)`` finite numbers.
    """
    pts = np.asarray(x, dtype=np.float64)
    if pts.ndim == 1 and pts.shape[0] == 2:
        pts = pts[None, :]
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"positions must have shape (N, 2) as (x, y) pairs, got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("positions must be finite")
    return pts


class Agent(ABC):
    """Base class of all agents.

    Subclasses implement :meth:`_ingest` (arrays in), :meth:`suggest` and :meth:`report`.
    The base keeps every ingested measurement (``self.positions``, ``self.values``) so
    :meth:`get_best_points` and replay ("forensics") work the same for all agents.

    Example:
        >>> from agents.base import Agent
        >>> class Raster(Agent):
        ...     def suggest(self, n=1):
        ...         return [self.make_suggestion(float(i), 0.0) for i in range(n)]
        ...     def report(self):
        ...         return {"measured": len(self.values)}
        >>> raster = Raster()
        >>> raster.suggest(2)
        [{'_id': 0, 'x': 0.0, 'y': 0.0}, {'_id': 1, 'x': 1.0, 'y': 0.0}]
        >>> raster.ingest([[0.0, 0.0]], [1.5])
        >>> raster.report()
        {'measured': 1}
    """

    #: name stored with the run's decisions
    name = "agent"
    #: larger is better for get_best_points; set False for agents that minimise
    maximize = True

    def __init__(self) -> None:
        self.positions = np.empty((0, 2), dtype=np.float64)
        self.values = np.empty((0,), dtype=np.float64)
        #: positions whose measurement gave no number (NaN or infinite): not learned from
        self.unusable = np.empty((0, 2), dtype=np.float64)
        self._ids = itertools.count()

    # ------------------------------------------------------------------ ingest

    def ingest(self, x: Any, y: Any = None) -> None:
        """Tell the agent about new measurements.

        Args:
            x: positions ``(N, 2)`` (or one ``(x, y)`` pair); or, when ``y`` is omitted, a
                sequence of mappings with keys ``"x"``, ``"y"`` and ``"value"`` (the
                bluesky-adaptive ``Optimizer.ingest(points)`` form).
            y: measured values, one per position (a scalar per spectrum, after the
                scalarizer).

        On real recordings a spectrum can give no number: a dead or saturated read-out, a
        ratio over zero counts. Such a value (NaN or infinite) is not learned from, and
        would stop a run if it were refused: its position goes to :attr:`unusable` (the
        agent does not suggest it again) and the finite values of the same call are
        ingested as usual.

        Raises:
            ValueError: mismatched lengths, or positions the agent refuses (outside its
                image, say).
        """
        if y is None:
            if isinstance(x, Mapping):
                x = [x]
            if not isinstance(x, Sequence) or not all(isinstance(p, Mapping) for p in x):
                raise ValueError("ingest(x) without y expects a sequence of mappings")
            try:
                pos = [(float(p["x"]), float(p["y"])) for p in x]
                val = [float(p[VALUE_KEY]) for p in x]
            except KeyError as exc:
                raise ValueError(
                    f"each point needs 'x', 'y' and '{VALUE_KEY}': missing {exc}"
                ) from None
            x, y = pos, val
        pts = as_positions(x)
        vals = np.atleast_1d(np.asarray(y, dtype=np.float64))
        if vals.ndim != 1 or len(vals) != len(pts):
            raise ValueError(f"{len(pts)} positions but {vals.shape} values")
        self._check_positions(pts)
        usable = np.isfinite(vals)
        if not usable.all():
            self._ingest_unusable(pts[~usable])
            self.unusable = np.concatenate([self.unusable, pts[~usable]])
            pts, vals = pts[usable], vals[usable]
            if not len(vals):
                return
        self._ingest(pts, vals)
        self.positions = np.concatenate([self.positions, pts])
        self.values = np.concatenate([self.values, vals])

    def _ingest(self, positions: np.ndarray, values: np.ndarray) -> None:
        """Update the agent's model with new measurements (already validated)."""

    def _check_positions(self, positions: np.ndarray) -> None:
        """Refuse positions the agent cannot take (outside its image, say) before anything
        of the call is stored: raise ``ValueError``. Every position is accepted here."""

    def _ingest_unusable(self, positions: np.ndarray) -> None:
        """Positions measured without a usable value: mark them so they are not suggested
        again (agents that track what is left to measure override this)."""

    # ------------------------------------------------------------------ suggest

    @abstractmethod
    def suggest(self, n: int = 1) -> list[Suggestion]:
        """The next ``n`` positions to measure, best first.

        Each suggestion is a dict with ``"_id"``, ``"x"``, ``"y"`` and whatever the agent
        wants to record with its decision (acquisition value, predicted mean...).
        """

    def make_suggestion(self, x: float, y: float, **extra: Any) -> Suggestion:
        """Build one suggestion with a fresh ``_id``."""
        return {"_id": next(self._ids), "x": float(x), "y": float(y), **extra}

    # ------------------------------------------------------------------ report

    @abstractmethod
    def report(self) -> dict[str, Any]:
        """What the agent believes now: small, JSON-able, stored with the run."""

    def config(self) -> dict[str, Any]:
        """The settings this agent was made with, JSON-able: what a replay needs to build
        the same agent again (forensics). Default: the public attributes that are plain
        numbers, strings, booleans or None; agents with more to say override it."""
        plain = (bool, int, float, str, type(None))
        return {
            k: v for k, v in vars(self).items() if not k.startswith("_") and isinstance(v, plain)
        }

    def get_best_points(self) -> list[tuple[Any, dict, dict]]:
        """The best measurement so far, as bluesky-adaptive's ``(id, parameters, outcomes)``."""
        if len(self.values) == 0:
            return []
        i = int(np.argmax(self.values) if self.maximize else np.argmin(self.values))
        x, y = self.positions[i]
        return [(i, {"x": float(x), "y": float(y)}, {VALUE_KEY: float(self.values[i])})]
