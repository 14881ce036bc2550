"""The physics of :class:`agents.physics.PhysicsGPAgent`: the edge-profile hypotheses, their
priors, the survey's signed edge distance and the generative model (a hypothesis' physical
mean over the edge distance plus an RBF GP residual, in pyro).

The agent (fitting by SVI, the posterior, suggestions and reports) is :mod:`agents.physics`,
which imports this module, never the other way round; the public names here stay importable
from there.

Example:
    >>> import torch
    >>> p = {"background": 0.0, "step": 2.0, "edge_shift": 0.0, "edge_width": 1.0}
    >>> [round(v, 3) for v in physical_mean("step", p, torch.tensor([-50.0, 0.0, 50.0])).tolist()]
    [0.0, 1.0, 2.0]
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

__all__ = [
    "HYPOTHESES",
    "PHYSICAL_PARAMETERS",
    "physical_mean",
    "signed_edge_distance",
]

#: the physical models of the mean, as a function of the signed distance ``d`` from the edge
#: (standardised values; px): name -> (what it says, its parameters with units)
HYPOTHESES: Dict[str, tuple] = {
    "step": (
        "background + step * sigmoid((d - edge_shift) / edge_width): the signal changes "
        "across the edge (a particle's plasmon, a thickness step)",
        {"background": "value", "step": "value", "edge_shift": "px", "edge_width": "px"},
    ),
    "peak": (
        "background + height * exp(-((d - edge_shift) / edge_width)^2 / 2): the signal "
        "is found at the edge only (an interface or surface state)",
        {"background": "value", "height": "value", "edge_shift": "px", "edge_width": "px"},
    ),
    "flat": (
        "background: the edge does not matter (the GP alone explains the map)",
        {"background": "value"},
    ),
}
#: the physical parameters of the default hypothesis, with their units
PHYSICAL_PARAMETERS = HYPOTHESES["step"][1]
_PRIORS = {
    "background": lambda: dist.Normal(0.0, 1.0),
    "step": lambda: dist.Normal(0.0, 2.0),
    "height": lambda: dist.Normal(0.0, 2.0),
    "edge_shift": lambda: dist.Normal(0.0, 2.0),
    "edge_width": lambda: dist.LogNormal(np.log(2.0), 0.7),
}
_GP_SITES = ("lengthscale", "variance", "noise")


def physical_mean(hypothesis: str, p: Dict[str, Any], d: Any) -> Any:
    """The mean of ``hypothesis`` at edge distances ``d`` for parameters ``p`` (torch)."""
    if hypothesis == "step":
        return p["background"] + p["step"] * torch.sigmoid((d - p["edge_shift"]) / p["edge_width"])
    if hypothesis == "peak":
        z = (d - p["edge_shift"]) / p["edge_width"]
        return p["background"] + p["height"] * torch.exp(-0.5 * z * z)
    return p["background"] + 0.0 * d


def signed_edge_distance(survey_image: Any, classes: int = 3, smooth: float = 1.5) -> np.ndarray:
    """Signed distance from the edge of the survey's brightest phase, px (inside positive).

    The image is smoothed (Gaussian, ``smooth`` px), split by multi-Otsu thresholds into
    ``classes`` intensity classes, and the brightest class is "the particle".

    Raises:
        ValueError: not a 2-D image, or an image with no bright phase to find.
    """
    from scipy.ndimage import distance_transform_edt, gaussian_filter
    from skimage.filters import threshold_multiotsu

    image = np.asarray(survey_image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"survey image must be 2-D, got {image.shape}")
    smoothed = gaussian_filter(image, smooth) if smooth > 0 else image
    if np.ptp(smoothed) == 0:
        raise ValueError("a constant survey image has no particle edge")
    threshold = threshold_multiotsu(smoothed, classes=int(classes))[-1]
    inside = smoothed > threshold
    if inside.all() or not inside.any():
        raise ValueError("the survey image shows no bright phase with an edge")
    return distance_transform_edt(inside) - distance_transform_edt(~inside)


def _rbf(a: torch.Tensor, b: torch.Tensor, lengthscale: torch.Tensor) -> torch.Tensor:
    d2 = torch.cdist(a / lengthscale, b / lengthscale).pow(2)
    return torch.exp(-0.5 * d2)


class _EdgeProfileGP(PyroModule):
    """The generative model: a hypothesis' physical mean over the edge distance + an RBF GP
    residual."""

    def __init__(self, hypothesis: str = "step") -> None:
        super().__init__()
        self.hypothesis = hypothesis

    def forward(self, xy: torch.Tensor, d: torch.Tensor, y: Optional[torch.Tensor] = None):
        p = {name: pyro.sample(name, _PRIORS[name]()) for name in HYPOTHESES[self.hypothesis][1]}
        lengthscale = pyro.sample("lengthscale", dist.LogNormal(np.log(10.0), 0.7))
        variance = pyro.sample("variance", dist.LogNormal(np.log(0.3), 1.0))
        noise = pyro.sample("noise", dist.LogNormal(np.log(0.1), 1.0))
        mean = physical_mean(self.hypothesis, p, d)
        cov = variance * _rbf(xy, xy, lengthscale)
        cov = cov + (noise + 1e-5) * torch.eye(len(xy), dtype=xy.dtype, device=xy.device)
        return pyro.sample("y", dist.MultivariateNormal(mean, covariance_matrix=cov), obs=y)
