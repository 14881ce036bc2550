"""Deep Kernel Learning: find where the spectra say something, from what the image shows.

The first paper's inverse workflow (section V.c): a survey image is cut into patches around
every candidate beam position; a small neural network maps each patch to a few features; an
exact Gaussian process on those features predicts the scalar a spectrum would give there
(plasmon intensity, say) with an uncertainty; the net and the GP are trained together on the
marginal likelihood of the spectra measured so far. An acquisition function (expected
improvement, upper confidence bound or maximum uncertainty) turns prediction and uncertainty
into the next beam position. Measure, scalarize, :meth:`~DKLAgent.ingest`, repeat.

Cost is kept small and bounded, because it is paid at every step while the beam waits:

- warm start: the net, the GP hyper-parameters and the optimiser state are kept between
  steps; a step fine-tunes ``finetune_iters`` iterations instead of training from scratch;
- on a CPU, at most ``max_train_points`` measurements train the model (the best half and
  the most recent rest), so a fit never grows past a fixed size; on a GPU the model trains
  on every measurement (``max_train_points="auto"``);
- ``num_threads`` torch threads (default 1) during fits and predictions: more threads than
  free cores made fits 20-50x slower on a shared 2-core machine;
- predictions over the candidates are exact but block by block (:func:`predict_exact`): no
  candidate x candidate matrix, so 16,384 candidates cost megabytes, not gigabytes.

``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``) says where the model lives; the
request goes into :meth:`~DKLAgent.config`, where it ran into :meth:`~DKLAgent.report`.

Modules, by job (each imports only the ones below it):

* :mod:`agents.dkl` -- :class:`DKLAgent`: settings, data in, decisions out, config and report;
* :mod:`agents.dkl_training` -- the model trained (first fit, warm-started fine-tunes) and
  asked (predictions, hyper-parameters);
* :mod:`agents.dkl_exploration` -- the acquisition function, its settings and its values;
* :mod:`agents.dkl_geometry` -- candidates, seed points, positions in the image;
* :mod:`agents.dkl_model` -- the model's pieces (network, GP, exact blockwise prediction).

This module, :mod:`agents.dkl_training` and :mod:`agents.dkl_model` are the only ones of
``agents`` that import torch and gpytorch; ``import agents`` stays light.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .base import Agent, Suggestion
from .contrast import check_contrast, decide_contrast
from .device import check_device, describe, is_cuda, resolve_device
from .dkl_exploration import DKLExploration
from .dkl_geometry import (
    SEED_MODES,
    SEED_ORDERS,
    inside_image,
    make_seeds,
    pixel_index,
    place_candidates,
)
from .dkl_model import DeepKernelGP, PatchProjection
from .dkl_training import CPU_MAX_TRAIN_POINTS, MIN_POINTS_TO_FIT, DKLTraining
from .images import survey_image_array
from .patches import MAX_CANDIDATES, default_step, default_window, extract_patches

log = logging.getLogger(__name__)


def featureless_survey(image: np.ndarray) -> Optional[str]:
    """Why a survey image gives the patches' features nothing to go on, or None.

    A constant image (a blanked beam, a detector that was off, an empty frame) makes every
    patch the same: the model can only tell positions apart by the spectra, not by what the
    survey shows there.
    """
    values = np.asarray(image, dtype=np.float64)
    span = float(np.ptp(values)) if values.size else 0.0
    if span <= 1e-9 * max(1.0, float(np.max(np.abs(values))) if values.size else 1.0):
        return (
            f"the survey image is constant ({float(values.flat[0]) if values.size else 0:g} "
            "everywhere): every patch looks the same, so the survey says nothing about where to "
            "measure; positions are drawn at random after the seeds (check the beam and the "
            "survey detector)"
        )
    return None


# the constants and helpers of the modules below, importable from here as before the split
__all__ = [
    "CPU_MAX_TRAIN_POINTS",
    "MAX_CANDIDATES",
    "MIN_POINTS_TO_FIT",
    "SEED_MODES",
    "DKLAgent",
    "default_step",
    "default_window",
]


class DKLAgent(DKLTraining, DKLExploration, Agent):
    """Active learning of a spectral scalar over a survey image with a deep kernel GP.

    Args:
        survey_image: 2-D survey image (HAADF, say) of the scan field, any shape.
        window: patch side in pixels around each position; ``None``: scaled to the field
            (:func:`default_window`: 24 px on 128 x 128, 13 px on 48 x 80).
        step: spacing of the candidate grid in pixels; ``None``: every pixel on a field of
            up to 4,096 pixels, else the smallest step under that (:func:`default_step`:
            2 on 128 x 128).
        candidates: explicit ``(N, 2)`` ``(x, y)`` candidate positions instead of the grid.
        normalise, border: patch normalisation and border handling (``agents.patches``).
        acquisition: ``"ucb"`` (the default), ``"ei"`` or ``"uncertainty"``; changeable
            while running. UCB with ``beta=9`` because EI (``xi=0.01``) settled on the first
            good particle and stopped short of the strongest in 7 of 20 twin dev seeds
            (docs/adaptive-eels.md).
        xi: EI exploration margin, in units of the measured values' standard deviation.
        beta: UCB exploration weight (``mean + sqrt(beta) * std``; default 9: 3 std).
        hidden: widths of the network's hidden layers; ``None`` = no network, a plain GP on
            the raw patches (the baseline DKL is compared with).
        feature_dim: number of learned features the GP sees.
        seed_points: ``"features"`` (the default: one on each of ``n_seed`` kinds of
            feature the survey shows, its blob centres and gaps grouped by their patches,
            :mod:`agents.dkl_seeds`; the first spectra tell the model which kind holds the
            signal), ``"spread"`` (one random candidate in each cell of an even grid of
            ``n_seed`` cells over the field), ``"random"`` (anywhere), ``"grid"`` (the
            cells' centres), or ``(M, 2)`` positions to measure first (from the edge
            workflow, say).
        n_seed: number of seed points.
        seed_order: the order of the ``"features"`` seed points, by kind: ``"objects"`` (the
            default: the kinds on the specimen's columns or particles first, then the gaps
            between them, each group in an order drawn from ``seed``; measured ahead of
            random from the first spectrum on HAADF and ABF surveys, docs/adaptive-eels.md),
            ``"drawn"`` (all kinds in an order drawn from ``seed``), ``"brightest"`` /
            ``"darkest"`` (the kind brightest / darkest in the band-passed survey first: on a
            HAADF survey the heaviest columns or particles), ``"rarest"`` (the kind with
            fewest sites first), ``"outlying"`` (the kind farthest from the sites' mean
            feature first). The set of seed points is the same in each order.
        contrast: whether the survey shows the specimen's objects bright (``"bright"``:
            HAADF, ADF) or dark (``"dark"``: ABF, BF), for ``seed_order="objects"``;
            ``"auto"`` (default): from ``detector`` when it says, else from the image
            (:func:`agents.contrast.decide_contrast`). ``config()`` records the decision.
        detector: the survey detector's name (``"HAADF"``, ``"ABF"``...), when known: the
            plans pass the survey signal's name.
        seed: seeds the network's initial weights and every random choice: same seed, same
            data, same suggestions.
        num_threads: torch threads during fits and predictions (``None``: leave torch's).
        train_iters: Adam iterations of the first fit.
        finetune_iters: Adam iterations of each later fit (warm start).
        learning_rate: Adam's learning rate.
        max_train_points: most measurements a fit uses (the best half, the most recent rest);
            ``"auto"``: 300 on a CPU, all of them on a GPU; ``None``: all of them.
        exclude_measured: never suggest a candidate pixel that was already measured.
        device: ``"auto"`` (a GPU when there is one), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Example (four particles on a 32 x 32 survey, a signal on one of them; short fits,
    ``train_iters=30, finetune_iters=5``, keep it under a second, the defaults train longer):
        >>> import numpy as np
        >>> from agents.dkl import DKLAgent
        >>> yy, xx = np.mgrid[:32, :32]
        >>> def particle(x, y, cx, cy):
        ...     return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 6.0)
        >>> centres = [(8, 8), (24, 10), (12, 24), (26, 26)]
        >>> survey = sum(particle(xx, yy, cx, cy) for cx, cy in centres)   # HAADF, say
        >>> def measure(x, y):                  # the plasmon's intensity: one particle has it
        ...     return float(particle(x, y, 24, 10))
        >>> agent = DKLAgent(survey, n_seed=4, seed=1, train_iters=30, finetune_iters=5)
        >>> agent.window, agent.grid_step          # px, from the field's size
        (9, 1)
        >>> sources = []
        >>> for _ in range(8):
        ...     s = agent.suggest(1)[0]
        ...     agent.ingest([[s["x"], s["y"]]], [measure(s["x"], s["y"])])
        ...     sources.append(s["source"])
        >>> sources                                # the seed points first, then the model's
        ['seed', 'seed', 'seed', 'seed', 'model', 'model', 'model', 'model']
        >>> agent.set_exploration(acquisition="ucb", beta=4.0)
        {'name': 'ucb', 'xi': 0.01, 'beta': 4.0}
        >>> maps = agent.predict_maps()            # images over the candidate grid
        >>> sorted(maps), maps["mean"].shape
        (['acquisition', 'mean', 'std', 'x', 'y'], (32, 32))
    """

    name = "dkl"

    def __init__(
        self,
        survey_image: Any,
        window: Optional[int] = None,
        step: Optional[int] = None,
        candidates: Optional[Any] = None,
        normalise: Optional[str] = "image",
        border: str = "reflect",
        acquisition: str = "ucb",
        xi: float = 0.01,
        beta: float = 9.0,
        hidden: Optional[Sequence[int]] = (64, 32),
        feature_dim: int = 3,
        n_components: Optional[int] = 16,
        seed_points: Union[str, Any] = "features",
        n_seed: int = 5,
        seed_order: str = "objects",
        contrast: str = "auto",
        detector: Optional[str] = None,
        seed: int = 0,
        num_threads: Optional[int] = 1,
        train_iters: int = 150,
        finetune_iters: int = 30,
        learning_rate: float = 0.01,
        max_train_points: Union[int, str, None] = "auto",
        exclude_measured: bool = True,
        device: str = "auto",
    ) -> None:
        super().__init__()
        # once, here: undefined pixels filled (logged), one-frame stacks taken (agents.images)
        image = survey_image_array(survey_image)
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
        if min(int(train_iters), int(finetune_iters)) < 1:
            raise ValueError("train_iters and finetune_iters must be >= 1")
        if isinstance(max_train_points, str) and max_train_points != "auto":
            raise ValueError(
                f"max_train_points must be a number, 'auto' or None: {max_train_points!r}"
            )
        if not isinstance(max_train_points, (str, type(None))):
            if int(max_train_points) < MIN_POINTS_TO_FIT:
                raise ValueError(f"max_train_points must be >= {MIN_POINTS_TO_FIT}")
            max_train_points = int(max_train_points)
        self.device_request = check_device(device)
        self.device = resolve_device(device)
        if int(feature_dim) < 1:
            raise ValueError(f"feature_dim must be >= 1, got {feature_dim}")
        self.image = image
        #: why the survey gives the feature extractor nothing to go on (None: it does)
        self.survey_warning = featureless_survey(image)
        if self.survey_warning:
            log.warning("DKL: %s", self.survey_warning)
        self.window = default_window(image.shape) if window is None else int(window)
        if step is None and candidates is None:
            step = default_step(image.shape)
        self.normalise = normalise
        self.border = border
        self.num_threads = None if num_threads is None else int(num_threads)
        self.hidden = None if hidden is None else tuple(int(h) for h in hidden)
        self.feature_dim = int(feature_dim)
        self.n_components = None if n_components is None else int(n_components)
        self.seed = int(seed)
        self.train_iters = int(train_iters)
        self.finetune_iters = int(finetune_iters)
        self.learning_rate = float(learning_rate)
        self._max_train_points_request = max_train_points
        #: most measurements a fit uses (None: all of them)
        self.max_train_points: Optional[int] = (
            (None if is_cuda(self.device) else CPU_MAX_TRAIN_POINTS)
            if max_train_points == "auto"
            else max_train_points
        )
        self.exclude_measured = bool(exclude_measured)
        #: spacing of the candidate grid, px (None with explicit candidates)
        self.grid_step = None if candidates is not None else int(step)
        # ``seed_points`` as given (positions are recorded as a list), for config()
        self._seed_points = (
            seed_points if isinstance(seed_points, str) else np.asarray(seed_points).tolist()
        )
        self._n_seed = int(n_seed)
        if seed_order not in SEED_ORDERS:
            raise ValueError(f"seed_order must be one of {SEED_ORDERS}, got {seed_order!r}")
        self._seed_order = str(seed_order)
        #: whether the specimen's objects are bright or dark in the survey, and why
        self.contrast_decision = self._decide_contrast(contrast, detector, image, seed_points)
        self._initial_exploration = {
            "acquisition": acquisition,
            "xi": float(xi),
            "beta": float(beta),
        }
        self._acquisition = "ei"
        self._xi = 0.0
        self._beta = 0.0
        self.set_exploration(acquisition=acquisition, xi=xi, beta=beta)

        # candidates and their patches, computed once per survey image
        patches, self.candidates, self.grid_shape = place_candidates(
            image, self.window, step, candidates, normalise, border
        )
        self._project = PatchProjection(patches, self.n_components, self.num_threads)
        self._candidate_x = torch.from_numpy(self._project(patches)).to(self.device)
        self._pixel_index = pixel_index(self.candidates)

        self._rng = np.random.default_rng(self.seed)
        self._seeds = self._make_seeds(seed_points, int(n_seed))
        self._train_patches = np.empty((0, self._candidate_x.shape[1]), dtype=np.float32)
        #: positions measured whose value was not finite (not learned from, not suggested again)

        self._model: Optional[DeepKernelGP] = None
        self._optimizer: Optional[torch.optim.Optimizer] = None
        self._dirty = False
        self._mean: Optional[np.ndarray] = None  # predictions over the candidates,
        self._std: Optional[np.ndarray] = None  # in the measured values' units
        self.step = 0
        self.n_fits = 0
        self.total_iterations = 0
        self.last_loss: Optional[float] = None
        self.last_fit_seconds: Optional[float] = None
        self.n_jitter_warnings = 0

    # ------------------------------------------------------------------ data in

    def _decide_contrast(
        self, contrast: str, detector: Optional[str], image: np.ndarray, seed_points: Any
    ) -> Dict[str, Any]:
        contrast = check_contrast(contrast)
        # measured only where it decides something: the "objects" order of feature seeds
        needed = isinstance(seed_points, str) and seed_points == "features"
        if contrast == "auto" and not (needed and self._seed_order == "objects"):
            return {
                "contrast": "bright",
                "source": "unused",
                "why": "not needed by these seed points",
                "detector": detector,
            }
        decision = decide_contrast(contrast, image, detector=detector)
        if decision.warning:
            log.warning("DKL seed points: %s", decision.warning)
        return {
            "contrast": decision.contrast,
            "source": decision.source,
            "why": decision.why,
            "detector": detector,
        }

    def _make_seeds(self, seed_points: Union[str, Any], n_seed: int) -> List[Tuple[float, float]]:
        return make_seeds(
            seed_points,
            n_seed,
            self.image.shape,
            self.candidates,
            self._rng,
            image=self.image,
            window=self.window,
            features=self._candidate_x.cpu().numpy(),
            order=self._seed_order,
            contrast=self.contrast_decision["contrast"],
        )

    def _check_positions(self, positions: np.ndarray) -> None:
        # a position outside the image is refused before anything (usable or not) is stored
        if not inside_image(positions, self.image.shape).all():
            rows, cols = self.image.shape
            raise ValueError(f"positions outside the image ({cols} x {rows} px)")

    def _measured_pixels(self) -> List[Tuple[int, int]]:
        """Pixels measured so far, usable or not: none is suggested again."""
        return [(int(x), int(y)) for x, y in np.rint(np.vstack([self.positions, self.unusable]))]

    def _ingest(self, positions: np.ndarray, values: np.ndarray) -> None:
        # raises for positions outside the image before anything is stored
        patches, _ = extract_patches(
            self.image, self.window, positions, 1, self.normalise, self.border
        )
        self._train_patches = np.concatenate([self._train_patches, self._project(patches)])
        self._dirty = True

    # ------------------------------------------------------------------ decisions out

    def suggest(self, n: int = 1) -> List[Suggestion]:
        """The next ``n`` positions to measure, best first.

        Seed points come first; then, once 2 measurements are in, the model's choice: the
        ``n`` candidates with the highest acquisition value (refitting first if measurements
        arrived since the last fit). Each suggestion records ``"source"`` (``"seed"``,
        ``"model"`` or ``"random"``), and for the model's choices the ``"acquisition"``
        value, the predicted ``"mean"`` and ``"std"`` there and the ``"acquisition_function"``.
        """
        n = int(n)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.step += 1
        out: List[Suggestion] = []
        while self._seeds and len(out) < n:
            x, y = self._seeds.pop(0)
            out.append(self.make_suggestion(x, y, source="seed", step=self.step))
        if len(out) == n:
            return out
        if len(self.values) < MIN_POINTS_TO_FIT or self.survey_warning:
            # a featureless survey makes every candidate look alike to the model: its ties
            # would walk the grid as a raster; random positions sample the field evenly
            return out + self._random_suggestions(n - len(out))
        if self._dirty or self._model is None:
            self.fit()
        assert self._mean is not None
        assert self._std is not None
        acq = self._acquisition_over_candidates()
        for i in np.argsort(-acq, kind="stable")[: n - len(out)]:
            if not np.isfinite(acq[i]):
                break
            out.append(
                self.make_suggestion(
                    *self.candidates[i],
                    source="model",
                    step=self.step,
                    acquisition=float(acq[i]),
                    acquisition_function=self._acquisition,
                    mean=float(self._mean[i]),
                    std=float(self._std[i]),
                )
            )
        return out

    def _random_suggestions(self, n: int) -> List[Suggestion]:
        measured = set(self._measured_pixels())
        free = [i for i, p in enumerate(np.rint(self.candidates)) if tuple(p) not in measured]
        picks = self._rng.choice(free, size=min(n, len(free)), replace=False) if free else []
        return [
            self.make_suggestion(*self.candidates[i], source="random", step=self.step)
            for i in picks
        ]

    def config(self) -> Dict[str, Any]:
        """The constructor's settings (JSON-able), so a replay can build the same agent on
        the same survey image: same candidates, same seeds, same network, same choices."""
        return {
            "window": self.window,
            "step": self.grid_step,
            "normalise": self.normalise,
            "border": self.border,
            **self._initial_exploration,
            "hidden": None if self.hidden is None else list(self.hidden),
            "feature_dim": self.feature_dim,
            "n_components": self.n_components,
            "seed_points": self._seed_points,
            "n_seed": self._n_seed,
            "seed_order": self._seed_order,
            # the decision, not the request: a replay draws the same seed points without
            # the detector's name
            "contrast": self.contrast_decision["contrast"],
            "seed": self.seed,
            "num_threads": self.num_threads,
            "train_iters": self.train_iters,
            "finetune_iters": self.finetune_iters,
            "learning_rate": self.learning_rate,
            "max_train_points": self._max_train_points_request,
            "exclude_measured": self.exclude_measured,
            "device": self.device_request,
        }

    def report(self) -> Dict[str, Any]:
        """Step, measurements, best so far, hyper-parameters, acquisition, training loss."""
        best = self.get_best_points()
        return {
            "agent": self.name,
            "config": self.config(),
            "step": self.step,
            "n_measured": len(self.values),
            "n_unusable": len(self.unusable),
            "n_train_points": int(min(len(self.values), self.max_train_points or len(self.values))),
            "n_candidates": len(self.candidates),
            "seeds_left": len(self._seeds),
            "contrast": dict(self.contrast_decision),
            # a survey with no features to learn from (a constant image), said in words
            "survey_warning": self.survey_warning,
            "best_value": best[0][2]["value"] if best else None,
            "best_position": [best[0][1]["x"], best[0][1]["y"]] if best else None,
            "acquisition": self.exploration,
            "hyperparameters": self.hyperparameters(),
            "training_loss": self.last_loss,
            "n_fits": self.n_fits,
            "total_iterations": self.total_iterations,
            "last_fit_seconds": self.last_fit_seconds,
            "jitter_warnings": self.n_jitter_warnings,
            # where the decisions were computed (config() holds what was asked for)
            "device": describe(self.device),
            "model": {
                "window": self.window,
                "hidden": None if self.hidden is None else list(self.hidden),
                "feature_dim": self.feature_dim,
                "num_threads": self.num_threads,
                "train_iters": self.train_iters,
                "finetune_iters": self.finetune_iters,
                "max_train_points": self.max_train_points,
                "seed": self.seed,
            },
        }
