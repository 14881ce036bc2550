"""Multi-objective Bayesian optimisation of the LoG parameters (botorch), returning a front.

The loop, kept lean because it runs between two survey images:

1. a scrambled Sobol start (``n_initial`` trials, 60 % of the budget by default: trials are
   cheap, BO rounds are not) over the :class:`SearchSpace` box;
2. then rounds of ``batch_size`` candidates: a two-output ``SingleTaskGP`` fitted to the
   rewards (hyper-parameters warm-started from the previous round, a few L-BFGS steps),
   and ``qLogExpectedHypervolumeImprovement`` maximised with few restarts and raw samples.
   The rewards are deterministic given the parameters, so the plain (not noisy) EHVI fits;
3. every trial's atoms come from the cached scale spaces (one per image and pre-filter),
   so a trial costs well under a millisecond on a 128² image;
4. the non-dominated trials form the front, each with its parameters, rewards and atoms.

Several images (e.g. ten 128² frames of one sample) are optimised jointly: a trial's reward
is the mean over the images.

The GP sees ``-log(reward + 0.02)`` of rewards clipped at 5: a monotone map, so the front is
the same, but the small values that matter (a QC of 0.02 against 0.05) are spread out and a
trial that finds thousands of noise blobs does not flatten the model.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from .lattice import Lattice
from .library import get_lattice
from .params import LoGParameters, SearchSpace
from .pareto import ParetoPoint, pareto_front
from .rewards import (
    DEFAULT_BORDER,
    DEFAULT_MIN_SEPARATION,
    Reward,
    RewardContext,
    default_rewards,
    evaluate_rewards,
    reward_name,
)
from .scalespace import ImageScaleSpaces, blob_log_reference, prepare_image

__all__ = ["LoGStarOptimizer", "OptimizationResult", "Trial", "optimize_log"]

#: rewards above this are "very bad" alike for the model
_REWARD_CLIP = 5.0
#: offset of the log transform: rewards below it count as "as good as zero"
_REWARD_FLOOR = 0.02


#: set to 1 to let botorch compile and use its fused C++ qLogEHVI kernel (see _botorch)
FUSED_KERNEL_ENV = "OPHYD_STEM_FUSED_LOGEHVI"


def _botorch() -> Any:
    """Import the botorch pieces the loop uses (once; later calls hit the module cache).

    torch 2.13 deprecates ``torch.jit.script``, which gpytorch's dependencies still call at
    import time; that warning is third-party noise, not ours to act on.

    botorch >= 0.18 compiles a fused C++ kernel for qLogEHVI the first time one is built
    (``-march=native``, into the user's shared torch_extensions cache, behind a lock file).
    That costs 20 s on a quiet 2-core machine and minutes on a busy one, in the middle of an
    experiment; every other process (Dask workers, a second console) waits on the lock, and
    a process killed while compiling leaves the lock behind so all later ones wait forever
    (this hung CI). The kernel saves about 0.6 s of a 40-trial run on a 128² image (2.2 s
    -> 1.5 s, measured), so botorch's pure-Python path is the default; set
    ``OPHYD_STEM_FUSED_LOGEHVI=1`` to opt in on a machine where the compile is paid once.
    """
    from types import SimpleNamespace

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*torch.jit.script.*", category=DeprecationWarning
        )
        from botorch.acquisition.multi_objective import logei as _logei
        from botorch.acquisition.multi_objective.logei import qLogExpectedHypervolumeImprovement
        from botorch.exceptions.warnings import InputDataWarning, OptimizationWarning
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from botorch.optim import optimize_acqf
        from botorch.sampling.normal import SobolQMCNormalSampler
        from botorch.utils.multi_objective.box_decompositions.non_dominated import (
            FastNondominatedPartitioning,
        )
        from gpytorch.mlls import ExactMarginalLogLikelihood
        from linear_operator.utils.warnings import NumericalWarning
    opted_in = os.environ.get(FUSED_KERNEL_ENV, "") == "1"
    if not opted_in and getattr(_logei, "_C", None) is None:
        # botorch's own switch: "loading was tried" makes it take the pure-Python path
        _logei._load_attempted = True
    return SimpleNamespace(
        InputDataWarning=InputDataWarning,
        OptimizationWarning=OptimizationWarning,
        NumericalWarning=NumericalWarning,
        qLogExpectedHypervolumeImprovement=qLogExpectedHypervolumeImprovement,
        fit_gpytorch_mll=fit_gpytorch_mll,
        SingleTaskGP=SingleTaskGP,
        Standardize=Standardize,
        optimize_acqf=optimize_acqf,
        SobolQMCNormalSampler=SobolQMCNormalSampler,
        FastNondominatedPartitioning=FastNondominatedPartitioning,
        ExactMarginalLogLikelihood=ExactMarginalLogLikelihood,
    )


@contextmanager
def torch_threads(n: Optional[int]) -> Iterator[None]:
    """Run with ``n`` torch and BLAS threads and restore the previous settings after.

    On small shared machines torch's default (all cores) oversubscribes: fits were measured
    20-50x slower. ``None`` leaves the setting alone.
    """
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"num_threads must be >= 1, got {n}")
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        # numpy/scipy's OpenBLAS too: the GP fit's small matrix calls ran 3-4x slower with
        # two BLAS threads fighting for two shared cores
        with threadpool_limits(limits=int(n)):
            yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class Trial:
    """One evaluated parameter set: its rewards (averaged over images) and atoms per image."""

    params: LoGParameters
    values: np.ndarray
    atoms: List[np.ndarray] = field(repr=False)
    stage: str = "sobol"


@dataclass
class OptimizationResult:
    """What an optimisation returns.

    Attributes:
        front: the Pareto points, sorted by the first reward.
        trials: every trial, in evaluation order.
        reward_names: names of the rewards (columns of every ``Trial.values``).
        space: the box searched.
        timings: seconds spent: ``scale_space`` (building slices), ``detect`` (trials),
            ``fit`` (GP fits), ``acquisition`` (maximising EHVI), ``total``.
        detector: ``"scale_space"`` (cached) or ``"blob_log"`` (plain, the baseline).
    """

    front: List[ParetoPoint]
    trials: List[Trial]
    reward_names: List[str]
    space: SearchSpace
    timings: Dict[str, float]
    detector: str = "scale_space"

    @property
    def values(self) -> np.ndarray:
        """``(n_trials, n_rewards)`` rewards of all trials."""
        return np.array([t.values for t in self.trials])

    def summary(self) -> Dict[str, Any]:
        """JSON-able and small: the front without atom positions, counts and timings."""
        return {
            "reward_names": list(self.reward_names),
            "n_trials": len(self.trials),
            "front": [p.summary() for p in self.front],
            "space": self.space.as_dict(),
            "timings": {k: float(v) for k, v in self.timings.items()},
            "detector": self.detector,
        }


class LoGStarOptimizer:
    """LoG* on one or several survey images of the same sample and calibration.

    Args:
        images: survey images (2-D arrays); they are prepared with
            :func:`~agents.logstar.scalespace.prepare_image` unless ``prepared=True``.
        lattice: the lattice the sample shows (a :class:`Lattice` or a name such as
            ``"graphene"`` or ``"SrTiO3:Sr,TiO"``).
        pixel_size_nm: pixel size of the images, nm (one number for all).
        rewards: rewards to minimise (default QC and ER); each
            ``callable(atoms, image, context) -> float``.
        space: the box to search (default scaled to the lattice spacing in pixels).
        min_separation: ER's distance as a fraction of the nearest-neighbour distance.
        border: edge band the rewards ignore, fraction of the nearest-neighbour distance.
        prepared: the images are already scaled to about 0..1 (skip preparation).
        detector: ``"scale_space"`` (cached, the default) or ``"blob_log"`` (plain
            ``skimage.feature.blob_log`` per trial; same results, slower: the baseline).

    Example (a synthetic graphene survey; 12 trials, 8 of them the Sobol start, then one BO
    round of 4: about a second, where a survey wants 48):
        >>> from agents.logstar import get_lattice
        >>> from agents.logstar.optimizer import LoGStarOptimizer
        >>> from agents.logstar.render import render_lattice
        >>> survey_image = render_lattice(get_lattice("graphene"), (96, 96), 0.02, counts=200)
        >>> opt = LoGStarOptimizer([survey_image], "graphene", pixel_size_nm=0.02)
        >>> result = opt.run(budget=12, seed=0)
        >>> len(result.trials), sorted(result.front[0].rewards)    # both rewards: lower is better
        (12, ['error_rate', 'quality_count'])
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        lattice: Any,
        pixel_size_nm: float,
        rewards: Optional[Sequence[Reward]] = None,
        space: Optional[SearchSpace] = None,
        min_separation: float = DEFAULT_MIN_SEPARATION,
        border: float = DEFAULT_BORDER,
        prepared: bool = False,
        detector: str = "scale_space",
    ) -> None:
        if isinstance(images, np.ndarray) and images.ndim == 2:
            images = [images]
        if len(images) == 0:
            raise ValueError("give at least one survey image")
        if detector not in ("scale_space", "blob_log"):
            raise ValueError(f"detector must be 'scale_space' or 'blob_log', got {detector!r}")
        self.lattice: Lattice = get_lattice(lattice)
        self.images = [
            np.asarray(im, dtype=float) if prepared else prepare_image(im) for im in images
        ]
        self.contexts = [
            RewardContext.build(self.lattice, pixel_size_nm, im.shape, min_separation, border)
            for im in self.images
        ]
        self.pixel_size_nm = float(pixel_size_nm)
        self.rewards: List[Reward] = list(rewards) if rewards is not None else default_rewards()
        if len(self.rewards) < 1:
            raise ValueError("give at least one reward")
        for r in self.rewards:
            if not callable(r):
                raise ValueError(f"a reward must be callable(atoms, image, context), got {r!r}")
        self.reward_names = [reward_name(r, m) for m, r in enumerate(self.rewards)]
        if len(set(self.reward_names)) != len(self.reward_names):
            raise ValueError(f"reward names must be unique, got {self.reward_names}")
        nn_px = self.contexts[0].nn_distance_px
        self.space = space if space is not None else SearchSpace.for_spacing(nn_px)
        self.detector = detector
        self.spaces = [ImageScaleSpaces(im, self.space.sigma_step) for im in self.images]
        self._cache: Dict[LoGParameters, Trial] = {}
        self.timings = {"scale_space": 0.0, "detect": 0.0, "fit": 0.0, "acquisition": 0.0}

    # ------------------------------------------------------------------ trials

    def detect(self, params: LoGParameters) -> List[np.ndarray]:
        """Atoms of every image for one parameter set (``(N, 3)`` ``(row, col, sigma)``)."""
        if self.detector == "blob_log":
            t0 = time.perf_counter()
            atoms = [blob_log_reference(im, params) for im in self.images]
            self.timings["detect"] += time.perf_counter() - t0
            return atoms
        t0 = time.perf_counter()
        first, last = params.sigma_indices
        for s in self.spaces:
            s.space(*params.prefilter_key).ensure(first, last)
        t1 = time.perf_counter()
        atoms = [s.detect(params) for s in self.spaces]
        self.timings["scale_space"] += t1 - t0
        self.timings["detect"] += time.perf_counter() - t1
        return atoms

    def evaluate(self, params: LoGParameters, stage: str = "manual") -> Trial:
        """Run one trial (cached: the same parameters are evaluated once)."""
        if params.sigma_step != self.space.sigma_step:
            raise ValueError(
                f"params sigma_step {params.sigma_step} differs from the search space's "
                f"{self.space.sigma_step}"
            )
        if params in self._cache:
            cached = self._cache[params]
            return Trial(cached.params, cached.values, cached.atoms, stage)
        atoms = self.detect(params)
        values = evaluate_rewards(self.rewards, atoms, self.images, self.contexts)
        trial = Trial(params, values, atoms, stage)
        self._cache[params] = trial
        return trial

    # ------------------------------------------------------------------ the loop

    def run(
        self,
        budget: int = 48,
        n_initial: Optional[int] = None,
        batch_size: int = 4,
        seed: int = 0,
        num_restarts: int = 2,
        raw_samples: int = 64,
        mc_samples: int = 32,
        num_threads: Optional[int] = 1,
        initial_params: Sequence[LoGParameters] = (),
        callback: Optional[Callable[[Trial], None]] = None,
    ) -> OptimizationResult:
        """Optimise and return the front.

        Args:
            budget: total number of trials (Sobol start included).
            n_initial: Sobol trials before the first GP (default 60 % of the budget, at
                least 8). A trial costs far less than a BO round (a GP fit and an
                acquisition), so a wide Sobol start is the cheap part of the budget.
            batch_size: candidates per BO round (q).
            seed: seeds the Sobol start, the MC sampler and the acquisition optimiser.
            num_restarts, raw_samples: effort of the acquisition maximisation.
            mc_samples: quasi-MC samples of the acquisition.
            num_threads: torch threads during the run (restored after); ``None`` leaves it.
            initial_params: trials to evaluate first (e.g. the parameters chosen on the
                previous image), counted in the budget.
            callback: called with every new trial.

        Raises:
            ValueError: on a budget or batch size below 1.
        """
        if budget < 1 or batch_size < 1:
            raise ValueError("budget and batch_size must be >= 1")
        if n_initial is None:
            n_initial = max(8, round(0.6 * budget))
        n_initial = max(1, min(budget, int(n_initial)))
        t_start = time.perf_counter()
        trials: List[Trial] = []

        def add(trial: Trial) -> None:
            trials.append(trial)
            if callback is not None:
                callback(trial)

        for p in list(initial_params)[:budget]:
            add(self.evaluate(p, stage="initial"))
        lows, highs = (np.array(b) for b in self.space.bounds())
        n_sobol = max(0, n_initial - len(trials))
        if n_sobol:
            from scipy.stats import qmc

            # draw a power of two (Sobol's balanced sizes), use the first n_sobol points
            sobol = qmc.Sobol(self.space.dim, scramble=True, seed=seed)
            unit = sobol.random_base2(max(0, math.ceil(math.log2(n_sobol))))[:n_sobol]
            for u in unit:
                add(self.evaluate(self.space.to_parameters(lows + u * (highs - lows)), "sobol"))
        with torch_threads(num_threads):
            state: Optional[Dict[str, torch.Tensor]] = None
            generator_seed = seed
            while len(trials) < budget:
                q = min(batch_size, budget - len(trials))
                generator_seed += 1
                candidates, state = self._propose(
                    trials,
                    q,
                    lows,
                    highs,
                    state,
                    generator_seed,
                    num_restarts,
                    raw_samples,
                    mc_samples,
                )
                for x in candidates:
                    add(self.evaluate(self.space.to_parameters(x), "bo"))
        self.timings["total"] = time.perf_counter() - t_start
        front = pareto_front(
            [t.params for t in trials],
            np.array([t.values for t in trials]),
            [t.atoms for t in trials],
            self.reward_names,
        )
        return OptimizationResult(
            front, trials, list(self.reward_names), self.space, dict(self.timings), self.detector
        )

    def _propose(
        self,
        trials: Sequence[Trial],
        q: int,
        lows: np.ndarray,
        highs: np.ndarray,
        state: Optional[Dict[str, torch.Tensor]],
        seed: int,
        num_restarts: int,
        raw_samples: int,
        mc_samples: int,
    ) -> tuple:
        bo = _botorch()
        t0 = time.perf_counter()
        span = np.where(highs > lows, highs - lows, 1.0)
        x = np.array([self.space.to_point(t.params) for t in trials])
        x = np.clip((x - lows) / span, 0.0, 1.0)
        y_raw = np.array([t.values for t in trials])
        y = -np.log(np.minimum(y_raw, _REWARD_CLIP) + _REWARD_FLOOR)
        train_x = torch.as_tensor(x, dtype=torch.float64)
        train_y = torch.as_tensor(y, dtype=torch.float64)
        with warnings.catch_warnings():
            # a reward that is constant so far (e.g. ER = 0 on every trial) cannot be
            # standardised; Standardize copes (unit scale) and the model learns nothing from it
            warnings.filterwarnings("ignore", category=bo.InputDataWarning)
            model = bo.SingleTaskGP(
                train_x, train_y, outcome_transform=bo.Standardize(m=y.shape[1])
            )
        if state is not None:
            # warm start: the previous round's kernel hyper-parameters, not its data transform
            keep = {k: v for k, v in state.items() if not k.startswith("outcome_transform")}
            model.load_state_dict(keep, strict=False)
        # the first fit converges from the priors; later ones start from the last optimum
        fit_iter = 20 if state is not None else 50
        mll = bo.ExactMarginalLogLikelihood(model.likelihood, model)
        with warnings.catch_warnings():
            # a fit that stops at its (small) iteration cap is expected, not a fault; so is
            # the jitter a near-singular kernel matrix gets
            warnings.filterwarnings("ignore", category=bo.OptimizationWarning)
            warnings.filterwarnings("ignore", category=bo.NumericalWarning)
            warnings.filterwarnings("ignore", category=bo.InputDataWarning)
            bo.fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": fit_iter}})
        new_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        t1 = time.perf_counter()
        self.timings["fit"] += t1 - t0

        ref = -math.log(1.0 + _REWARD_FLOOR)  # a reward of 1 in each objective
        ref_point = torch.full((y.shape[1],), ref, dtype=torch.float64)
        ref_point = torch.minimum(ref_point, train_y.min(dim=0).values - 1e-3)
        partitioning = bo.FastNondominatedPartitioning(ref_point=ref_point, Y=train_y)
        sampler = bo.SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed)
        with warnings.catch_warnings():
            # botorch falls back to its pure-Python path when its C++ kernel cannot compile
            warnings.filterwarnings("ignore", message=".*fused qLogEHVI.*")
            acq = bo.qLogExpectedHypervolumeImprovement(
                model=model, ref_point=ref_point, partitioning=partitioning, sampler=sampler
            )
        bounds = torch.stack(
            [
                torch.zeros(len(lows), dtype=torch.float64),
                torch.ones(len(lows), dtype=torch.float64),
            ]
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=bo.OptimizationWarning)
            warnings.filterwarnings("ignore", category=bo.NumericalWarning)
            torch.manual_seed(seed)
            candidates, _ = bo.optimize_acqf(
                acq,
                bounds=bounds,
                q=q,
                num_restarts=num_restarts,
                raw_samples=raw_samples,
                sequential=False,
                options={
                    "maxiter": 20,
                    "batch_limit": num_restarts,
                    "init_batch_limit": raw_samples,
                },
            )
        self.timings["acquisition"] += time.perf_counter() - t1
        unit = candidates.detach().cpu().numpy()
        return [lows + u * span for u in unit], new_state


