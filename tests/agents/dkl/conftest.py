"""Synthetic scenes with known answers for the adaptive-EELS agent tests."""

from __future__ import annotations

from typing import Tuple

import numpy as np
import pytest
from scipy import ndimage

#: small DKL settings: a handful of steps on a 48 x 48 field takes a second or two
FAST_DKL = {
    "window": 9,
    "step": 2,
    "train_iters": 60,
    "finetune_iters": 10,
    "n_seed": 4,
    "num_threads": 1,
}


def particle_scene(seed: int = 0, size: int = 48) -> Tuple[np.ndarray, np.ndarray]:
    """A survey image of dim and bright discs on a noisy support, and the "spectral" truth.

    The truth is high only on the *bright* discs (like the 20-30 eV counts on gold and not
    on silver or carbon) and peaks at the centre of the brightest, largest one, so an agent
    must learn from the image what makes a place worth measuring.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    image = 0.05 * rng.standard_normal((size, size))
    truth = np.zeros((size, size))
    # (x, y, radius, brightness): one bright big disc, one bright small, three dim ones
    discs = [(0.72, 0.70, 5.0, 1.0), (0.25, 0.30, 3.0, 0.9)]
    discs += [(rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85), 4.0, 0.35) for _ in range(3)]
    for fx, fy, r, bright in discs:
        cx, cy = fx * size, fy * size
        depth = np.sqrt(np.clip(r * r - (xx - cx) ** 2 - (yy - cy) ** 2, 0, None))
        image += bright * depth / r
        if bright > 0.5:
            truth = np.maximum(truth, depth)
    truth = ndimage.gaussian_filter(truth, 1.0) + 0.05
    return image, truth


@pytest.fixture
def scene() -> Tuple[np.ndarray, np.ndarray]:
    return particle_scene(0)


def step_image(size: int = 40, column: int = 20) -> np.ndarray:
    """A vertical interface: dark left of ``column``, bright from it on."""
    image = np.zeros((size, size))
    image[:, column:] = 1.0
    return image


def plasmon_spectrum(
    energy: np.ndarray, centre: float = 15.0, width: float = 2.0, height: float = 100.0
) -> np.ndarray:
    """A Gaussian 'plasmon peak' on a flat background of 1 count per channel."""
    return 1.0 + height * np.exp(-0.5 * ((energy - centre) / width) ** 2)


@pytest.fixture
def make_scene():
    """``make_scene(seed, size)``: see :func:`particle_scene`."""
    return particle_scene


@pytest.fixture
def fast_dkl() -> dict:
    """Small, fast DKLAgent settings (a fresh copy per test)."""
    return dict(FAST_DKL)


@pytest.fixture
def make_step_image():
    return step_image


@pytest.fixture
def make_plasmon():
    return plasmon_spectrum
