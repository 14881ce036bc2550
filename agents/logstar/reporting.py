"""What :class:`~agents.logstar.agent.LoGStarAgent` tells: its settings, its small JSON-able
report (the front, the choices, where the pixel size came from, whether the atoms are
plausible), the atoms as a table for a run's own stream, and its figures.

Kept apart from the agent's cycle (optimise, choose, find and classify atoms) so each stays
short.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import numpy as np

from ..contrast import ContrastDecision
from .lattice import Lattice
from .params import LoGParameters
from .pareto import Choice, ParetoPoint
from .plausibility import Plausibility

if TYPE_CHECKING:  # torch and scikit-learn: only the agent, loaded on first use, needs them
    from .clustering import AtomClusters
    from .optimizer import OptimizationResult
    from .windows import WindowMap

__all__ = ["LoGStarReport"]


class LoGStarReport:
    """Mixin of :class:`~agents.logstar.agent.LoGStarAgent`: config, report, table, figures.

    Expects the agent's state (``lattice``, ``result``, ``choice``, ``choices``, ``params``,
    ``image``, ``atoms``, ``clusters``, ``window_map``...) and ``outliers()``.
    """

    name: str
    lattice: Lattice
    pixel_size_nm: Optional[float]
    image_pixel_size_nm: Optional[float]
    pixel_size_info: Dict[str, Any]
    plausibility: Optional[Plausibility]
    contrast: str
    contrast_decision: Optional[ContrastDecision]
    result: Optional[OptimizationResult]
    choice: Optional[Choice]
    choices: List[Dict[str, Any]]
    params: Optional[LoGParameters]
    optimisations: int
    window_map: Optional[WindowMap]
    window_mode: Optional[str]
    images_seen: int
    image: Optional[np.ndarray]
    atoms: np.ndarray
    clusters: Optional[AtomClusters]
    target: Any
    values: np.ndarray
    _suggested: set
    front: List[ParetoPoint]
    outliers: Callable[..., np.ndarray]

    # ------------------------------------------------------------------ tables and reports

    def atoms_table(self) -> Dict[str, np.ndarray]:
        """The current image's atoms as columns, for a run's own stream: ``row``, ``col``,
        ``sigma`` (pixels) and ``cluster`` (-1 when not classified)."""
        n = len(self.atoms)
        cluster = self.clusters.labels if self.clusters is not None else np.full(n, -1)
        return {
            "row": self.atoms[:, 0].astype(float) if n else np.empty(0),
            "col": self.atoms[:, 1].astype(float) if n else np.empty(0),
            "sigma": self.atoms[:, 2].astype(float) if n else np.empty(0),
            "cluster": np.asarray(cluster, dtype=int),
        }

    def config(self) -> Dict[str, Any]:
        """The constructor's plain settings (as :meth:`Agent.config`), with
        ``pixel_size_nm="fft"`` when the pixel size is to come from each image."""
        out = super().config()
        if out.pop("pixel_size_from_fft", False):
            out["pixel_size_nm"] = "fft"
        return out

    def report(self) -> Dict[str, Any]:
        """Small and JSON-able: the lattice, the front (no atom positions), the chosen
        point, who chose it and how, every choice so far, the current image's counts, and
        the contrast (asked, decided, why: :meth:`ContrastDecision.as_dict`)."""
        chosen = None
        if self.choices:
            chosen = dict(self.choices[-1])
        return {
            "agent": self.name,
            "lattice": self.lattice.as_dict(),
            "pixel_size_nm": self.image_pixel_size_nm or self.pixel_size_nm,
            "pixel_size": dict(self.pixel_size_info),
            "plausibility": self.plausibility.as_dict() if self.plausibility else None,
            "contrast": (
                self.contrast_decision.as_dict()
                if self.contrast_decision is not None
                else {"asked": self.contrast, "contrast": None}
            ),
            "reward_names": list(self.result.reward_names) if self.result else [],
            "front": [p.summary() for p in self.front],
            "chosen": chosen,
            "choices": [dict(c) for c in self.choices],
            "params": self.params.as_dict() if self.params is not None else None,
            "optimisations": self.optimisations,
            "optimisation": (
                {
                    "n_trials": len(self.result.trials),
                    "timings_s": {k: round(float(v), 4) for k, v in self.result.timings.items()},
                    "space": self.result.space.as_dict(),
                }
                if self.result is not None
                else None
            ),
            "windows": self.window_map.summary() if self.window_map is not None else None,
            "window_mode": self.window_mode,
            "images_seen": self.images_seen,
            "n_atoms": len(self.atoms),
            "clusters": self.clusters.summary() if self.clusters is not None else None,
            "target": self.target,
            "outliers": len(self.outliers()),
            "suggested": len(self._suggested),
            "measured": len(self.values),
        }

    # ------------------------------------------------------------------ figures

    def plot_selection(self) -> Any:
        """The front (choice highlighted) beside the atoms of the chosen point over the
        current image (a matplotlib Figure)."""
        from .plot import plot_selection

        if self.result is None or self.image is None:
            raise ValueError("nothing to plot yet: observe a survey image first")
        return plot_selection(
            self.image,
            self.front,
            self.choice.index if self.choice is not None else None,
            atoms=self.atoms,
            all_values=self.result.values,
            params=self.params,
        )

    def plot_clusters(self) -> Any:
        """Classes over the image, PCA scatter, centroid and dispersion images."""
        from .plot import plot_clusters

        if self.clusters is None or self.image is None:
            raise ValueError("no classes yet: observe a survey image with n_clusters >= 2")
        return plot_clusters(self.image, self.atoms, self.clusters)
