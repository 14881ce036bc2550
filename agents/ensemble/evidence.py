"""What the ensemble knows about each atom it found: the evidence its uncertainty is made of.

The variance across members, averaged over an atom's footprint, ranks the ensemble's mistakes
on images like its training images, but not on real ones: on a real graphene image every
member, taught by the same twin, sees the same faint blob of noise at a hollow site as an
atom, so the members *agree* on their mistakes (false and true atoms had the same median
variance). What differs there is how much of an atom the members see: a false atom is a
smaller, fainter, lumpier blob than the image's real atoms, and often sits implausibly close
to one. So each atom gets seven numbers, all from the members' probability maps:

==============  ===========================================================================
``variance``    log10 of the members' variance averaged over the footprint (the old
                uncertainty): do the members disagree, pixel by pixel?
``spread``      standard deviation over members of ``fraction``: do they disagree on
                whether there is an atom at all?
``scatter``     RMS distance of the members' centroids from their mean, in atom radii: do
                they place it at the same spot?
``fraction``    the fraction of a whole atom the members see there, on average: their
                probability summed over a disc of the image's typical atom radius, divided
                by the disc's area (1: a full atom, 0.3: a speck)
``size``        footprint area over the median footprint of the image's confident atoms
``probability`` highest mean probability in the footprint
``spacing``     distance to the nearest other atom over the image's median nearest-neighbour
                distance, at most 1 (physical plausibility: two atoms rarely sit closer than
                their lattice allows)
==============  ===========================================================================

All but ``variance`` and ``probability`` are relative to the image's own atoms, so they mean
the same at any sampling. :class:`AtomCalibration` turns them into one number, the probability
that the atom is false, fitted on twin images whose truth is known (see :mod:`.calibration`).

Two rules also decide which atoms are reported at all:

* **plausibility**: of two atoms closer than ``min_spacing`` times the image's median
  nearest-neighbour distance (0.6 by default: half a bond is a bridge site, not an atom), only
  the one the members see more of is kept;
* **whole atoms**: an atom whose centre lies within one atom radius of the image edge is cut
  by the edge: its centroid is pulled inwards and a beam put there may fall beside it, so it is
  not reported (``exclude_edge``).

Positions are ``(row, col)`` pixels, ``(0, 0)`` the centre of the top-left pixel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "EVIDENCE",
    "AtomCalibration",
    "assess_atoms",
    "atom_evidence",
    "atom_radius",
    "inside_field",
    "plausible_atoms",
    "spacing",
    "typical_footprint",
]

#: names of the per-atom evidence, in the order :class:`AtomCalibration` reads them
EVIDENCE = ("variance", "spread", "scatter", "fraction", "size", "probability", "spacing")

#: probability above which an atom counts as confident (its footprint sets the typical atom)
CONFIDENT = 0.9
#: default ``min_spacing``: of two atoms closer than this fraction of the median
#: nearest-neighbour distance only one is kept (a bridge site sits at 0.5, bond lengths at
#: defects stay within ~20 % of the lattice's)
DEFAULT_MIN_SPACING = 0.6
#: floor of the variance before its log10 (identical members give exact zeros)
VARIANCE_FLOOR = 1e-6
#: most probability values :func:`atom_evidence` reads at once (16 MB of float32)
_WINDOW_VALUES = 4_000_000


def typical_footprint(area: np.ndarray, probability: np.ndarray) -> float:
    """The image's typical atom footprint in pixels: the median footprint of its confident
    atoms (of all its atoms when none is confident), at least 1 pixel."""
    area = np.asarray(area, dtype=np.float64)
    if len(area) == 0:
        return 1.0
    confident = area[np.asarray(probability) >= CONFIDENT]
    return max(1.0, float(np.median(confident if len(confident) else area)))


def atom_radius(area: np.ndarray, probability: np.ndarray) -> float:
    """The image's typical atom radius in pixels: that of a disc of the typical footprint
    (:func:`typical_footprint`), at least 1 pixel."""
    return max(1.0, float(np.sqrt(typical_footprint(area, probability) / np.pi)))


def atom_evidence(
    probs: np.ndarray,
    atoms: np.ndarray,
    area: np.ndarray,
    probability: np.ndarray,
    footprint_variance: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-atom evidence from the members' maps (all of :data:`EVIDENCE` but ``spacing``,
    which depends on which atoms are finally kept; see :func:`spacing`).

    Args:
        probs: ``(K, H, W)`` the members' atom probabilities.
        atoms: ``(N, 2)`` atom positions ``(row, col)``, pixels.
        area: ``(N,)`` footprint areas, pixels.
        probability: ``(N,)`` highest mean probability in each footprint.
        footprint_variance: ``(N,)`` members' variance averaged over each footprint.

    Returns:
        ``{name: (N,) array}``.
    """
    probs = np.asarray(probs, dtype=np.float32)
    atoms = np.asarray(atoms, dtype=np.float64).reshape(-1, 2)
    n, k = len(atoms), probs.shape[0]
    radius = atom_radius(area, probability)
    reach = int(np.ceil(radius))
    offsets = np.arange(-reach, reach + 1, dtype=np.float32)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    disc = ((dy * dy + dx * dx) <= radius * radius).astype(np.float32)
    # mirrored like the image border the members saw, so an atom at the edge reads its disc
    padded = np.pad(probs, ((0, 0), (reach, reach), (reach, reach)), mode="symmetric")
    h, w = probs.shape[1:]
    rows = np.clip(np.rint(atoms[:, 0]), 0, h - 1).astype(np.intp)
    cols = np.clip(np.rint(atoms[:, 1]), 0, w - 1).astype(np.intp)
    span = np.arange(2 * reach + 1)
    fractions = np.zeros((n, k))
    centroids = np.zeros((n, k, 2))
    # every atom's disc at once, in chunks of at most _WINDOW_VALUES values; C-contiguous,
    # so each disc sums in the order it did when the atoms were read one by one (same bits)
    chunk = max(1, _WINDOW_VALUES // (k * disc.size))
    for s in range(0, n, chunk):
        r = (rows[s : s + chunk, None] + span)[:, :, None]
        c = (cols[s : s + chunk, None] + span)[:, None, :]
        window = np.ascontiguousarray(padded[:, r, c]) * disc  # (K, atoms, 2 reach + 1, ...)
        mass = window.sum(axis=(2, 3))
        fractions[s : s + chunk] = (mass / disc.sum()).T
        safe = np.maximum(mass, 1e-6)
        centroids[s : s + chunk, :, 0] = ((window * dy).sum(axis=(2, 3)) / safe).T
        centroids[s : s + chunk, :, 1] = ((window * dx).sum(axis=(2, 3)) / safe).T
    if n:
        deviation = centroids - centroids.mean(axis=1, keepdims=True)
        scatter = np.sqrt((deviation**2).sum(axis=2).mean(axis=1)) / radius
    else:
        scatter = np.empty(0)
    return {
        "variance": np.log10(np.maximum(np.asarray(footprint_variance, float), VARIANCE_FLOOR)),
        "spread": fractions.std(axis=1),
        "scatter": scatter,
        "fraction": fractions.mean(axis=1),
        "size": np.asarray(area, dtype=np.float64) / typical_footprint(area, probability),
        "probability": np.asarray(probability, dtype=np.float64),
    }


def plausible_atoms(atoms: np.ndarray, score: np.ndarray, min_spacing: float | None) -> np.ndarray:
    """Which atoms to keep when two sit implausibly close: a boolean mask.

    Of two atoms closer than ``min_spacing`` times the median nearest-neighbour distance of
    all the atoms, the one with the lower ``score`` goes (greedily, best first). ``None`` or
    0 keeps every atom; fewer than three atoms are always kept (no lattice to judge by).
    """
    atoms = np.asarray(atoms, dtype=np.float64).reshape(-1, 2)
    if min_spacing is not None and min_spacing < 0:
        raise ValueError(f"min_spacing must be >= 0, got {min_spacing}")
    keep = np.ones(len(atoms), dtype=bool)
    if not min_spacing or len(atoms) < 3:
        return keep
    tree = cKDTree(atoms)
    d, _ = tree.query(atoms, k=2)
    limit = float(min_spacing) * float(np.median(d[:, 1]))
    for i in np.argsort(-np.asarray(score), kind="stable"):
        if not keep[i]:
            continue
        for j in tree.query_ball_point(atoms[i], limit):
            if j != i and keep[j]:
                keep[j] = False
    return keep


def inside_field(atoms: np.ndarray, shape: Sequence[int], margin: float) -> np.ndarray:
    """Atoms whose centre lies at least ``margin`` pixels inside the image: a boolean mask."""
    atoms = np.asarray(atoms, dtype=np.float64).reshape(-1, 2)
    low = margin - 0.5
    high = np.asarray(shape[:2], dtype=np.float64) - 0.5 - margin
    return np.all((atoms >= low) & (atoms <= high), axis=1)


def spacing(atoms: np.ndarray) -> np.ndarray:
    """Each atom's nearest-neighbour distance over the median one, at most 1 (all 1 below
    three atoms: no lattice to judge by)."""
    atoms = np.asarray(atoms, dtype=np.float64).reshape(-1, 2)
    if len(atoms) < 3:
        return np.ones(len(atoms))
    d, _ = cKDTree(atoms).query(atoms, k=2)
    median = float(np.median(d[:, 1]))
    if median <= 0:
        return np.ones(len(atoms))
    return np.minimum(1.0, d[:, 1] / median)


def assess_atoms(
    probs: np.ndarray,
    atoms: np.ndarray,
    probability: np.ndarray,
    footprint_variance: np.ndarray,
    area: np.ndarray,
    *,
    min_spacing: float | None = DEFAULT_MIN_SPACING,
    exclude_edge: bool = True,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Which found atoms to report, and the evidence about each of them.

    Args:
        probs: ``(K, H, W)`` the members' atom probabilities.
        atoms, probability, footprint_variance, area: the atoms found on the mean map
            (:func:`agents.ensemble.find_atoms`).
        min_spacing: see :func:`plausible_atoms` (``None``: keep close pairs).
        exclude_edge: drop atoms whose centre lies within one atom radius of the edge.

    Returns:
        ``(keep (N,) bool, {name: (M,) evidence of the M kept atoms})``, the evidence
        named in :data:`EVIDENCE`.
    """
    evidence = atom_evidence(probs, atoms, area, probability, footprint_variance)
    keep = plausible_atoms(atoms, evidence["fraction"], min_spacing)
    if exclude_edge and len(atoms):
        keep &= inside_field(atoms, probs.shape[1:], atom_radius(area, probability))
    evidence = {name: values[keep] for name, values in evidence.items()}
    evidence["spacing"] = spacing(np.asarray(atoms).reshape(-1, 2)[keep])
    return keep, evidence


@dataclass(frozen=True)
class AtomCalibration:
    """Logistic model: probability that a found atom is false, from its evidence.

    ``p = 1 / (1 + exp(-(intercept + sum(coef * (x - mean) / scale))))`` over the features
    ``x`` named in ``features``. Fitted by :func:`agents.ensemble.calibrate_uncertainty` on
    images whose truth is known (the twin's); stored in the ensemble's metadata.

    Attributes:
        features: evidence names (see :data:`EVIDENCE`), in the order of ``coef``.
        mean, scale: standardisation of each feature, as fitted.
        coef, intercept: the model on standardised features.
        fitted_on: what it was fitted on (images, atoms, false atoms, settings).
    """

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    fitted_on: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.features)
        unknown = set(self.features) - set(EVIDENCE)
        if unknown:
            raise ValueError(f"unknown evidence {sorted(unknown)}; known: {EVIDENCE}")
        if not (len(self.mean) == len(self.scale) == len(self.coef) == n):
            raise ValueError("features, mean, scale and coef must have the same length")
        if not all(s > 0 for s in self.scale):
            raise ValueError("scale must be > 0")

    def probability_false(self, evidence: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probability that each atom is false, ``(N,)`` in (0, 1)."""
        x = np.stack([np.asarray(evidence[f], dtype=np.float64) for f in self.features], axis=1)
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale) @ np.asarray(self.coef)
        return _sigmoid(z + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "fitted_on": dict(self.fitted_on),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AtomCalibration:
        try:
            return cls(
                tuple(d["features"]),
                tuple(float(v) for v in d["mean"]),
                tuple(float(v) for v in d["scale"]),
                tuple(float(v) for v in d["coef"]),
                float(d["intercept"]),
                dict(d.get("fitted_on", {})),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an atom calibration: {exc}") from None

    @classmethod
    def fit(
        cls,
        evidence: Mapping[str, np.ndarray],
        false: np.ndarray,
        features: Sequence[str] = EVIDENCE,
        *,
        l2: float = 1.0,
        fitted_on: Mapping[str, Any] | None = None,
    ) -> AtomCalibration:
        """Fit the model by maximum likelihood with a small L2 penalty (Newton's method).

        Args:
            evidence: ``{name: (N,)}`` for every name in ``features``.
            false: ``(N,)`` True where the atom is false (no true atom near it).
            features: which evidence to use.
            l2: ridge penalty on the standardised coefficients (not on the intercept).
            fitted_on: facts to keep with the model.

        Raises:
            ValueError: no false or no true atoms (nothing to learn from).
        """
        y = np.asarray(false, dtype=np.float64)
        x = np.stack([np.asarray(evidence[f], dtype=np.float64) for f in features], axis=1)
        if len(y) != len(x):
            raise ValueError(f"{len(x)} atoms of evidence but {len(y)} labels")
        if y.min(initial=1) == y.max(initial=0):
            raise ValueError("calibration needs both false and true atoms among the found ones")
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-12] = 1.0
        z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
        beta = np.zeros(z.shape[1])
        beta[0] = np.log(y.mean() / (1 - y.mean()))
        penalty = np.full(z.shape[1], float(l2))
        penalty[0] = 0.0

        def loss(b: np.ndarray) -> float:
            eta = z @ b  # negative log-likelihood, written to stay finite for any eta
            return float(np.sum(np.logaddexp(0.0, eta) - y * eta) + 0.5 * penalty @ (b * b))

        current = loss(beta)
        for _ in range(100):  # Newton's method, halving steps that do not lower the loss
            p = _sigmoid(z @ beta)
            grad = z.T @ (p - y) + penalty * beta
            hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
            step = np.linalg.solve(hess, grad)
            t = 1.0
            while t > 1e-6 and loss(beta - t * step) > current:
                t /= 2
            beta = beta - t * step
            previous, current = current, loss(beta)
            if previous - current < 1e-10 * max(1.0, abs(current)):
                break
        return cls(
            tuple(features),
            tuple(float(v) for v in mean),
            tuple(float(v) for v in scale),
            tuple(float(v) for v in beta[1:]),
            float(beta[0]),
            dict(fitted_on or {}),
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow warnings for large |x|."""
    return np.exp(-np.logaddexp(0.0, -x))
