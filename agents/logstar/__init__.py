"""LoG*: reward-driven, unsupervised atom finding with a Pareto front the operator steers.

After Barakati et al., "Unsupervised reward-driven image segmentation in automated STEM"
(``../shared/seeds/004_*.txt``): the parameters of a Laplacian-of-Gaussian atom finder are
optimised by multi-objective Bayesian optimisation against physics-based rewards (right
number of atoms for the lattice, no two atoms closer than the lattice allows), no labels.

Modules, by job:

* :mod:`~agents.logstar.lattice` -- expected column density and spacing of a lattice;
* :mod:`~agents.logstar.library` -- the lattices of common materials and zone axes, by name;
* :mod:`~agents.logstar.params` -- one trial's parameters and the search box;
* :mod:`~agents.logstar.scalespace` -- the cached LoG scale space (identical to ``blob_log``);
* :mod:`~agents.logstar.rewards` -- QC, ER and the user-reward interface;
* :mod:`~agents.logstar.pareto` -- the front and the operator's choice (numpy only);
* :mod:`~agents.logstar.optimizer` -- botorch multi-objective BO (torch);
* :mod:`~agents.logstar.windows` -- sliding-window optimisation and stitching;
* :mod:`~agents.logstar.batch` -- independent optimisations (windows, a series of images),
  here or in parallel on a Dask cluster;
* :mod:`~agents.logstar.clustering` -- GMM classes of atoms, centroid/dispersion images;
* :mod:`~agents.logstar.plot` -- matplotlib figures;
* :mod:`~agents.logstar.calibration` -- the pixel size from the image's lattice reflections;
* :mod:`~agents.logstar.plausibility` -- do the atoms sit where the lattice puts them?
* :mod:`~agents.logstar.checks` -- the agent's per-image checks (pixel size, plausibility);
* :mod:`~agents.logstar.targets` -- the atoms the agent sends the beam to;
* :mod:`~agents.logstar.reporting` -- the agent's config, report, atom table and figures;
* :mod:`~agents.logstar.agent` -- :class:`LoGStarAgent`: optimise, choose, find and classify
  atoms (built from the three above).

Importing this package is cheap and torch-free; the names that need torch (the optimiser,
the agent) load on first access.

Example (a synthetic graphene survey with three heavy dopants; 8 trials, the Sobol start
alone, keep it instant: a survey at the microscope wants the default 40):
    >>> import numpy as np
    >>> from agents.logstar import LoGStarAgent, get_lattice
    >>> from agents.logstar.render import render_lattice
    >>> graphene = get_lattice("graphene")
    >>> image = render_lattice(graphene, (96, 96), 0.02, counts=200, seed=0)   # 0.02 nm/px
    >>> yy, xx = np.mgrid[:96, :96]
    >>> for row, col in [(9, 17), (34, 73), (44, 30)]:      # three heavy dopants, on columns
    ...     image += np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / 10.0)
    >>> agent = LoGStarAgent("graphene", pixel_size_nm=0.02, budget=8, target="outliers")
    >>> observed = agent.observe(image)          # optimises, picks the point at weight 0.5
    >>> point = agent.select(weight=0.8, chooser="jane")    # fewer missed atoms, please
    >>> [(s["x"], s["y"]) for s in agent.suggest(2)]        # the beam on two dopants
    [(17.0, 9.0), (73.0, 34.0)]
"""

from __future__ import annotations

import importlib
from typing import Any

from .lattice import Lattice, graphene, srtio3
from .library import LIBRARY, get_lattice, library_lattice, library_names
from .params import LoGParameters, SearchSpace
from .pareto import Choice, ParetoPoint, non_dominated, select_point
from .rewards import ErrorRate, QualityCount, RewardContext
from .scalespace import ImageScaleSpaces, ScaleSpace, blob_log_reference, prepare_image

__all__ = [
    "LIBRARY",
    "AtomClusters",
    "Choice",
    "ErrorRate",
    "ImageScaleSpaces",
    "Lattice",
    "LoGParameters",
    "LoGStarAgent",
    "LoGStarOptimizer",
    "OptimizationResult",
    "ParetoPoint",
    "QualityCount",
    "RewardContext",
    "ScaleSpace",
    "SearchSpace",
    "WindowMap",
    "apply_windows",
    "blob_log_reference",
    "cluster_atoms",
    "get_lattice",
    "graphene",
    "library_lattice",
    "library_names",
    "non_dominated",
    "optimize_each",
    "optimize_log",
    "optimize_windows",
    "prepare_image",
    "select_point",
    "sliding_windows",
    "srtio3",
]

# names whose modules import torch (or scikit-learn): loaded on first access
_LAZY = {
    "LoGStarAgent": ".agent",
    "LoGStarOptimizer": ".optimizer",
    "OptimizationResult": ".optimizer",
    "optimize_log": ".optimizer",
    "optimize_each": ".batch",
    "AtomClusters": ".clustering",
    "cluster_atoms": ".clustering",
    "WindowMap": ".windows",
    "apply_windows": ".windows",
    "optimize_windows": ".windows",
    "sliding_windows": ".windows",
}


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'agents.logstar' has no attribute {name!r}") from None
    return getattr(importlib.import_module(module, __name__), name)


def __dir__() -> list:
    return sorted(set(__all__) | set(globals()))
