"""How atom-finding results are scored against ground truth: one rule for every method.

The second paper counts true positives (found atoms within a distance of a true atom), false
positives and false negatives. We make the matching *one-to-one* (two detections on one atom
count one TP and one FP), solved optimally with the Hungarian algorithm on the pairs closer
than ``max_distance``, so LoG*, ``blob_log`` and the U-Net ensemble are compared on the same
terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = ["MatchResult", "match_atoms", "score_atoms"]


@dataclass(frozen=True)
class MatchResult:
    """Outcome of matching found atoms to true atoms.

    Attributes:
        tp: found atoms matched to a true atom.
        fp: found atoms left unmatched (over-predictions).
        fn: true atoms left unmatched (missed atoms).
        pairs: ``(k, 2)`` indices ``(found, true)`` of the matched pairs.
        distances: ``(k,)`` distance of each matched pair, in the units of the inputs.
    """

    tp: int
    fp: int
    fn: int
    pairs: np.ndarray
    distances: np.ndarray

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall; 1.0 when both sets are empty."""
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 1.0

    def as_dict(self) -> dict[str, float]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def _as_points(a: np.ndarray, name: str) -> np.ndarray:
    pts = np.asarray(a, dtype=np.float64)
    if pts.size == 0:
        return np.empty((0, 2))
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f"{name} must have shape (N, 2) or (N, >2), got {pts.shape}")
    return pts[:, :2]


def match_atoms(found: np.ndarray, truth: np.ndarray, max_distance: float) -> MatchResult:
    """Match found atoms to true atoms one-to-one, maximising the number of matches within
    ``max_distance`` and, among those, minimising the total distance.

    Args:
        found: ``(N, 2)`` positions (extra columns, such as a blob's sigma, are ignored).
        truth: ``(M, 2)`` positions, same frame and units as ``found``.
        max_distance: largest distance that still counts as the same atom (for atom
            finding, a fraction of the nearest-neighbour distance of the lattice).

    Example:
        >>> r = match_atoms([[0, 0], [5, 5]], [[0.4, 0], [9, 9]], max_distance=1.0)
        >>> (r.tp, r.fp, r.fn)
        (1, 1, 1)
    """
    if max_distance <= 0:
        raise ValueError("max_distance must be > 0")
    f = _as_points(found, "found")
    t = _as_points(truth, "truth")
    empty = np.empty((0, 2), dtype=np.intp)
    if len(f) == 0 or len(t) == 0:
        return MatchResult(0, len(f), len(t), empty, np.empty(0))
    pairs = cKDTree(f).sparse_distance_matrix(cKDTree(t), max_distance, output_type="coo_matrix")
    if pairs.nnz == 0:
        return MatchResult(0, len(f), len(t), empty, np.empty(0))
    # Maximum cardinality first, then minimum total distance: give every candidate pair a
    # weight that rewards the match far more than any distance can cost. Distances of 0 are
    # shifted so the sparse matrix keeps them as edges.
    rows, cols, dist = pairs.row, pairs.col, pairs.data
    # Candidate pairs form a sparse bipartite graph whose connected components are tiny (a few
    # atoms each); solve each one exactly with the Hungarian algorithm. A non-edge costs more
    # than all real edges together, so the solution first maximises the number of matches,
    # then minimises their total distance.
    n, m = len(f), len(t)
    graph = coo_matrix((np.ones_like(dist), (rows, n + cols)), shape=(n + m, n + m))
    _, component = connected_components(graph, directed=False)
    edge_component = component[rows]
    order = np.argsort(edge_component, kind="stable")
    bounds = np.flatnonzero(np.diff(edge_component[order])) + 1
    matched_parts = []
    for group in np.split(order, bounds):
        r, c, d = rows[group], cols[group], dist[group]
        ur, ri = np.unique(r, return_inverse=True)
        uc, ci = np.unique(c, return_inverse=True)
        cost = np.full((len(ur), len(uc)), 1.0 + d.sum() * 2 + max_distance * len(d))
        cost[ri, ci] = d
        a, b = linear_sum_assignment(cost)
        ok = cost[a, b] <= max_distance
        matched_parts.append(np.stack([ur[a[ok]], uc[b[ok]]], axis=1))
    matched = np.concatenate(matched_parts).astype(np.intp) if matched_parts else empty
    d = np.linalg.norm(f[matched[:, 0]] - t[matched[:, 1]], axis=1)
    tp = len(matched)
    return MatchResult(tp, len(f) - tp, len(t) - tp, matched, d)


def score_atoms(
    found: np.ndarray, truth: np.ndarray, shape: tuple[int, int], fraction: float = 0.5
) -> MatchResult:
    """Score atoms found in one image against the truth, with the benchmarks' rule.

    One-to-one matching within ``fraction`` of the true atoms' median nearest-neighbour
    distance; an unmatched found or true atom within 0.3 nearest-neighbour distances of the
    image's edge is not counted (an atom cut by the edge is ambiguous for every method and
    for the truth alike). The command's "truth F1" after a twin run and the benchmarks'
    tables use this one rule, so they can be compared.

    Args:
        found: ``(N, 2+)`` positions, pixels, in the same order of axes as ``truth``.
        truth: ``(M, 2)`` true positions, pixels (those outside the image are dropped).
        shape: the image's shape (in the same order of axes as the positions).
        fraction: match distance as a fraction of the nearest-neighbour distance.
    """
    f = _as_points(found, "found")
    t = _as_points(truth, "truth")
    limit = np.asarray(shape, dtype=np.float64)
    t = t[np.all((t >= -0.5) & (t <= limit - 0.5), axis=1)]
    if len(t) < 2:
        return match_atoms(f, t, 1.0)
    d, _ = cKDTree(t).query(t, k=2)
    nn = float(np.median(d[:, 1]))
    result = match_atoms(f, t, fraction * nn)
    border = 0.3 * nn

    def inner(points: np.ndarray) -> np.ndarray:
        return np.all((points >= border - 0.5) & (points <= limit - 0.5 - border), axis=1)

    fp_idx = np.setdiff1d(np.arange(len(f)), result.pairs[:, 0])
    fn_idx = np.setdiff1d(np.arange(len(t)), result.pairs[:, 1])
    fp = int(inner(f[fp_idx]).sum()) if len(fp_idx) else 0
    fn = int(inner(t[fn_idx]).sum()) if len(fn_idx) else 0
    return MatchResult(result.tp, fp, fn, result.pairs, result.distances)
