"""Synthetic atom images with known truth, and the real images, for the LoG* tests."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import pytest

from agents.logstar.lattice import Lattice, graphene

#: pixel size of the synthetic graphene images: nearest neighbours 14.2 px apart
SYNTH_PIXEL_NM = 0.01


def render_lattice(
    lattice: Lattice,
    shape: Tuple[int, int] = (128, 128),
    pixel_size_nm: float = SYNTH_PIXEL_NM,
    rotation_deg: float = 7.0,
    width_px: float = 3.0,
    dopant_fraction: float = 0.0,
    dopant_amplitude: float = 3.0,
    noise: float = 0.0,
    background: float = 0.1,
    seed: int = 0,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A HAADF-like image of a lattice: a Gaussian per column, optional bright dopants and
    Gaussian noise.

    Returns:
        ``image`` (float64), ``truth`` ``(N, 2)`` (row, col) of the columns inside the image,
        ``kinds`` ``(N,)`` 0 for host atoms, 1 for dopants.
    """
    rng = np.random.default_rng(seed)
    rows, cols = shape
    theta = np.radians(rotation_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    cell = np.asarray(lattice.cell) @ rot.T / pixel_size_nm  # rows: cell vectors, px (x, y)
    basis = np.asarray(lattice.basis) @ cell
    extent = int(np.ceil(max(rows, cols) / min(np.linalg.norm(cell, axis=1)))) * 2 + 2
    ij = np.array([(i, j) for i in range(-extent, extent) for j in range(-extent, extent)])
    origin = np.array([cols * 0.37, rows * 0.41])
    sites = (ij @ cell)[:, None, :] + basis[None, :, :] + origin
    xy = sites.reshape(-1, 2)
    margin = 4 * width_px
    near = (
        (xy[:, 0] > -margin)
        & (xy[:, 0] < cols - 1 + margin)
        & (xy[:, 1] > -margin)
        & (xy[:, 1] < rows - 1 + margin)
    )
    xy = xy[near]
    kinds = (rng.random(len(xy)) < dopant_fraction).astype(int)
    amp = np.where(kinds == 1, dopant_amplitude, 1.0)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(float)
    image = np.full(shape, background)
    for (x, y), a in zip(xy, amp):
        image += a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * width_px**2))
    if noise:
        image += noise * rng.standard_normal(shape)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= cols - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= rows - 1)
    truth = xy[inside][:, ::-1].copy()
    return image, truth, kinds[inside]


@pytest.fixture(scope="session")
def graphene_image():
    """A clean-ish synthetic graphene image, 128², with a few bright dopants."""
    return render_lattice(graphene(), dopant_fraction=0.06, noise=0.05, seed=1)


@pytest.fixture(scope="session")
def real_graphene(shared_data: Path):
    """The real HAADF image of graphene with a Si dopant, its reference atoms (row, col) and
    its pixel size (nm), derived from the reference's nearest-neighbour spacing."""
    from scipy.spatial import cKDTree

    image = np.load(shared_data / "G-Si-2nm.npy")
    coords = np.load(shared_data / "G-Si-2nm-coords.npy")[:, :2]
    d, _ = cKDTree(coords).query(coords, k=2)
    pixel_nm = graphene().nn_distance_nm / float(np.median(d[:, 1]))
    return image, coords, pixel_nm


@pytest.fixture(scope="session")
def stem_abf(shared_data: Path):
    """A 160² crop of the real 512² STEM annular-bright-field image (uint16)."""
    pytest.importorskip("rsciio")
    from rsciio.hspy import file_reader

    data = file_reader(str(shared_data / "stem_abf_data.hspy"))[0]["data"]
    return np.asarray(data)[100:260, 200:360]
