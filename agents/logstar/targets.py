"""Which atoms :class:`~agents.logstar.agent.LoGStarAgent` sends the beam to: the target
(the brightest class, the outliers far brighter than the lattice, any atom, or a class),
each atom's brightness, and the EELS positions at them, brightest first, each atom once per
image.

Kept apart from the agent's cycle (optimise, choose, find and classify atoms) so each stays
short.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, List, Optional, Union

import numpy as np
import scipy.ndimage as ndi

from ..base import Suggestion

if TYPE_CHECKING:  # scikit-learn: only the agent, loaded on first use, needs it
    from .clustering import AtomClusters

__all__ = ["OUTLIER_Z", "AtomTargets", "Target"]

Target = Union[str, int]

#: how far (in robust standard deviations: 1.4826 median absolute deviations) above the
#: median atom an atom must be to be an outlier. In the twin's default graphene image the Si
#: dopant stands 7.5 above the carbon atoms and the brightest carbon atom 3.0 (Z contrast:
#: (14/6)**1.7 = 4.2 times the scattering); the brightest *class* of the GMM, by contrast,
#: also holds tens of carbon atoms under contamination.
OUTLIER_Z = 5.0


class AtomTargets:
    """Mixin of :class:`~agents.logstar.agent.LoGStarAgent`: the atoms it suggests.

    Expects the current ``image`` (prepared), its ``atoms``, their ``clusters``, the agent's
    ``n_clusters`` and ``target``, and the ``_suggested`` atoms of this image on the agent.
    """

    image: Optional[np.ndarray]
    atoms: np.ndarray
    clusters: Optional[AtomClusters]
    n_clusters: int
    target: Target
    _suggested: set
    make_suggestion: Callable[..., Suggestion]

    # ------------------------------------------------------------------ the target

    def _check_target(self, target: Target) -> Target:
        if isinstance(target, str):
            if target not in ("brightest", "outliers", "all"):
                raise ValueError(
                    f"target must be 'brightest', 'outliers', 'all' or a class number: {target!r}"
                )
            return target
        if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            if not 0 <= int(target) < max(1, self.n_clusters):
                raise ValueError(f"class {target} does not exist ({self.n_clusters} classes)")
            return int(target)
        raise ValueError(
            f"target must be 'brightest', 'outliers', 'all' or a class number, got {target!r}"
        )

    # ------------------------------------------------------------------ suggestions

    def suggest(self, n: int = 1, target: Optional[Target] = None) -> List[Suggestion]:
        """EELS positions at atoms of the target class, brightest first, each atom once per
        image; fewer than ``n`` when the class runs out.

        Args:
            n: how many positions.
            target: overrides the agent's ``target`` (``"brightest"``, ``"all"``, a class).

        Returns:
            ``[{"_id", "x" (column), "y" (row), "atom", "cluster", "intensity"}, ...]``.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"n must be an integer >= 0, got {n!r}")
        if self.image is None:
            raise ValueError("no survey image yet: observe one first")
        tgt = self._check_target(target) if target is not None else self.target
        labels = self.clusters.labels if self.clusters is not None else None
        if tgt == "outliers":
            candidates = self.outliers()
        elif tgt == "all" or labels is None:
            candidates = np.arange(len(self.atoms))
        else:
            cls = self.clusters.brightest if tgt == "brightest" else int(tgt)  # type: ignore[union-attr]
            candidates = np.flatnonzero(labels == cls)
        candidates = np.array([i for i in candidates if int(i) not in self._suggested], dtype=int)
        if len(candidates) == 0 or n == 0:
            return []
        brightness = self._brightness()[candidates]
        order = np.argsort(-brightness, kind="stable")[: int(n)]
        out = []
        for k in order:
            i = int(candidates[k])
            self._suggested.add(i)
            out.append(
                self.make_suggestion(
                    float(self.atoms[i, 1]),
                    float(self.atoms[i, 0]),
                    atom=i,
                    cluster=int(labels[i]) if labels is not None else -1,
                    intensity=float(brightness[k]),
                )
            )
        return out

    def _brightness(self) -> np.ndarray:
        """Every atom's brightness: the image smoothed over a pixel, at the atom."""
        if self.image is None or not len(self.atoms):
            return np.empty(0)
        smooth = ndi.gaussian_filter(self.image, 1.0)
        r = np.clip(np.rint(self.atoms[:, 0]).astype(int), 0, self.image.shape[0] - 1)
        c = np.clip(np.rint(self.atoms[:, 1]).astype(int), 0, self.image.shape[1] - 1)
        return smooth[r, c]

    def outliers(self, z: float = OUTLIER_Z) -> np.ndarray:
        """Indices of the atoms far brighter than the lattice (robust z-score above ``z``):
        heavier atoms such as dopants. Empty when none stands out."""
        brightness = self._brightness()
        if len(brightness) < 3:
            return np.empty(0, dtype=int)
        median = np.median(brightness)
        spread = 1.4826 * np.median(np.abs(brightness - median))
        if spread <= 0:
            return np.empty(0, dtype=int)
        return np.flatnonzero((brightness - median) / spread > z)
