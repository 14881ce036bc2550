"""What a lattice looks like: a synthetic HAADF image of it, to check a setting against.

Columns are Gaussians of brightness ``sum Z**1.7`` (the lattice's ``brightness``), on a
rotated, shifted lattice, with optional shot noise. Made for checks where no real image
exists (the WS2 case in ``tests/agents/logstar/test_plausibility.py``): a far cry from a
multislice simulation, but with the right geometry and the right brightness order.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

from .lattice import Lattice, check_pixel_size

__all__ = ["lattice_sites", "render_lattice"]


def lattice_sites(
    lattice: Lattice,
    shape: Tuple[int, int],
    pixel_size_nm: float,
    rotation_deg: float = 0.0,
    shift_px: Tuple[float, float] = (0.0, 0.0),
    margin_px: float = 0.0,
) -> Tuple[np.ndarray, np.ndarray]:
    """Every column of the lattice in (and ``margin_px`` around) an image.

    Returns:
        ``(sites, column)``: ``(N, 2)`` ``(row, col)`` pixels and the basis index of each.
    """
    px = check_pixel_size(pixel_size_nm)
    cell = np.asarray(lattice.cell, dtype=float) / px
    t = math.radians(rotation_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    cell = cell @ rot.T  # rows: the two cell vectors (x, y) in pixels
    rows, cols = shape
    extent = math.hypot(rows, cols) + 2 * margin_px
    n = math.ceil(extent / min(np.linalg.norm(cell, axis=1))) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1))
    cells = np.column_stack([i.ravel(), j.ravel()]).astype(float)
    basis = np.asarray(lattice.basis, dtype=float)
    frac = (cells[:, None, :] + basis[None, :, :]).reshape(-1, 2)
    xy = frac @ cell + np.array([cols / 2 + shift_px[1], rows / 2 + shift_px[0]])
    kind = np.tile(np.arange(len(basis)), len(cells))
    keep = (
        (xy[:, 0] >= -margin_px)
        & (xy[:, 0] <= cols - 1 + margin_px)
        & (xy[:, 1] >= -margin_px)
        & (xy[:, 1] <= rows - 1 + margin_px)
    )
    return xy[keep][:, ::-1], kind[keep]


def render_lattice(
    lattice: Lattice,
    shape: Tuple[int, int],
    pixel_size_nm: float,
    rotation_deg: float = 0.0,
    shift_px: Tuple[float, float] = (0.0, 0.0),
    sigma_nm: float = 0.045,
    counts: Optional[float] = None,
    seed: int = 0,
) -> np.ndarray:
    """A synthetic HAADF image of a lattice, float64, brightest column ~1.

    Args:
        lattice: what to draw (its ``brightness`` sets each column's; equal when unknown).
        shape: ``(rows, cols)``.
        pixel_size_nm: nm per pixel.
        rotation_deg, shift_px: the lattice's orientation and offset from the image centre.
        sigma_nm: the probe's (and the column's) Gaussian width, nm.
        counts: electrons per pixel at the brightest column for Poisson noise; None: none.
        seed: the noise's seed.

    Example:
        >>> from agents.logstar import get_lattice
        >>> img = render_lattice(get_lattice("WS2"), (64, 64), 0.02)
        >>> img.shape, round(float(img.max()), 1)
        ((64, 64), 1.0)
    """
    px = check_pixel_size(pixel_size_nm)
    sigma = sigma_nm / px
    sites, kind = lattice_sites(lattice, shape, px, rotation_deg, shift_px, margin_px=4 * sigma)
    bright = np.asarray(lattice.brightness or [1.0] * len(lattice.basis), dtype=float)
    bright = bright / bright.max()
    image = np.zeros(shape)
    yy, xx = np.indices(shape)
    reach = math.ceil(4 * sigma)
    for (r, c), k in zip(sites, kind):
        r0, r1 = max(0, int(r) - reach), min(shape[0], int(r) + reach + 2)
        c0, c1 = max(0, int(c) - reach), min(shape[1], int(c) + reach + 2)
        if r0 >= r1 or c0 >= c1:
            continue
        d2 = (yy[r0:r1, c0:c1] - r) ** 2 + (xx[r0:r1, c0:c1] - c) ** 2
        image[r0:r1, c0:c1] += bright[k] * np.exp(-d2 / (2 * sigma**2))
    image /= max(float(image.max()), 1e-12)
    if counts is not None:
        image = np.random.default_rng(seed).poisson(image * counts) / counts
    return image
