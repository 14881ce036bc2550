"""The pixel size from the spacing of the atoms an image shows: the fallback of the FFT's.

:mod:`~agents.logstar.calibration` reads the pixel size from the lattice's reflections. On a
small field it cannot: the reflections' power grows with the field's area, and below a few
unit cells each way they sink into the noise (on the real graphene image, 0.0077 nm/px,
fields up to about 128 px: the transform then finds no spot, or too few to say which ring
is which, and reads the size x sqrt 3). The atoms themselves are still there to be counted,
and their spacing in pixels against the lattice's in nm gives the pixel size.

:func:`estimate_from_neighbours` finds the bright blobs at a range of scales (a difference of
Gaussians, no pixel size needed) and keeps the finest scale whose blobs are regular (their
nearest distances within 20 % of each other, interquartile range over median) and found
alike at a neighbouring scale (noise blobs thin out by a third from one scale to the next);
the spacing is the median of each blob's ``z`` nearest distances (``z`` the lattice's
coordination: 3 on graphene, 4 on a square lattice), blobs near the field's edge left out;
the next shell of neighbours must sit about where the lattice puts it (not a pattern of
merged pairs).
Why ``z`` of them and not the nearest one only: the nearest of three noisy distances is
biased short (3 % on the real graphene image); the median of all three is not.

It is a fallback: a false or missing column shifts it more than it shifts the reflections,
and it cannot tell a lattice from one with the same spacing. The agent uses it only when the
transform does not show the lattice clearly, and says so. Numpy and scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .lattice import Lattice

__all__ = ["NeighbourEstimate", "coordination", "estimate_from_neighbours", "next_shell_ratio"]

#: fewest blobs (away from the edge) a spacing is taken from
MIN_ATOMS = 8
#: the blobs' nearest distances must agree this well (interquartile range over median)
MAX_SPREAD = 0.2
#: the blobs' next-shell distance over the lattice's (:func:`next_shell_ratio`) must lie here
SHELL_RANGE = (0.7, 1.1)
_SCALES = 16


@dataclass
class NeighbourEstimate:
    """The pixel size from the atoms' spacing.

    Attributes:
        pixel_size_nm: the lattice's nearest-neighbour distance (nm) over the blobs' (px).
        spacing_px: the blobs' nearest-neighbour distance, px.
        n_atoms: blobs the spacing was taken from (away from the edge).
        spread: interquartile range of their nearest distances over the median.
        sigma_px: the blob scale used, px.
        shell_ratio: the blobs' ``z + 1``-th nearest distance over their spacing (the
            lattice's: :func:`next_shell_ratio`).
    """

    pixel_size_nm: float
    spacing_px: float
    n_atoms: int
    spread: float
    sigma_px: float
    shell_ratio: float

    def as_dict(self) -> Dict[str, Any]:
        """JSON-able."""
        return {
            "pixel_size_nm": self.pixel_size_nm,
            "spacing_px": self.spacing_px,
            "n_atoms": self.n_atoms,
            "spread": self.spread,
            "sigma_px": self.sigma_px,
            "shell_ratio": self.shell_ratio,
        }


def _shells(lattice: Lattice) -> np.ndarray:
    """Each counted column's distances to the others (nm), sorted, averaged over the basis."""
    cell = np.asarray(lattice.cell, dtype=float)
    basis = np.asarray(lattice.basis, dtype=float) % 1.0
    shifts = np.array([(i, j) for i in range(-3, 4) for j in range(-3, 4)], dtype=float)
    sites = (basis[None, :, :] + shifts[:, None, :]).reshape(-1, 2) @ cell
    origin = basis @ cell
    d = np.sort(np.linalg.norm(sites[None, :, :] - origin[:, None, :], axis=2), axis=1)
    return d[:, 1:].mean(axis=0)  # the column itself (0) left out


def next_shell_ratio(lattice: Lattice) -> float:
    """The distance to a column's ``z + 1``-th nearest counted column over its nearest
    (``z`` the coordination): 1.73 on graphene, 1.41 on a square lattice."""
    return float(_shells(lattice)[coordination(lattice)] / lattice.nn_distance_nm)


def coordination(lattice: Lattice) -> int:
    """How many counted columns sit at the nearest-neighbour distance of one (on average,
    rounded; at least 1): 3 on graphene, 4 on a square lattice, 6 on a hexagonal one.

    Example:
        >>> from agents.logstar.lattice import graphene
        >>> coordination(graphene())
        3
    """
    cell = np.asarray(lattice.cell, dtype=float)
    basis = np.asarray(lattice.basis, dtype=float) % 1.0
    shifts = np.array([(i, j) for i in range(-2, 3) for j in range(-2, 3)], dtype=float)
    sites = (basis[None, :, :] + shifts[:, None, :]).reshape(-1, 2) @ cell
    origin = basis @ cell
    d = np.linalg.norm(sites[None, :, :] - origin[:, None, :], axis=2)
    nn = lattice.nn_distance_nm
    counts = ((d > 1e-9) & (d < 1.05 * nn)).sum(axis=1)
    return max(1, round(float(counts.mean())))


