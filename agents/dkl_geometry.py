"""Where a DKL agent may put the beam: its candidate positions over the survey image, their
patches, the seed points measured before the model has anything to learn from, and whether
a position lies in the image.

Kept apart from :mod:`agents.dkl` (the agent's cycle) so each stays short; numpy only, the
patch geometry itself is in :mod:`agents.patches`.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, Union

import numpy as np

from .base import as_positions
from .dkl_seeds import SEED_ORDERS, feature_seeds
from .patches import candidate_grid, extract_patches, grid_points, spread_points

__all__ = [
    "SEED_MODES",
    "SEED_ORDERS",
    "inside_image",
    "make_seeds",
    "pixel_index",
    "place_candidates",
]

SEED_MODES = ("features", "spread", "random", "grid")


def place_candidates(
    image: np.ndarray,
    window: int,
    step: Optional[int],
    candidates: Optional[Any],
    normalise: Optional[str],
    border: str,
) -> Tuple[np.ndarray, np.ndarray, Optional[Tuple[int, int]]]:
    """The candidates and their patches, computed once per survey image.

    Args:
        image: the 2-D survey image.
        window: patch side, px.
        step: spacing of the candidate grid, px (ignored with explicit ``candidates``).
        candidates: explicit ``(N, 2)`` ``(x, y)`` positions instead of the grid, or None.
        normalise, border: patch normalisation and border handling (:mod:`agents.patches`).

    Returns:
        ``(patches, candidates, grid_shape)``: the patches, the ``(N, 2)`` ``(x, y)``
        candidates kept, and the grid's ``(rows, columns)`` (None for explicit candidates).
    """
    grid_shape: Optional[Tuple[int, int]]
    if candidates is None:
        xy = candidate_grid(image.shape, step, window, border)
        cols = np.unique(xy[:, 0])
        rows = np.unique(xy[:, 1])
        grid_shape = (len(rows), len(cols))
    else:
        xy = as_positions(candidates)
        grid_shape = None
    patches, kept = extract_patches(image, window, xy, 1, normalise, border)
    return patches, kept, grid_shape


def pixel_index(candidates: np.ndarray) -> dict:
    """``{(x, y) pixel: candidate index}``, to find a measured pixel among the candidates."""
    return {(int(x), int(y)): i for i, (x, y) in enumerate(np.rint(candidates))}


def make_seeds(
    seed_points: Union[str, Any],
    n_seed: int,
    shape: Tuple[int, int],
    candidates: np.ndarray,
    rng: np.random.Generator,
    image: Optional[np.ndarray] = None,
    window: Optional[int] = None,
    features: Optional[np.ndarray] = None,
    order: str = "objects",
    contrast: str = "bright",
) -> List[Tuple[float, float]]:
    """The positions measured first, before the model can fit.

    Args:
        seed_points: ``"features"``, ``"spread"``, ``"random"``, ``"grid"`` (see
            :class:`~agents.dkl.DKLAgent`) or ``(M, 2)`` ``(x, y)`` positions.
        n_seed: how many (for the named modes).
        shape: the survey image's ``(rows, columns)``.
        candidates: the ``(N, 2)`` candidate positions.
        rng: the agent's random generator (the named modes but ``"grid"`` draw from it).
        image, window, features: the survey image, the patch side (px) and the candidates'
            ``(N, D)`` patch features; needed by ``"features"`` (:mod:`agents.dkl_seeds`).
        order, contrast: the order of the ``"features"`` seed points by kind, and whether
            the specimen's objects are bright or dark in ``image``
            (:func:`agents.dkl_seeds.feature_seeds`).

    Raises:
        ValueError: an unknown mode, a negative ``n_seed``, or positions outside the image.
    """
    if isinstance(seed_points, str):
        if seed_points not in SEED_MODES:
            raise ValueError(f"seed_points must be {SEED_MODES} or positions, got {seed_points!r}")
        if n_seed < 0:
            raise ValueError(f"n_seed must be >= 0, got {n_seed}")
        n_seed = min(n_seed, len(candidates))
        if seed_points == "random":
            idx = rng.choice(len(candidates), size=n_seed, replace=False)
            return [tuple(candidates[i]) for i in idx]
        if seed_points == "features":
            if image is None or window is None or features is None:
                raise ValueError('seed_points="features" needs the image, window and features')
            picks = feature_seeds(image, window, candidates, features, n_seed, rng, order, contrast)
            return [tuple(candidates[i]) for i in picks]
        if seed_points == "spread":
            picks = spread_points(shape, n_seed, candidates, rng)
            return [tuple(candidates[i]) for i in picks]
        return [tuple(p) for p in grid_points(shape, n_seed)]
    pts = as_positions(seed_points)
    rows, cols = shape
    if np.any((pts[:, 0] < -0.5) | (pts[:, 0] > cols - 0.5)):
        raise ValueError(f"seed points must lie in the image (x in 0..{cols - 1})")
    if np.any((pts[:, 1] < -0.5) | (pts[:, 1] > rows - 0.5)):
        raise ValueError(f"seed points must lie in the image (y in 0..{rows - 1})")
    return [tuple(p) for p in pts]


def inside_image(positions: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Which ``(x, y)`` positions lie on a pixel of an image of ``(rows, columns)``."""
    rows, cols = shape
    return (
        (positions[:, 0] >= -0.5)
        & (positions[:, 0] <= cols - 0.5)
        & (positions[:, 1] >= -0.5)
        & (positions[:, 1] <= rows - 0.5)
    )
