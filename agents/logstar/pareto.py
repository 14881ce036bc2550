"""The Pareto front as a choice: its points, and how an operator picks one.

Everything here is numpy only, so a console can show a front and record a choice without
loading the optimiser's torch stack.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .params import LoGParameters

__all__ = ["Choice", "ParetoPoint", "non_dominated", "pareto_front", "select_point"]


def non_dominated(values: np.ndarray) -> np.ndarray:
    """Mask of the rows no other row dominates (all objectives minimised).

    A row dominates another when it is no worse in every objective and better in one.
    Duplicated rows are all kept (neither dominates the other).

    Example:
        >>> non_dominated(np.array([[0.1, 0.5], [0.2, 0.2], [0.3, 0.3]])).tolist()
        [True, True, False]
    """
    y = np.asarray(values, dtype=float)
    if y.ndim != 2:
        raise ValueError(f"values must be (n_points, n_objectives), got shape {y.shape}")
    if len(y) == 0:
        return np.zeros(0, dtype=bool)
    no_worse = np.all(y[:, None, :] <= y[None, :, :], axis=2)  # [i, j]: i no worse than j
    better = np.any(y[:, None, :] < y[None, :, :], axis=2)
    dominated = np.any(no_worse & better, axis=0)
    return ~dominated


@dataclass
class ParetoPoint:
    """One non-dominated trial.

    Attributes:
        index: position on the front (sorted by the first reward, best first).
        params: the LoG parameters.
        rewards: reward name -> value (averaged over the optimised images).
        atoms: the atoms it finds, one ``(N, 3)`` ``(row, col, sigma)`` array per image.
        trial: number of the trial in the optimisation (0-based).
        ties: how many later trials earned exactly the same rewards (not listed).
    """

    index: int
    params: LoGParameters
    rewards: Dict[str, float]
    atoms: List[np.ndarray] = field(repr=False)
    trial: int = -1
    ties: int = 0

    def summary(self) -> Dict[str, Any]:
        """JSON-able, small: no atom positions, only their count per image."""
        return {
            "index": self.index,
            "trial": self.trial,
            "ties": self.ties,
            "params": self.params.as_dict(),
            "rewards": {k: float(v) for k, v in self.rewards.items()},
            "n_atoms": [len(a) for a in self.atoms],
        }


def pareto_front(
    params: Sequence[LoGParameters],
    values: np.ndarray,
    atoms: Sequence[List[np.ndarray]],
    names: Sequence[str],
) -> List[ParetoPoint]:
    """Build the front from all trials: the non-dominated ones, sorted by the first reward
    then the second. Trials with the very same rewards are one choice for the operator: the
    earliest stands for them (its ``ties`` counts the others).

    Args:
        params: parameters of every trial.
        values: ``(n_trials, n_rewards)`` reward values.
        atoms: per trial, the atoms per image.
        names: reward names, one per column of ``values``.
    """
    y = np.asarray(values, dtype=float)
    mask = non_dominated(y)
    idx = [int(i) for i in np.flatnonzero(mask)]
    idx.sort(key=lambda i: (*y[i].tolist(), i))
    points: List[ParetoPoint] = []
    by_value: Dict[tuple, ParetoPoint] = {}
    for i in idx:
        key = tuple(y[i].tolist())
        if key in by_value:
            by_value[key].ties += 1
            continue
        rewards = {str(n): float(v) for n, v in zip(names, y[i])}
        point = ParetoPoint(len(points), params[i], rewards, list(atoms[i]), trial=i)
        by_value[key] = point
        points.append(point)
    return points


@dataclass(frozen=True)
class Choice:
    """A recorded pick on the front: which point, how, by whom and when.

    Attributes:
        index: the picked point's index on the front.
        method: ``"index"`` (picked directly) or ``"weight"`` (best weighted sum).
        chooser: who chose (``"agent"`` for the automatic default, else the operator's name).
        weights: the reward weights used with ``method="weight"`` (normalised to sum 1).
        time: when, seconds since the epoch.
    """

    index: int
    method: str
    chooser: str
    weights: Optional[Dict[str, float]] = None
    time: float = 0.0

    def as_dict(self) -> Dict[str, Any]:
        """JSON-able form."""
        return {
            "index": self.index,
            "method": self.method,
            "chooser": self.chooser,
            "weights": dict(self.weights) if self.weights is not None else None,
            "time": self.time,
        }


def select_point(
    front: Sequence[ParetoPoint],
    index: Optional[int] = None,
    weight: Union[float, Sequence[float], None] = None,
    chooser: str = "operator",
) -> Choice:
    """Pick a point of the front by index, or by a weight between the rewards.

    With a ``weight`` the point minimising ``sum(w_m * normalised reward_m)`` wins; each
    reward is scaled to 0..1 over the front first, so the weight does not depend on the
    rewards' units. For two rewards a single number ``w`` means ``(w, 1 - w)``: ``w = 1``
    trusts QC alone (right number of atoms), ``w = 0`` ER alone (no atoms too close).
    Ties go to the lower index.

    Args:
        front: the Pareto points (as returned by the optimiser).
        index: pick this point (negative counts from the end).
        weight: a number in [0, 1] (two rewards) or one non-negative weight per reward.
        chooser: who chose, recorded with the choice.

    Raises:
        ValueError: empty front, both or neither of ``index``/``weight``, out-of-range index,
            bad weights.

    Example (a front of three points, made by hand; the optimiser's is ``result.front``):
        >>> from agents.logstar import LoGParameters, ParetoPoint, select_point
        >>> params = LoGParameters(min_sigma=1.5, max_sigma=3.0, threshold=0.05)
        >>> front = [ParetoPoint(i, params, {"quality_count": qc, "error_rate": er}, atoms=[])
        ...          for i, (qc, er) in enumerate([(0.01, 0.2), (0.05, 0.05), (0.2, 0.0)])]
        >>> choice = select_point(front, weight=0.7, chooser="jane")
        >>> choice.index, choice.method, choice.chooser
        (1, 'weight', 'jane')
        >>> select_point(front, weight=1.0).index, select_point(front, weight=0.0).index
        (0, 2)
    """
    if len(front) == 0:
        raise ValueError("the Pareto front is empty: run an optimisation first")
    if (index is None) == (weight is None):
        raise ValueError("give exactly one of index= or weight=")
    if not isinstance(chooser, str) or not chooser:
        raise ValueError("chooser must be a non-empty string")
    if index is not None:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ValueError(f"index must be an integer, got {index!r}")
        n = len(front)
        if not -n <= index < n:
            raise ValueError(f"index {index} is outside the front (0..{n - 1})")
        return Choice(int(index) % n, "index", chooser, None, time.time())
    names = list(front[0].rewards)
    if np.isscalar(weight):
        w = float(weight)  # type: ignore[arg-type]
        if len(names) != 2:
            raise ValueError(f"{len(names)} rewards: give one weight per reward, not a number")
        if not 0 <= w <= 1:
            raise ValueError(f"weight must lie in [0, 1], got {weight}")
        weights = np.array([w, 1 - w])
    else:
        weights = np.asarray(weight, dtype=float)
        if weights.shape != (len(names),):
            raise ValueError(f"need {len(names)} weights ({names}), got {weights.shape}")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError("weights must be finite, >= 0 and not all 0")
        weights = weights / weights.sum()
    y = np.array([[p.rewards[n] for n in names] for p in front], dtype=float)
    span = y.max(axis=0) - y.min(axis=0)
    scaled = (y - y.min(axis=0)) / np.where(span > 0, span, 1.0)
    score = scaled @ weights
    best = int(np.flatnonzero(score <= score.min() + 1e-12)[0])
    return Choice(
        best,
        "weight",
        chooser,
        {n: float(v) for n, v in zip(names, weights)},
        time.time(),
    )
