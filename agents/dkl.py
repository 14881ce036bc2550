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

This module and :mod:`agents.dkl_model` (the model's pieces) are the only ones of
``agents`` that import torch and gpytorch; ``import agents`` stays light.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import gpytorch
import numpy as np
import torch
from linear_operator.utils.errors import NotPSDError

from .acquisition import ACQUISITIONS, acquisition_values
from .base import Agent, Suggestion, as_positions
from .device import check_device, describe, is_cuda, resolve_device
from .dkl_model import DeepKernelGP, FeatureNet, PatchProjection, predict_exact, torch_threads
from .patches import (
    MAX_CANDIDATES,
    candidate_grid,
    default_step,
    default_window,
    extract_patches,
    grid_points,
    spread_points,
)

__all__ = ["MAX_CANDIDATES", "DKLAgent", "default_step", "default_window"]

SEED_MODES = ("spread", "random", "grid")
MIN_POINTS_TO_FIT = 2
#: training points a fit uses at most on a CPU with ``max_train_points="auto"`` (a GPU: all)
CPU_MAX_TRAIN_POINTS = 300
_NUMERICAL = gpytorch.utils.warnings.NumericalWarning


class DKLAgent(Agent):
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
        acquisition: ``"ei"``, ``"ucb"`` or ``"uncertainty"``; changeable while running.
        xi: EI exploration margin, in units of the measured values' standard deviation.
        beta: UCB exploration weight (``mean + sqrt(beta) * std``).
        hidden: widths of the network's hidden layers; ``None`` = no network, a plain GP on
            the raw patches (the baseline DKL is compared with).
        feature_dim: number of learned features the GP sees.
        seed_points: ``"spread"`` (the default: one random candidate in each cell of an
            even grid of ``n_seed`` cells over the field, so the first spectra cover it),
            ``"random"`` (anywhere), ``"grid"`` (the cells' centres), or ``(M, 2)`` positions
            to measure first (from the edge workflow, say).
        n_seed: number of seed points.
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

    Example:
        >>> agent = DKLAgent(survey_image, n_seed=4, seed=1)   # window, step from the field
        >>> for _ in range(10):
        ...     s = agent.suggest(1)[0]
        ...     agent.ingest([[s["x"], s["y"]]], [measure(s["x"], s["y"])])
        >>> agent.set_exploration(acquisition="ucb", beta=9.0)
        >>> maps = agent.predict_maps()   # mean / std images over the candidate grid
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
        acquisition: str = "ei",
        xi: float = 0.01,
        beta: float = 1.0,
        hidden: Optional[Sequence[int]] = (64, 32),
        feature_dim: int = 3,
        n_components: Optional[int] = 16,
        seed_points: Union[str, Any] = "spread",
        n_seed: int = 5,
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
        image = np.asarray(survey_image, dtype=np.float64)
        if image.ndim != 2:
            raise ValueError(f"survey image must be 2-D, got {image.shape}")
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
        if candidates is None:
            xy = candidate_grid(image.shape, step, self.window, border)
            cols = np.unique(xy[:, 0])
            rows = np.unique(xy[:, 1])
            self.grid_shape: Optional[Tuple[int, int]] = (len(rows), len(cols))
        else:
            xy = as_positions(candidates)
            self.grid_shape = None
        patches, self.candidates = extract_patches(image, self.window, xy, 1, normalise, border)
        self._project = PatchProjection(patches, self.n_components, self.num_threads)
        self._candidate_x = torch.from_numpy(self._project(patches)).to(self.device)
        self._pixel_index = {
            (int(x), int(y)): i for i, (x, y) in enumerate(np.rint(self.candidates))
        }

        self._rng = np.random.default_rng(self.seed)
        self._seeds = self._make_seeds(seed_points, int(n_seed))
        self._train_patches = np.empty((0, self._candidate_x.shape[1]), dtype=np.float32)
        #: positions measured whose value was not finite (not learned from, not suggested again)
        self.unusable = np.empty((0, 2), dtype=np.float64)

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

    # ------------------------------------------------------------------ exploration

    @property
    def acquisition(self) -> str:
        """Acquisition function name: ``"ei"``, ``"ucb"`` or ``"uncertainty"``."""
        return self._acquisition

    @acquisition.setter
    def acquisition(self, name: str) -> None:
        name = str(name).lower()
        if name not in ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {name!r}")
        self._acquisition = name

    @property
    def xi(self) -> float:
        """EI's exploration margin (in standard deviations of the measured values)."""
        return self._xi

    @xi.setter
    def xi(self, value: float) -> None:
        value = float(value)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"xi must be a finite number >= 0, got {value}")
        self._xi = value

    @property
    def beta(self) -> float:
        """UCB's exploration weight (``mean + sqrt(beta) * std``)."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        value = float(value)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"beta must be a finite number >= 0, got {value}")
        self._beta = value

    def set_exploration(
        self,
        acquisition: Optional[str] = None,
        xi: Optional[float] = None,
        beta: Optional[float] = None,
    ) -> Dict[str, Any]:
        """Change the acquisition function or its parameters between steps.

        Takes effect at the next :meth:`suggest`, without refitting the model.

        Returns:
            The acquisition settings now in force.

        Example:
            >>> agent.set_exploration(acquisition="ucb", beta=9.0)
            {'name': 'ucb', 'xi': 0.01, 'beta': 9.0}
        """
        # all or nothing: a bad value leaves the settings as they were
        before = self._acquisition, self._xi, self._beta
        try:
            if acquisition is not None:
                self.acquisition = acquisition
            if xi is not None:
                self.xi = xi
            if beta is not None:
                self.beta = beta
        except ValueError:
            self._acquisition, self._xi, self._beta = before
            raise
        return self.exploration

    @property
    def exploration(self) -> Dict[str, Any]:
        """The acquisition settings now in force, as a dict."""
        return {"name": self._acquisition, "xi": self._xi, "beta": self._beta}

    # ------------------------------------------------------------------ data in

    def _make_seeds(self, seed_points: Union[str, Any], n_seed: int) -> List[Tuple[float, float]]:
        if isinstance(seed_points, str):
            if seed_points not in SEED_MODES:
                raise ValueError(
                    f"seed_points must be {SEED_MODES} or positions, got {seed_points!r}"
                )
            if n_seed < 0:
                raise ValueError(f"n_seed must be >= 0, got {n_seed}")
            n_seed = min(n_seed, len(self.candidates))
            if seed_points == "random":
                idx = self._rng.choice(len(self.candidates), size=n_seed, replace=False)
                return [tuple(self.candidates[i]) for i in idx]
            if seed_points == "spread":
                picks = spread_points(self.image.shape, n_seed, self.candidates, self._rng)
                return [tuple(self.candidates[i]) for i in picks]
            return [tuple(p) for p in grid_points(self.image.shape, n_seed)]
        pts = as_positions(seed_points)
        rows, cols = self.image.shape
        if np.any((pts[:, 0] < -0.5) | (pts[:, 0] > cols - 0.5)):
            raise ValueError(f"seed points must lie in the image (x in 0..{cols - 1})")
        if np.any((pts[:, 1] < -0.5) | (pts[:, 1] > rows - 0.5)):
            raise ValueError(f"seed points must lie in the image (y in 0..{rows - 1})")
        return [tuple(p) for p in pts]

    def ingest(self, x: Any, y: Any = None) -> None:
        """Tell the agent about new measurements (see :meth:`Agent.ingest`).

        On real recordings a spectrum can give no number: a dead or saturated read-out, a
        ratio over zero counts. Such a value (NaN or infinite) is not learned from, and
        would stop a run if it were refused: its position is kept in :attr:`unusable`, never
        suggested again and counted in ``report()["n_unusable"]``; the finite values of the
        same call are ingested as usual. Positions outside the image are still refused,
        before anything is stored.
        """
        if y is None:
            super().ingest(x, y)
            return
        pts = as_positions(x)
        vals = np.atleast_1d(np.asarray(y, dtype=np.float64))
        if vals.ndim != 1 or len(vals) != len(pts):
            raise ValueError(f"{len(pts)} positions but {vals.shape} values")
        bad = ~np.isfinite(vals)
        if bad.any():
            rows, cols = self.image.shape
            inside = (
                (pts[:, 0] >= -0.5)
                & (pts[:, 0] <= cols - 0.5)
                & (pts[:, 1] >= -0.5)
                & (pts[:, 1] <= rows - 0.5)
            )
            if not inside.all():
                raise ValueError(f"positions outside the image ({cols} x {rows} px)")
            if (~bad).any():
                super().ingest(pts[~bad], vals[~bad])
            self.unusable = np.concatenate([self.unusable, pts[bad]])
            return
        super().ingest(pts, vals)

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

    # ------------------------------------------------------------------ model

    def _training_set(self) -> np.ndarray:
        """Indices of the measurements a fit uses: all, or the best half + the most recent."""
        n = len(self.values)
        if self.max_train_points is None or n <= self.max_train_points:
            return np.arange(n)
        n_best = self.max_train_points // 2
        best = np.argsort(-self.values, kind="stable")[:n_best]
        keep = set(best.tolist())
        for i in range(n - 1, -1, -1):
            if len(keep) >= self.max_train_points:
                break
            keep.add(i)
        return np.array(sorted(keep))

    def _build(self, x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if self.hidden is None:
                net: torch.nn.Module = torch.nn.Identity()
                ard = None
            else:
                net = FeatureNet(x.shape[1], self.hidden, self.feature_dim)
                ard = self.feature_dim
            likelihood = gpytorch.likelihoods.GaussianLikelihood(
                noise_constraint=gpytorch.constraints.GreaterThan(1e-4)
            )
            model = DeepKernelGP(x, y, likelihood, net, ard)
        # built on the CPU from the seed, then moved: the same initial weights everywhere
        model = model.to(self.device)
        if self.hidden is None:
            # raw standardised patches: distances grow like sqrt(2 * window**2)
            model.covar_module.base_kernel.lengthscale = float(self.window)
        else:
            model.covar_module.base_kernel.lengthscale = 0.5
        likelihood.noise = 0.05
        self._model = model
        self._optimizer = torch.optim.Adam(model.parameters(), lr=self.learning_rate)

    def fit(self) -> None:
        """Train (first call) or fine-tune (later calls) on the measurements so far.

        :meth:`suggest` calls this when new data arrived; call it yourself only to refresh
        :meth:`predict_maps` without suggesting.

        Raises:
            RuntimeError: fewer than 2 measurements.
        """
        if len(self.values) < MIN_POINTS_TO_FIT:
            raise RuntimeError(
                f"the model needs at least {MIN_POINTS_TO_FIT} measurements, has {len(self.values)}"
            )
        started = time.perf_counter()
        idx = self._training_set()
        values = self.values[idx]
        self._y_mean = float(values.mean())
        self._y_std = float(values.std()) or 1.0
        x = torch.from_numpy(self._train_patches[idx]).to(self.device)
        y = torch.from_numpy(((values - self._y_mean) / self._y_std).astype(np.float32))
        y = y.to(self.device)
        with torch_threads(self.num_threads), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", _NUMERICAL)
            try:
                iterations = self._fit_model(x, y)
            except NotPSDError:
                # a fine-tune walked into a singular kernel: start again from scratch, once;
                # the measurements themselves are untouched
                self._model = None
                iterations = self._fit_model(x, y)
        self.n_jitter_warnings += sum(issubclass(w.category, _NUMERICAL) for w in caught)
        for w in caught:  # anything else is not ours to swallow
            if not issubclass(w.category, _NUMERICAL):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.n_fits += 1
        self.total_iterations += iterations
        self._dirty = False
        self.last_fit_seconds = time.perf_counter() - started

    def _fit_model(self, x: torch.Tensor, y: torch.Tensor) -> int:
        """Build and train, or fine-tune; predict over the candidates. Returns iterations."""
        if self._model is None:
            self._build(x, y)
            iterations = self.train_iters
        else:
            self._model.set_train_data(x, y, strict=False)
            iterations = self.finetune_iters
        self.last_loss = self._train(x, y, iterations)
        self._predict_candidates()
        return iterations

    def _train(self, x: torch.Tensor, y: torch.Tensor, iterations: int) -> float:
        model, optimizer = self._model, self._optimizer
        assert model is not None
        assert optimizer is not None
        model.train()
        model.likelihood.train()
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
        loss = torch.zeros(())
        for _ in range(iterations):
            optimizer.zero_grad()
            loss = -mll(model(x), y)
            loss.backward()
            optimizer.step()
        model.eval()
        model.likelihood.eval()
        return float(loss.detach())

    def _predict_candidates(self) -> None:
        mean, std = self._predict_standardised(self._candidate_x)
        self._mean = mean * self._y_std + self._y_mean
        self._std = std * self._y_std

    def _predict_standardised(self, x: torch.Tensor) -> Tuple[np.ndarray, np.ndarray]:
        assert self._model is not None
        mean, variance = predict_exact(self._model, x)
        return (
            mean.cpu().numpy().astype(np.float64),
            variance.sqrt().cpu().numpy().astype(np.float64),
        )

    def predict(self, positions: Any) -> Tuple[np.ndarray, np.ndarray]:
        """Predicted mean and standard deviation of the scalar at any positions.

        Args:
            positions: ``(N, 2)`` ``(x, y)`` pixels in the image.

        Returns:
            ``(mean, std)``, each ``(N,)``, in the measured values' units.
        """
        if self._dirty or self._model is None:
            self.fit()
        patches, _ = extract_patches(
            self.image, self.window, as_positions(positions), 1, self.normalise, self.border
        )
        x = torch.from_numpy(self._project(patches)).to(self.device)
        with torch_threads(self.num_threads), warnings.catch_warnings():
            warnings.simplefilter("ignore", _NUMERICAL)  # jitter, counted at the fit already
            mean, std = self._predict_standardised(x)
        return mean * self._y_std + self._y_mean, std * self._y_std

    def predict_maps(self) -> Dict[str, np.ndarray]:
        """Predicted mean, uncertainty and acquisition over all candidates.

        Returns:
            ``{"mean", "std", "acquisition"}`` as ``(rows, columns)`` float32 images over the
            candidate grid (flat ``(N,)`` arrays for explicit candidates), plus ``"x"`` and
            ``"y"``: the candidates' pixel coordinates in the same layout.

        Raises:
            RuntimeError: fewer than 2 measurements.
        """
        if self._dirty or self._model is None:
            self.fit()
        assert self._mean is not None
        assert self._std is not None
        acq = self._acquisition_over_candidates()
        out = {
            "mean": self._mean,
            "std": self._std,
            "acquisition": np.where(np.isfinite(acq), acq, np.nan),
            "x": self.candidates[:, 0],
            "y": self.candidates[:, 1],
        }
        shape = self.grid_shape
        return {k: (v.reshape(shape) if shape else v).astype(np.float32) for k, v in out.items()}

    def _acquisition_over_candidates(self) -> np.ndarray:
        assert self._mean is not None
        assert self._std is not None
        # EI's margin is given in standard deviations of the data, like the standardised GP
        acq = acquisition_values(
            self._acquisition,
            self._mean,
            self._std,
            float(self.values.max()),
            xi=self._xi * self._y_std,
            beta=self._beta,
        )
        if self.exclude_measured:
            for x, y in self._measured_pixels():
                i = self._pixel_index.get((x, y))
                if i is not None:
                    acq[i] = -np.inf
        return acq

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
        if len(self.values) < MIN_POINTS_TO_FIT:
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

    def hyperparameters(self) -> Dict[str, Any]:
        """The GP's hyper-parameters now (standardised units), JSON-able; empty before a fit."""
        if self._model is None:
            return {}
        kernel = self._model.covar_module
        return {
            "lengthscale": kernel.base_kernel.lengthscale.detach().reshape(-1).tolist(),
            "outputscale": float(kernel.outputscale.detach()),
            "noise": float(self._model.likelihood.noise.detach().reshape(-1)[0]),
            "constant_mean": float(self._model.mean_module.constant.detach().reshape(-1)[0]),
            "y_mean": self._y_mean,
            "y_std": self._y_std,
        }

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
