"""The pieces of the DKL model: patch features, the network, the deep-kernel GP, threads,
and the blockwise exact prediction.

Kept apart from :mod:`agents.dkl` (the agent: data, decisions, reports) so each stays small.
Like :mod:`agents.dkl`, this module imports torch and gpytorch; ``import agents`` does not
load it.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, List, Optional, Sequence

import gpytorch
import numpy as np
import torch
from linear_operator.utils.cholesky import psd_safe_cholesky

__all__ = ["DeepKernelGP", "FeatureNet", "PatchProjection", "predict_exact", "torch_threads"]

#: most kernel entries (candidates x training points) held at once while predicting: 4 Mi
#: float32 = 16 MB per block, whatever the number of candidates
PREDICT_BLOCK_ELEMENTS = 1 << 22


@contextlib.contextmanager
def torch_threads(num_threads: Optional[int]) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(num_threads)``, then restore the old value.

    ``None`` leaves torch's setting alone. Example::

        with torch_threads(1):
            model(x)
    """
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    if previous != num_threads:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        if previous != num_threads:
            torch.set_num_threads(previous)


class PatchProjection:
    """Patches -> network inputs: centred, projected on principal components, scaled.

    The components are those of the image's own candidate patches (no labels needed): a
    network on 16 components has far fewer weights to learn from a few dozen spectra than
    one on 576 raw pixels. ``n_components=None`` keeps the raw pixels (centred, scaled).

    Args:
        patches: ``(N, window * window)`` patches of all candidates.
        n_components: number of principal components to keep, or None.
        num_threads: torch threads for the decomposition (numpy's multi-threaded LAPACK
            took 100x longer on two busy cores).

    Example (the 9 x 9 px patches of every pixel of a 64 x 64 lattice image):
        >>> import numpy as np
        >>> from agents.dkl_model import PatchProjection
        >>> from agents.patches import extract_patches
        >>> yy, xx = np.mgrid[:64, :64]
        >>> survey = np.cos(xx / 3.0) * np.cos(yy / 3.0)     # a lattice of columns
        >>> candidate_patches, xy = extract_patches(survey, window=9)
        >>> candidate_patches.shape
        (4096, 81)
        >>> project = PatchProjection(candidate_patches, n_components=16)
        >>> project(candidate_patches).shape
        (4096, 16)
    """

    def __init__(
        self, patches: np.ndarray, n_components: Optional[int], num_threads: Optional[int] = 1
    ) -> None:
        self.num_threads = num_threads
        self.mean = patches.mean(axis=0).astype(np.float32)
        centred = patches - self.mean
        self.components: Optional[np.ndarray] = None
        if n_components is None:
            self.scale = float(centred.std()) or 1.0
            return
        with torch_threads(num_threads):
            x = torch.from_numpy(centred.astype(np.float64))
            eigenvalues, vectors = torch.linalg.eigh(x.T @ x / len(x))
        k = min(int(n_components), vectors.shape[1])
        top = vectors[:, -k:].flip(1).numpy()  # largest variance first
        # eigenvectors have no sign of their own: fix one so every platform agrees
        sign = np.sign(top[np.argmax(np.abs(top), axis=0), np.arange(k)])
        self.components = (top * sign).astype(np.float32)
        # one scale for all components keeps their relative weight (the first is ~1)
        self.scale = float(np.sqrt(max(float(eigenvalues[-1]), 0.0))) or 1.0

    @property
    def n_features(self) -> int:
        """Length of each projected patch."""
        return len(self.mean) if self.components is None else self.components.shape[1]

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        """Project ``(N, window * window)`` patches to float32 ``(N, n_features)``."""
        with torch_threads(self.num_threads):
            x = torch.from_numpy(np.ascontiguousarray(patches - self.mean, dtype=np.float32))
            if self.components is not None:
                x = x @ torch.from_numpy(self.components)
            return (x / self.scale).numpy()


