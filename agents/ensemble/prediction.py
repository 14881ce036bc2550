"""What the ensemble sees in one image: the :class:`Prediction` every other module shares.

Its own module, below everything that computes one (:mod:`.predict`) or uses one
(:mod:`.members`, :mod:`.elit`, :mod:`.agent`), so that imports in the package only go down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["UNCERTAINTY_METHODS", "Prediction"]

#: what an atom's ``uncertainty`` is: ``"calibrated"``, the probability that the atom is
#: false (a model fitted on twin images, :func:`agents.ensemble.calibrate_uncertainty`);
#: ``"variance"``, the members' variance averaged over its footprint (an ensemble that was
#: never calibrated)
UNCERTAINTY_METHODS = ("calibrated", "variance")


@dataclass
class Prediction:
    """What the ensemble sees in one image.

    Attributes:
        mean: ``(H, W)`` mean atom probability over the members, in [0, 1].
        variance: ``(H, W)`` variance of the members' probabilities (0 = full agreement,
            at most 0.25).
        atoms: ``(N, 2)`` atom positions ``(row, col)`` in pixels, sub-pixel (centroid of
            the atom's footprint weighted by the mean probability).
        probability: ``(N,)`` highest mean probability in each atom's footprint.
        uncertainty: ``(N,)`` how unsure the ensemble is of each atom: with
            ``uncertainty_method == "calibrated"`` the probability that it is not an atom
            (0-1), else the members' variance averaged over its footprint (0-0.25).
        area: ``(N,)`` footprint size in pixels.
        members: number of ensemble members that voted.
        evidence: per-atom evidence the uncertainty is made of, ``{name: (N,)}``
            (see :mod:`agents.ensemble.evidence`); empty when not computed.
        uncertainty_method: ``"calibrated"`` or ``"variance"`` (:data:`UNCERTAINTY_METHODS`).
    """

    mean: np.ndarray
    variance: np.ndarray
    atoms: np.ndarray
    probability: np.ndarray
    uncertainty: np.ndarray
    area: np.ndarray
    members: int
    evidence: dict[str, np.ndarray] = field(default_factory=dict)
    uncertainty_method: str = "variance"

    @property
    def xy(self) -> np.ndarray:
        """Atom positions as beam coordinates ``(x, y)`` = ``(col, row)``."""
        return self.atoms[:, ::-1].copy()

    @property
    def image_uncertainty(self) -> float:
        """Mean variance over the image: one number for "how unsure is the ensemble here"."""
        return float(self.variance.mean())

    def summary(self) -> dict[str, Any]:
        """Small JSON-able summary (counts and uncertainty statistics)."""
        unc = self.uncertainty
        return {
            "atoms": len(self.atoms),
            "members": int(self.members),
            "image_uncertainty": self.image_uncertainty,
            "uncertainty_method": self.uncertainty_method,
            "atom_uncertainty_median": float(np.median(unc)) if len(unc) else None,
            "atom_uncertainty_max": float(unc.max()) if len(unc) else None,
        }
