"""A tiny synthetic microscope for the ensemble tests: Gaussian atoms on a lattice + noise.

Enough to exercise the machinery (shapes, seeds, variance, tiling, storage); accuracy is
measured against the digital twin in benchmarks/ensemble.py.
"""

from __future__ import annotations

import numpy as np
import pytest


def lattice_image(
    rng: np.random.Generator,
    size: int = 32,
    spacing: float = 6.0,
    sigma: float = 1.2,
    noise: float = 0.1,
    angle: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A square lattice of Gaussian atoms with random rotation and offset, plus noise.

    Returns:
        ``(image (size, size) float32, atoms (N, 2) as (row, col))``.
    """
    theta = rng.uniform(0, np.pi / 2) if angle is None else angle
    c, s = np.cos(theta), np.sin(theta)
    n = int(size / spacing) + 3
    ij = np.stack(np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1)), -1).reshape(-1, 2)
    offset = rng.uniform(0, spacing, size=2)
    pts = spacing * ij @ np.array([[c, -s], [s, c]]) + size / 2 + offset
    pts = pts[np.all((pts >= 0) & (pts <= size - 1), axis=1)]
    rows, cols = np.mgrid[0:size, 0:size]
    image = np.zeros((size, size))
    for r, q in pts:
        image += np.exp(-((rows - r) ** 2 + (cols - q) ** 2) / (2 * sigma**2))
    image += noise * rng.standard_normal(image.shape)
    return image.astype(np.float32), pts


@pytest.fixture
def make_images():
    """``make_images(n, seed=0, **lattice_kwargs) -> (images (n, H, W), atoms list)``."""

    def make(n: int, seed: int = 0, **kwargs):
        rng = np.random.default_rng(seed)
        pairs = [lattice_image(rng, **kwargs) for _ in range(n)]
        return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]

    return make


#: a tiny, fast architecture and schedule: checks the machinery, not accuracy
TINY = dict(
    members=2,
    steps=40,
    levels=1,
    base_filters=8,
    crop_size=32,
    batch_size=4,
    num_threads=1,
)


@pytest.fixture(scope="session")
def tiny_settings():
    """Training settings of the tiny ensemble (:data:`TINY`)."""
    from agents.ensemble import TrainingSettings

    return TrainingSettings(**TINY)


@pytest.fixture(scope="session")
def tiny_data():
    """Six 32x32 lattice images with their atoms (row, col)."""
    rng = np.random.default_rng(1)
    pairs = [lattice_image(rng, size=32) for _ in range(6)]
    return np.stack([p[0] for p in pairs]), [p[1] for p in pairs]


@pytest.fixture(scope="session")
def tiny_ensemble(tiny_data, tiny_settings):
    """A 2-member, 1-level ensemble trained for 40 steps (shared: do not modify it)."""
    from agents.ensemble import train_ensemble

    images, atoms = tiny_data
    return train_ensemble(images, atoms, tiny_settings, description={"tiny": True})