class FeatureNet(torch.nn.Sequential):
    """Projected patch -> ``feature_dim`` features in ``[-1, 1]`` (an MLP).

    The final tanh bounds the features, so the GP's length scales live on a known range
    whatever the network does to its weights.

    Example:
        >>> FeatureNet(16, (64, 32), 3)(torch.zeros(5, 16)).shape
        torch.Size([5, 3])
    """

    def __init__(self, n_inputs: int, hidden: Sequence[int], feature_dim: int) -> None:
        layers: List[torch.nn.Module] = []
        width = n_inputs
        for h in hidden:
            layers += [torch.nn.Linear(width, int(h)), torch.nn.ReLU()]
            width = int(h)
        layers += [torch.nn.Linear(width, feature_dim), torch.nn.Tanh()]
        super().__init__(*layers)


class DeepKernelGP(gpytorch.models.ExactGP):
    """Exact GP whose RBF kernel acts on ``feature_net(x)`` (``Identity``: a plain GP).

    Args:
        train_x, train_y: training inputs ``(N, d)`` and standardised targets ``(N,)``.
        likelihood: Gaussian noise model.
        feature_net: the network (trained jointly through the marginal likelihood).
        ard_dims: one length scale per feature (``feature_dim``) or one for all (None).
    """

    def __init__(
        self,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        likelihood: gpytorch.likelihoods.GaussianLikelihood,
        feature_net: torch.nn.Module,
        ard_dims: Optional[int],
    ) -> None:
        super().__init__(train_x, train_y, likelihood)
        self.feature_net = feature_net
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.RBFKernel(ard_num_dims=ard_dims)
        )

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        z = self.feature_net(x)
        return gpytorch.distributions.MultivariateNormal(self.mean_module(z), self.covar_module(z))


def predict_exact(
    model: DeepKernelGP, x: torch.Tensor, block_elements: int = PREDICT_BLOCK_ELEMENTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact posterior mean and variance of the latent function at ``x``, block by block.

    The same numbers as ``model(x).mean`` and ``model(x).variance`` in evaluation mode,
    without what gpytorch builds on the way: asked for a variance over M candidates it
    formed M x M matrices (2.5 GB at M = 16,384). Here one Cholesky factor ``L`` of the
    N x N training covariance (plus noise) serves every block of candidates:
    ``mean = m(z) + K_zX alpha``, ``var = k(z, z) - ||L^-1 K_Xz||^2``; memory grows like
    N x block, never with M squared.

    Args:
        model: a trained :class:`DeepKernelGP` (its training data set).
        x: ``(M, d)`` inputs on the model's device.
        block_elements: most kernel entries per block (rows = this / N).

    Returns:
        ``(mean (M,), variance (M,))`` on the model's device, variance clamped at 0.
    """
    train_x = model.train_inputs[0]
    train_y = model.train_targets
    n = train_x.shape[0]
    with torch.no_grad():
        z_train = model.feature_net(train_x)
        k_train = model.covar_module(z_train).to_dense()
        noise = model.likelihood.noise.reshape(-1)[0]
        k_train = k_train + noise * torch.eye(n, dtype=k_train.dtype, device=k_train.device)
        # adds jitter (and a NumericalWarning) when the matrix is numerically singular,
        # as gpytorch's own solves do
        chol = psd_safe_cholesky(k_train)
        residual = (train_y - model.mean_module(z_train)).unsqueeze(-1)
        alpha = torch.cholesky_solve(residual, chol)
        rows = max(1, int(block_elements) // max(1, n))
        means, variances = [], []
        for start in range(0, x.shape[0], rows):
            z = model.feature_net(x[start : start + rows])
            k_cross = model.covar_module(z, z_train).to_dense()
            means.append(model.mean_module(z) + (k_cross @ alpha).squeeze(-1))
            v = torch.linalg.solve_triangular(chol, k_cross.transpose(-1, -2), upper=False)
            prior = model.covar_module(z, diag=True)
            variances.append(prior - (v * v).sum(dim=0))
    return torch.cat(means), torch.cat(variances).clamp_min(0)
