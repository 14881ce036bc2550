"""Acquisition functions: how a model's prediction and uncertainty become the next position.

Pure numpy/scipy, so any agent with a mean and a standard deviation per candidate can use
them (the DKL agent does; a plain GP or an ensemble could).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

__all__ = ["ACQUISITIONS", "acquisition_values"]

#: the acquisition functions, by the names the console and the command line use
ACQUISITIONS = ("ei", "ucb", "uncertainty")


def acquisition_values(
    name: str, mean: np.ndarray, std: np.ndarray, best: float, xi: float = 0.01, beta: float = 1.0
) -> np.ndarray:
    """Acquisition function values (larger = measure sooner), for a maximised scalar.

    Args:
        name: ``"ei"``: expected improvement over ``best`` by at least ``xi``;
            ``"ucb"``: ``mean + sqrt(beta) * std``; ``"uncertainty"``: ``std`` (pure
            exploration, to map the whole field).
        mean, std: predicted mean and standard deviation at each candidate.
        best: the best value measured so far (same units as ``mean``).
        xi: EI's exploration margin, in the units of ``mean``; larger favours uncertain
            places over near-certain small gains.
        beta: UCB's exploration weight (the botorch convention: ``sqrt(beta)`` multiplies
            the std).

    Raises:
        ValueError: unknown name.

    Example:
        >>> acquisition_values("ucb", np.array([0.0, 1.0]), np.array([1.0, 0.0]), 1.0, beta=4)
        array([2., 1.])
    """
    mean = np.asarray(mean, dtype=np.float64)
    std = np.maximum(np.asarray(std, dtype=np.float64), 0.0)
    if name == "uncertainty":
        return std.copy()
    if name == "ucb":
        return mean + np.sqrt(beta) * std
    if name == "ei":
        improvement = mean - best - xi
        safe = np.where(std > 0, std, 1.0)
        z = improvement / safe
        ei = improvement * norm.cdf(z) + std * norm.pdf(z)
        # a certain prediction improves by exactly its margin, or not at all
        return np.where(std > 0, ei, np.maximum(improvement, 0.0))
    raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {name!r}")