def optimize_log(
    images: Sequence[np.ndarray],
    lattice: Any,
    pixel_size_nm: float,
    budget: int = 48,
    seed: int = 0,
    **kwargs: Any,
) -> OptimizationResult:
    """One call: build a :class:`LoGStarOptimizer` and run it.

    Keyword arguments go to the constructor when it knows them (``rewards``, ``space``,
    ``min_separation``, ``border``, ``prepared``, ``detector``), else to
    :meth:`LoGStarOptimizer.run`.

    Example (a synthetic graphene survey; 8 trials are the Sobol start alone, instant, where
    a survey wants 32 or more):
        >>> from agents.logstar import get_lattice
        >>> from agents.logstar.optimizer import optimize_log
        >>> from agents.logstar.render import render_lattice
        >>> survey_image = render_lattice(get_lattice("graphene"), (64, 64), 0.02, counts=200)
        >>> result = optimize_log([survey_image], "graphene", pixel_size_nm=0.02, budget=8)
        >>> len(result.front) >= 1
        True
    """
    ctor_keys = {"rewards", "space", "min_separation", "border", "prepared", "detector"}
    ctor = {k: v for k, v in kwargs.items() if k in ctor_keys}
    run = {k: v for k, v in kwargs.items() if k not in ctor_keys}
    return LoGStarOptimizer(images, lattice, pixel_size_nm, **ctor).run(
        budget=budget, seed=seed, **run
    )
