"""Training and prediction of a DKL agent's model: which measurements a fit uses, the first
fit and the warm-started fine-tunes, exact predictions over the candidates and anywhere else,
and the hyper-parameters it learned.

Kept apart from :mod:`agents.dkl` (the agent: data in, decisions out, reports) and
:mod:`agents.dkl_model` (the model's pieces). Like them, this module imports torch and
gpytorch; ``import agents`` does not.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import gpytorch
import numpy as np
import torch
from linear_operator.utils.errors import NotPSDError

from .base import as_positions
from .dkl_model import DeepKernelGP, FeatureNet, PatchProjection, predict_exact, torch_threads
from .patches import extract_patches

__all__ = ["CPU_MAX_TRAIN_POINTS", "MIN_POINTS_TO_FIT", "DKLTraining"]

MIN_POINTS_TO_FIT = 2
#: training points a fit uses at most on a CPU with ``max_train_points="auto"`` (a GPU: all)
CPU_MAX_TRAIN_POINTS = 300
_NUMERICAL = gpytorch.utils.warnings.NumericalWarning


class DKLTraining:
    """Mixin of :class:`~agents.dkl.DKLAgent`: its model, trained and asked.

    Expects the survey ``image``, the patch settings (``window``, ``normalise``,
    ``border``), the network settings (``hidden``, ``feature_dim``, ``seed``,
    ``learning_rate``, ``train_iters``, ``finetune_iters``, ``max_train_points``,
    ``num_threads``, ``device``), the measurements (``values``, ``_train_patches``) and the
    candidates (``candidates``, ``grid_shape``, ``_candidate_x``, ``_project``) on the agent.
    """

    image: np.ndarray
    window: int
    normalise: Optional[str]
    border: str
    hidden: Optional[Sequence[int]]
    feature_dim: int
    seed: int
    learning_rate: float
    train_iters: int
    finetune_iters: int
    max_train_points: Optional[int]
    num_threads: Optional[int]
    device: Any
    values: np.ndarray
    candidates: np.ndarray
    grid_shape: Optional[Tuple[int, int]]
    _train_patches: np.ndarray
    _candidate_x: torch.Tensor
    _project: PatchProjection
    _model: Optional[DeepKernelGP]
    _optimizer: Optional[torch.optim.Optimizer]
    _dirty: bool
    _mean: Optional[np.ndarray]
    _std: Optional[np.ndarray]
    _y_mean: float
    _y_std: float
    n_fits: int
    total_iterations: int
    last_loss: Optional[float]
    last_fit_seconds: Optional[float]
    n_jitter_warnings: int
    _acquisition_over_candidates: Callable[[], np.ndarray]

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
