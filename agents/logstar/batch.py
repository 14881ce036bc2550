"""Independent LoG* optimisations, one after the other or in parallel on a Dask cluster.

A LoG* optimisation is sequential inside (each round of Bayesian optimisation waits for the
last), but separate optimisations are not: the windows of a sliding-window map
(:func:`~agents.logstar.windows.optimize_windows`) and a series of survey images optimised
each on its own (:func:`optimize_each`) are independent jobs. Given ``compute=``
(``"local"``, ``"local:N"``, a scheduler address or a ``distributed.Client``; see
:mod:`agents.compute`) they run one per Dask worker. Every job runs with the same torch and
BLAS threads (``num_threads``, 1 by default) wherever it runs, so the fronts are the same
as in one process.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..compute import fan_out
from .rewards import DEFAULT_MIN_SEPARATION, Reward

__all__ = ["optimize_each"]


def optimize_job(
    job: Tuple[np.ndarray, int],
    *,
    lattice: Any,
    pixel_size_nm: float,
    rewards: Optional[Sequence[Reward]],
    space: Any,
    min_separation: float,
    prepared: bool,
    run_kwargs: Dict[str, Any],
) -> Any:
    """One optimisation of one image (a job for :func:`agents.compute.fan_out`).

    ``job`` is ``(image, seed)``; returns the
    :class:`~agents.logstar.optimizer.OptimizationResult`.
    """
    from .optimizer import LoGStarOptimizer

    image, seed = job
    opt = LoGStarOptimizer(
        [image],
        lattice,
        pixel_size_nm,
        rewards=rewards,
        space=space,
        min_separation=min_separation,
        prepared=prepared,
    )
    return opt.run(seed=int(seed), **run_kwargs)


def run_jobs(
    jobs: Sequence[Tuple[np.ndarray, int]],
    lattice: Any,
    pixel_size_nm: float,
    *,
    rewards: Optional[Sequence[Reward]] = None,
    space: Any = None,
    min_separation: float = DEFAULT_MIN_SEPARATION,
    prepared: bool = False,
    compute: Any = None,
    **run_kwargs: Any,
) -> List[Any]:
    """Run ``(image, seed)`` optimisation jobs here or on a cluster; results in job order."""
    run_kwargs.setdefault("num_threads", 1)
    shared = {
        "lattice": lattice,
        "pixel_size_nm": float(pixel_size_nm),
        "rewards": rewards,
        "space": space,
        "min_separation": float(min_separation),
        "prepared": bool(prepared),
        "run_kwargs": run_kwargs,
    }
    return fan_out(optimize_job, list(jobs), compute=compute, shared=shared)


def optimize_each(
    images: Sequence[np.ndarray],
    lattice: Any,
    pixel_size_nm: float,
    budget: int = 48,
    seed: int = 0,
    *,
    compute: Any = None,
    rewards: Optional[Sequence[Reward]] = None,
    space: Any = None,
    min_separation: float = DEFAULT_MIN_SEPARATION,
    **run_kwargs: Any,
) -> List[Any]:
    """LoG* on each image on its own (image ``k`` with seed ``seed + k``): one front each.

    For a series of survey images whose optimum may differ (drift, thickness, dose); the
    joint optimisation over several images (one front for all) is
    :func:`~agents.logstar.optimizer.optimize_log`.

    Args:
        images: survey images (2-D arrays), prepared here.
        lattice, pixel_size_nm: the sample's lattice and the pixel size, nm (one for all).
        budget: trials per image.
        seed: seed of the first image.
        compute: ``None`` (here, one after the other) or a cluster (see :mod:`agents.compute`).
        rewards, space, min_separation: as for the optimiser (the space defaults to the
            lattice's spacing in pixels).
        run_kwargs: passed to :meth:`LoGStarOptimizer.run` (``n_initial``, ``batch_size``,
            ``num_threads``...).

    Returns:
        One :class:`~agents.logstar.optimizer.OptimizationResult` per image, in order.

    Example (two synthetic graphene frames, 8 trials each: the Sobol start only, instant; a
    real series wants 32 or more, and ``compute="local"`` runs them on a Dask cluster of
    this machine's cores, not run here):
        >>> from agents.logstar import get_lattice
        >>> from agents.logstar.batch import optimize_each
        >>> from agents.logstar.render import render_lattice
        >>> frames = [render_lattice(get_lattice("graphene"), (64, 64), 0.02, counts=200, seed=s)
        ...           for s in (0, 1)]
        >>> results = optimize_each(frames, "graphene", 0.02, budget=8)
        >>> [len(r.trials) for r in results]        # one optimisation, one front per frame
        [8, 8]
        >>> best = [r.front[0].params for r in results]
        >>> results = optimize_each(frames, "graphene", 0.02, budget=32,
        ...                         compute="local")                     # doctest: +SKIP
    """
    from .library import get_lattice
    from .params import SearchSpace
    from .scalespace import prepare_image

    lat = get_lattice(lattice)
    if space is None:
        space = SearchSpace.for_spacing(lat.nn_distance_px(pixel_size_nm))
    prepared = [prepare_image(im) for im in images]
    jobs = [(im, seed + k) for k, im in enumerate(prepared)]
    return run_jobs(
        jobs,
        lat,
        pixel_size_nm,
        rewards=rewards,
        space=space,
        min_separation=min_separation,
        prepared=True,
        compute=compute,
        budget=budget,
        **run_kwargs,
    )
