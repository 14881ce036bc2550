"""Atom positions -> training targets: one small disc (or Gaussian) per atom.

Positions here are ``(row, col)`` pixel coordinates of the image, floats, ``(0, 0)`` the
centre of the top-left pixel (the array-index order that scikit-image and the reference
coordinate files use; agents convert to the beam's ``x`` = column, ``y`` = row at their
boundary).

The disc radius matters: too small and the network learns little per atom, too large and the
discs of neighbouring atoms merge, so the predictor can no longer tell them apart. The
default ``radius="auto"`` scales it with the lattice: a quarter of the median
nearest-neighbour distance of the image's atoms, clipped to 1.5-4 pixels, so a coarsely
sampled graphene image (C-C distance ~3 px) and a finely sampled one (~18 px) both get
separable targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["as_atom_positions", "atom_mask", "auto_radius", "nearest_neighbour_distance"]

#: clip range of the automatic disc radius, in pixels
AUTO_RADIUS_RANGE = (1.5, 4.0)
#: fraction of the nearest-neighbour distance used as automatic radius
AUTO_RADIUS_FRACTION = 0.25

Radius = Union[float, str]


def as_atom_positions(positions: object, name: str = "positions") -> np.ndarray:
    """Coerce atom positions to a float64 ``(N, 2)`` array of ``(row, col)``.

    Extra columns (a class label, a blob sigma) are dropped; an empty input gives ``(0, 2)``.

    Raises:
        ValueError: not readable as ``(N, >=2)`` finite numbers.
    """
    try:
        pts = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an (N, 2) array of (row, col): {exc}") from None
    if pts.size == 0:
        return np.empty((0, 2))
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f"{name} must have shape (N, 2) as (row, col), got {pts.shape}")
    pts = pts[:, :2]
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"{name} must be finite")
    return pts


def nearest_neighbour_distance(positions: object) -> float:
    """Median distance from each atom to its nearest neighbour, pixels (NaN below 2 atoms).

    Example:
        >>> nearest_neighbour_distance([[0, 0], [0, 10], [10, 0]])
        10.0
    """
    pts = as_atom_positions(positions)
    if len(pts) < 2:
        return float("nan")
    d, _ = cKDTree(pts).query(pts, k=2)
    return float(np.median(d[:, 1]))


def auto_radius(positions: np.ndarray, fraction: float = AUTO_RADIUS_FRACTION) -> float:
    """Disc radius in pixels from the atoms' median nearest-neighbour distance.

    Args:
        positions: ``(N, 2)`` atom positions of one image, pixels.
        fraction: radius as a fraction of the nearest-neighbour distance.

    Returns:
        ``fraction * median_nn_distance`` clipped to :data:`AUTO_RADIUS_RANGE`; the upper
        end of the range when there are fewer than two atoms.

    Example:
        >>> auto_radius(np.array([[0, 0], [0, 10], [10, 0]]))
        2.5
    """
    lo, hi = AUTO_RADIUS_RANGE
    nn = nearest_neighbour_distance(positions)
    if not np.isfinite(nn):
        return hi
    return float(np.clip(fraction * nn, lo, hi))


def atom_mask(
    positions: object,
    shape: Sequence[int],
    radius: Radius = "auto",
    kind: str = "disc",
) -> np.ndarray:
    """Training target for one image: 1 on atoms, 0 elsewhere.

    Args:
        positions: ``(N, 2)`` atom positions ``(row, col)`` in pixels; atoms outside the
            image still mark the pixels of their disc that fall inside it.
        shape: ``(height, width)`` of the image.
        radius: disc radius in pixels (for ``kind="gaussian"``: the Gaussian's sigma), or
            ``"auto"`` (see :func:`auto_radius`).
        kind: ``"disc"`` (binary, the default) or ``"gaussian"`` (peaks of 1 at each atom,
            the maximum where Gaussians overlap).

    Returns:
        float32 array of ``shape`` with values in [0, 1].

    Example:
        >>> m = atom_mask([[4, 4]], (9, 9), radius=1.5)
        >>> int(m.sum())
        9
    """
    pts = as_atom_positions(positions)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (height, width) with positive sides, got {shape}")
    h, w = int(shape[0]), int(shape[1])
    r = auto_radius(pts) if radius == "auto" else float(radius)
    if not np.isfinite(r) or r <= 0:
        raise ValueError(f"radius must be > 0 or 'auto', got {radius!r}")
    if kind not in ("disc", "gaussian"):
        raise ValueError(f"kind must be 'disc' or 'gaussian', got {kind!r}")
    mask = np.zeros((h, w), dtype=np.float32)
    # Paint each atom in a small window around it instead of evaluating every atom on the
    # whole image: O(N r²) instead of O(N H W).
    reach = int(np.ceil(3 * r if kind == "gaussian" else r)) + 1
    offsets = np.arange(-reach, reach + 1)
    for row, col in pts:
        r0, c0 = int(np.rint(row)), int(np.rint(col))
        rows = r0 + offsets
        cols = c0 + offsets
        rows = rows[(rows >= 0) & (rows < h)]
        cols = cols[(cols >= 0) & (cols < w)]
        if rows.size == 0 or cols.size == 0:
            continue
        d2 = (rows[:, None] - row) ** 2 + (cols[None, :] - col) ** 2
        if kind == "disc":
            value = (d2 <= r * r).astype(np.float32)
        else:
            value = np.exp(-0.5 * d2 / (r * r)).astype(np.float32)
        window = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        np.maximum(window, value, out=window)
    return mask
