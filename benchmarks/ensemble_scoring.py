"""Scoring for benchmarks/ensemble.py: F1 strict and edge-excluded, uncertainty against errors.

Matching rule (the same for every method): :func:`agents.metrics.match_atoms`, one-to-one
within half the median nearest-neighbour distance of the true atoms.

* **strict**: every found atom and every true atom counts;
* **edge-excluded**: unmatched found atoms and unmatched true atoms within 0.3 nearest-
  neighbour distances of the image edge are not counted (an atom cut by the edge is
  ambiguous for every method and for the truth alike; the reference atoms of G-Si-2nm stop
  5.8 px from its edge).

Uncertainty against errors: a found atom is *false* when it is unmatched (strict rule). Per
data set the atoms are cut into uncertainty quintiles (fifths by rank, pooled over the
images), and the false-atom rate of each fifth is reported, lowest uncertainty first, with the
median uncertainty of the false atoms over that of the true ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: unmatched atoms this close to the edge (in nearest-neighbour distances) are not counted
EDGE = 0.3
QUINTILES = 5


def score(found: np.ndarray, truth: np.ndarray, shape: tuple[int, int]) -> dict[str, Any]:
    """Strict and edge-excluded TP/FP/FN/F1 of one image, and which found atoms are false.

    Returns:
        ``{"strict": (tp, fp, fn), "edge": (tp, fp, fn), "false": (N,) bool (strict),
        "missed": true atoms missed (edge rule), "f1": edge-excluded F1}``.
    """
    from agents.ensemble import nearest_neighbour_distance
    from agents.metrics import match_atoms

    found = np.asarray(found, dtype=np.float64).reshape(-1, np.shape(found)[-1] or 2)[:, :2]
    truth = np.asarray(truth, dtype=np.float64)[:, :2]
    nn = nearest_neighbour_distance(truth)
    r = match_atoms(found, truth, 0.5 * nn)
    border = EDGE * nn
    limit = np.array(shape, dtype=np.float64) - 0.5 - border

    def inner(points: np.ndarray) -> np.ndarray:
        return np.all((points >= border - 0.5) & (points <= limit), axis=1)

    fp_idx = np.setdiff1d(np.arange(len(found)), r.pairs[:, 0])
    fn_idx = np.setdiff1d(np.arange(len(truth)), r.pairs[:, 1])
    fp = int(inner(found[fp_idx]).sum()) if len(fp_idx) else 0
    fn = int(inner(truth[fn_idx]).sum()) if len(fn_idx) else 0
    false = np.zeros(len(found), dtype=bool)
    false[fp_idx] = True
    missed = truth[fn_idx[inner(truth[fn_idx])]] if len(fn_idx) else np.empty((0, 2))
    edge = (r.tp, fp, fn)
    return {
        "strict": (r.tp, r.fp, r.fn),
        "edge": edge,
        "f1": f1(edge),
        "false": false,
        "missed": missed,
    }


def f1(counts: tuple[int, int, int] | np.ndarray) -> float:
    tp, fp, fn = (int(c) for c in counts)
    d = 2 * tp + fp + fn
    return 2 * tp / d if d else 1.0


@dataclass
class Tally:
    """Counts and per-atom uncertainty of one ensemble over a set of images."""

    strict: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=int))
    edge: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=int))
    uncertainty: list[np.ndarray] = field(default_factory=list)
    false: list[np.ndarray] = field(default_factory=list)
    images: int = 0

    def add(self, s: dict[str, Any], uncertainty: np.ndarray) -> None:
        self.strict += s["strict"]
        self.edge += s["edge"]
        self.uncertainty.append(np.asarray(uncertainty, dtype=np.float64))
        self.false.append(s["false"])
        self.images += 1

    def stats(self) -> dict[str, Any]:
        """F1 strict and edge-excluded, FP/TP median uncertainty, false rate by quintile."""
        unc = np.concatenate(self.uncertainty) if self.uncertainty else np.empty(0)
        false = np.concatenate(self.false) if self.false else np.empty(0, dtype=bool)
        return {
            "f1_strict": f1(self.strict),
            "f1_edge": f1(self.edge),
            "strict": tuple(int(v) for v in self.strict),
            "edge": tuple(int(v) for v in self.edge),
            "ratio": median_ratio(unc, false),
            "quintiles": quintiles(unc, false),
            "auroc": auroc(unc, false),
        }


def median_ratio(uncertainty: np.ndarray, false: np.ndarray) -> float:
    """Median uncertainty of the false atoms over that of the true ones."""
    if not false.any() or false.all():
        return float("nan")
    true_median = float(np.median(uncertainty[~false]))
    return float(np.median(uncertainty[false])) / true_median if true_median > 0 else float("inf")


def quintiles(uncertainty: np.ndarray, false: np.ndarray) -> list[tuple[float, float, int, float]]:
    """``(low, high, atoms, false rate)`` per fifth of the atoms by uncertainty rank (ties
    broken by order, so every fifth holds a fifth of the atoms even where many share a
    value)."""
    n = len(uncertainty)
    if n == 0:
        return []
    order = np.argsort(uncertainty, kind="stable")
    out = []
    for part in np.array_split(order, QUINTILES):
        if len(part):
            u = uncertainty[part]
            out.append((float(u.min()), float(u.max()), len(part), float(false[part].mean())))
    return out


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a false atom has a higher uncertainty than a true one."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def variance_at(variance: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The members' variance at positions (nearest pixel): how unsure the ensemble was at
    atoms it missed."""
    if len(points) == 0:
        return np.empty(0)
    h, w = variance.shape
    r = np.clip(np.rint(points[:, 0]).astype(int), 0, h - 1)
    c = np.clip(np.rint(points[:, 1]).astype(int), 0, w - 1)
    return variance[r, c].astype(np.float64)