def estimate_from_neighbours(image: Any, lattice: Lattice) -> Optional[NeighbourEstimate]:
    """The pixel size from the spacing of the image's bright blobs (module docstring).

    Args:
        image: 2-D image, columns bright (HAADF, or a bright-field image inverted).
        lattice: the lattice the columns form (its nearest-neighbour distance, nm).

    Returns:
        The estimate, or None when no scale shows at least :data:`MIN_ATOMS` blobs away
        from the edge, regular, found alike at a neighbouring scale and with their next
        shell of neighbours where the lattice puts it.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 8 or not np.all(np.isfinite(img)):
        return None
    z = coordination(lattice)
    shell = next_shell_ratio(lattice)
    sigmas = np.geomspace(0.8, max(1.0, min(img.shape) / 8.0), _SCALES)
    found = [_spacing_at(img, float(sigma), z) for sigma in sigmas]
    counts = [0 if f is None else f[1] for f in found]
    best: Optional[NeighbourEstimate] = None
    for i, (sigma, f) in enumerate(zip(sigmas, found)):
        if f is None or f[2] > MAX_SPREAD:
            continue
        spacing, n_atoms, spread, found_shell = f
        # the next shell where the lattice puts it: merged pairs (Si[110]'s dumbbells
        # unresolved) put it 15-25 % farther; extra blobs pull it in (to 0.76 of it on
        # the real graphene crops), so only a loose lower bound
        if not SHELL_RANGE[0] <= found_shell / shell <= SHELL_RANGE[1]:
            continue
        # columns are found alike at two neighbouring scales; noise blobs thin out by a
        # third from one scale to the next, and at one of them can look regular by chance
        near = [counts[k] for k in (i - 1, i + 1) if 0 <= k < len(counts)]
        if not any(0.75 * n_atoms <= c <= n_atoms / 0.75 for c in near):
            continue
        # the finest regular pattern is the columns' (a coarser scale merges columns into
        # a sparser pattern that can be as regular)
        if best is None or (n_atoms, -spread) > (best.n_atoms, -best.spread):
            best = NeighbourEstimate(
                pixel_size_nm=float(lattice.nn_distance_nm / spacing),
                spacing_px=spacing,
                n_atoms=n_atoms,
                spread=spread,
                sigma_px=float(sigma),
                shell_ratio=found_shell,
            )
    return best


def _spacing_at(img: np.ndarray, sigma: float, z: int) -> Optional[tuple]:
    """``(spacing px, blobs used, spread, next-shell ratio)`` of the blobs at one scale, or
    None."""
    band = ndimage.gaussian_filter(img, sigma) - ndimage.gaussian_filter(img, 1.6 * sigma)
    radius = max(1, round(sigma))
    size = 2 * radius + 1
    level = float(band.mean() + band.std())
    peaks = (band == ndimage.maximum_filter(band, size=size)) & (band > level)
    rows, cols = np.nonzero(peaks)
    if len(rows) < MIN_ATOMS + z + 1:
        return None
    # to a fraction of a pixel: the response's centre of mass over the peak's neighbourhood
    pts = np.empty((len(rows), 2))
    weights = np.clip(band - level, 0.0, None)
    for i, (r, c) in enumerate(zip(rows, cols)):
        r0, r1 = max(r - radius, 0), min(r + radius + 1, img.shape[0])
        c0, c1 = max(c - radius, 0), min(c + radius + 1, img.shape[1])
        w = weights[r0:r1, c0:c1]
        yy, xx = np.mgrid[r0:r1, c0:c1]
        total = float(w.sum())
        pts[i] = (float((w * yy).sum()) / total, float((w * xx).sum()) / total) if total else (r, c)
    d, _ = cKDTree(pts).query(pts, k=z + 2)
    nearest = d[:, 1]
    spacing0 = float(np.median(nearest))
    if spacing0 < 2.5 * sigma:  # blobs closer than their own size: noise, not columns
        return None
    # blobs at least half a spacing inside the field: their neighbours are all in it
    margin = 0.5 * spacing0
    inside = (
        (pts[:, 0] >= margin)
        & (pts[:, 0] <= img.shape[0] - 1 - margin)
        & (pts[:, 1] >= margin)
        & (pts[:, 1] <= img.shape[1] - 1 - margin)
    )
    if inside.sum() < MIN_ATOMS:
        return None
    q1, median, q3 = np.percentile(nearest[inside], [25, 50, 75])
    spacing = float(np.median(d[inside, 1 : z + 1]))
    return (
        spacing,
        int(inside.sum()),
        float((q3 - q1) / median),
        float(np.median(d[inside, z + 1])) / spacing,
    )
