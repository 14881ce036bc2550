"""Is there anything above the noise? The image's structure at the atoms' scale over what its
own pixel noise would give there, for every agent that finds atoms in a survey image.

An atom finder finds "atoms" in anything: on a frame of pure noise, in vacuum, or on a real
image searched at too small a scale (a pixel size given 2.4 x too large makes LoG* look for
columns 2.4 x closer than they are: on a noisy field it then finds noise maxima). Two
numbers say so, with no lattice and no labels:

* **structure over noise** (:func:`structure_map`): around every pixel, the spread of the
  image's curvature (a Laplacian of Gaussian) at the atoms' size, over what white noise of
  the image's own pixel noise gives there (measured from neighbouring pixels' differences,
  so a slow background does not count as noise). Pure noise reads about 1; the real
  graphene image and the ABF image of SrTiO3 read above :data:`FEATURELESS` everywhere;
* **atoms above their background** (:func:`atom_contrast`): each atom's smoothed intensity
  over the mean around it, in units of the smoothed image's noise there (noise maxima read
  about 1-2; real columns more).

Images are oriented (atoms bright); positions are ``(row, col)`` pixels.

>>> rng = np.random.default_rng(0)
>>> ratio = structure_map(rng.normal(0.0, 1.0, (96, 96)), 2.0)    # pure noise
>>> bool(0.8 < np.median(ratio) < FEATURELESS)
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "FEATURELESS",
    "MIN_WINDOW",
    "SCALES",
    "WINDOW_RADII",
    "atom_contrast",
    "band_gain",
    "clearest_structure",
    "noise_sigma",
    "structure_map",
    "structure_window",
]

#: below this ratio of the image's local structure to its noise a place reads as featureless
#: (pure noise: about 1 over a window)
FEATURELESS = 1.4
#: the window the structure is judged over, in atom radii (and at least MIN_WINDOW px)
WINDOW_RADII = 8.0
MIN_WINDOW = 32
#: the scales (times the atoms' radius) the structure is read at; the clearest one is used
SCALES = (1.0, 1.5, 2.0, 3.0)


def noise_sigma(image: np.ndarray, size: int) -> np.ndarray:
    """Local pixel noise: from the squared differences of neighbouring pixels (each has twice
    the noise variance), averaged over a ``size`` window; smooth contrast adds next to
    nothing to them."""
    dy = np.diff(image, axis=0, append=image[-1:, :])
    dx = np.diff(image, axis=1, append=image[:, -1:])
    # the appended edge row/column differs by 0: count only the real differences
    ny = np.ones_like(image)
    ny[-1, :] = 0
    nx = np.ones_like(image)
    nx[:, -1] = 0
    total = ndimage.uniform_filter(dy * dy + dx * dx, size, mode="reflect")
    count = ndimage.uniform_filter(ny + nx, size, mode="reflect")
    return np.sqrt(np.maximum(total / np.maximum(count, 1e-12), 0.0) / 2.0)


def band_gain(sigma: float) -> float:
    """The noise sigma :func:`structure_map`'s filter leaves of white noise of sigma 1: the
    root sum of squares of its response to one pixel."""
    reach = int(np.ceil(4 * sigma)) + 2
    impulse = np.zeros((2 * reach + 1, 2 * reach + 1))
    impulse[reach, reach] = 1.0
    return float(np.sqrt(np.sum(ndimage.gaussian_laplace(impulse, sigma, mode="constant") ** 2)))


def structure_window(radius: float) -> int:
    """The window (px) the structure is judged over for atoms of ``radius`` px."""
    return int(max(MIN_WINDOW, round(WINDOW_RADII * max(1.0, float(radius)))))


def structure_map(image: Any, radius: float, window: int | None = None) -> np.ndarray:
    """Per pixel: the image's structure at the atom scale over what its noise alone gives.

    The local standard deviation of the image's Laplacian of Gaussian at ``radius`` px (its
    curvature at the atoms' size), over a window of
    :data:`WINDOW_RADII` radii (at least :data:`MIN_WINDOW` px; or ``window`` px), divided
    by the local pixel noise times the smoothing's noise gain. White noise reads 1; columns
    above the noise read more.
    """
    img = np.asarray(image, dtype=np.float64)
    sigma = max(1.0, float(radius))
    size = int(window) if window else structure_window(sigma)
    # the image's curvature at the atoms' size (a Laplacian of Gaussian): a slow background
    # (a thickness or illumination ramp across a vacuum) is no structure, and an edge (a
    # flake's) shows only within a few sigma of it
    band = ndimage.gaussian_laplace(img, sigma, mode="reflect")
    mean = ndimage.uniform_filter(band, size, mode="reflect")
    square = ndimage.uniform_filter(band * band, size, mode="reflect")
    spread = np.sqrt(np.maximum(square - mean * mean, 0.0))
    gain = band_gain(sigma)  # what it leaves of white noise of sigma 1
    noise = noise_sigma(img, size) * gain
    floor = 1e-12 * max(1.0, float(np.max(np.abs(img))))
    # a constant field has neither structure nor noise: featureless (0)
    return np.where(noise > floor, spread / np.maximum(noise, floor), 0.0)


def clearest_structure(image: Any, radius: float) -> tuple[np.ndarray, float, int]:
    """:func:`structure_map` at the scale (of :data:`SCALES` times ``radius``) the image
    shows most structure at: ``(ratio map, that scale in px, the window in px)``.

    The same window at every scale, so a wider one does not win by reaching further; the
    clearest scale because an atom finder's idea of the atoms' radius can be small for
    broad, noisy columns (the real graphene image read half featureless at 2 px, not at
    3.5-4 px); noise reads ~1 at every scale.
    """
    img = np.asarray(image, dtype=np.float64)
    base = max(1.0, float(radius))
    window = structure_window(base)
    ratio, scale = None, base
    for factor in SCALES:
        candidate = structure_map(img, base * factor, window)
        if ratio is None or np.median(candidate) > np.median(ratio):
            ratio, scale = candidate, base * factor
    assert ratio is not None
    return ratio, float(scale), window


def atom_contrast(image: Any, atoms: Any, radius: float, window: int) -> np.ndarray:
    """Per atom: its intensity (smoothed at ``radius`` px) above the mean around it (a
    ``window`` px square), in noise sigma of the smoothed image there.

    Against the local background, in the local noise: a field half vacuum, half sample must
    not make the sample's atoms look bright.
    """
    img = np.asarray(image, dtype=np.float64)
    pts = np.asarray(atoms, dtype=np.float64).reshape(-1, 2)
    if not len(pts):
        return np.empty(0)
    sigma = max(1.0, float(radius))
    smooth = ndimage.gaussian_filter(img, sigma, mode="reflect")
    at = ndimage.map_coordinates(smooth, pts.T, order=1, mode="nearest")
    background = ndimage.uniform_filter(smooth, window, mode="reflect")
    noise = noise_sigma(img, window) / (2.0 * np.sqrt(np.pi) * sigma)
    lift = at - ndimage.map_coordinates(background, pts.T, order=1, mode="nearest")
    local_noise = ndimage.map_coordinates(noise, pts.T, order=1, mode="nearest")
    floor = 1e-12 * max(1.0, float(np.max(np.abs(img))))
    return lift / np.maximum(local_noise, floor)
