"""Image patches around beam positions: the structural input of Deep Kernel Learning.

DKL learns "what the spectrum will say" from "what the survey image looks like around here":
each candidate beam position is described by the ``window x window`` pixels around it.

Normalisation matters for EELS discovery: a gold particle is *brighter* than a silver plate in
HAADF, so ``normalise="image"`` (the default) rescales the whole image to ``[0, 1]`` once and
keeps that contrast between patches; ``"patch"`` makes every patch zero-mean, unit-variance
(shape only, brightness thrown away); ``None`` keeps raw counts.

Border handling: ``"reflect"`` pads the image by mirroring so every pixel can be a candidate;
``"exclude"`` keeps only the positions whose whole window lies inside the image.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .images import survey_image_array

__all__ = [
    "MAX_CANDIDATES",
    "WINDOW_FRACTION",
    "WINDOW_LIMITS",
    "candidate_grid",
    "default_step",
    "default_window",
    "extract_patches",
    "grid_points",
    "spread_points",
]

NORMALISATIONS = ("image", "patch", None)
BORDERS = ("reflect", "exclude")

#: the candidate grid's default step keeps the candidates at or under this many: every pixel
#: of a field up to 64 x 64 (or 48 x 85...), every 2nd of one up to 128 x 128
MAX_CANDIDATES = 4096
#: the default window is this fraction of the field's shorter side (13 px on a 48 x 80
#: atomic-resolution field, chosen on held-out-free "dev" fields of the assembled replay)...
WINDOW_FRACTION = 0.27
#: ... but never smaller than this (a patch must show a neighbourhood) nor larger (24 px:
#: the size chosen on the twin's particles at 128 x 128)
WINDOW_LIMITS = (5, 24)


def default_step(shape: Tuple[int, int], max_candidates: int = MAX_CANDIDATES) -> int:
    """The candidate grid's step for a field: 1 (every pixel) while the field has at most
    ``max_candidates`` pixels, else the smallest step that brings it under.

    Why every pixel on a small field: there a feature can be one or two pixels across (an
    atomic column in a 48 x 80 spectrum image), and a grid of every 2nd pixel can miss its
    centre altogether. Why a bound: each step predicts at every candidate.

    Example:
        >>> default_step((48, 80)), default_step((128, 128)), default_step((512, 512))
        (1, 2, 8)
    """
    pixels = int(shape[0]) * int(shape[1])
    return max(1, int(np.ceil(np.sqrt(pixels / max_candidates) - 1e-9)))


def default_window(shape: Tuple[int, int]) -> int:
    """The patch side for a field: :data:`WINDOW_FRACTION` of its shorter side, within
    :data:`WINDOW_LIMITS` px, and never larger than the field's longer side.

    The window should show what predicts the spectrum (a particle and its edge, an atomic
    column and its neighbours) and not half the field: 24 px suits the twin's 300 nm
    particle field at 128 x 128; on a 50-pixel-high spectrum image it would see half of it.

    Example:
        >>> default_window((128, 128)), default_window((48, 80)), default_window((16, 300))
        (24, 13, 5)
        >>> default_window((3, 3)), default_window((3, 40))
        (3, 5)
    """
    lo, hi = WINDOW_LIMITS
    rows, cols = int(shape[0]), int(shape[1])
    # patches are padded by mirroring, so a window may be taller than a strip of a field, but
    # not larger than the field both ways (a 3 x 3 field gets a 3-pixel window, not an error)
    return int(min(np.clip(round(WINDOW_FRACTION * min(rows, cols)), lo, hi), max(rows, cols, 1)))


def candidate_grid(
    shape: Tuple[int, int], step: int = 1, window: int = 1, border: str = "reflect"
) -> np.ndarray:
    """Candidate beam positions on a regular grid over an image.

    Args:
        shape: ``(rows, columns)`` of the survey image.
        step: grid spacing in pixels (2 on a 128 x 128 image gives 4,096 candidates).
        window: patch size, used with ``border="exclude"`` to keep whole windows inside.
        border: ``"reflect"`` (the whole image) or ``"exclude"``.

    Returns:
        ``(N, 2)`` float64 ``(x, y)`` in raster order (row by row).

    Example:
        >>> candidate_grid((4, 6), step=2)[:4].tolist()
        [[0.0, 0.0], [2.0, 0.0], [4.0, 0.0], [0.0, 2.0]]
    """
    rows, cols = (int(v) for v in shape)
    if int(step) < 1:
        raise ValueError(f"grid step must be >= 1 pixel, got {step}")
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    lo, r_hi, c_hi = 0, rows, cols
    if border == "exclude":
        half = int(window) // 2
        lo, r_hi, c_hi = half, rows - (int(window) - half) + 1, cols - (int(window) - half) + 1
        if r_hi <= lo or c_hi <= lo:
            raise ValueError(f"a {window} px window does not fit a {rows} x {cols} image")
    ys, xs = np.mgrid[lo:r_hi:step, lo:c_hi:step]
    return np.column_stack([xs.ravel(), ys.ravel()]).astype(np.float64)


def extract_patches(
    survey_image: Any,
    window: int = 16,
    positions: Optional[Any] = None,
    step: int = 1,
    normalise: Optional[str] = "image",
    border: str = "reflect",
) -> Tuple[np.ndarray, np.ndarray]:
    """The ``window x window`` patch around each position, flattened.

    A position ``(x, y)`` is rounded to the nearest pixel; its patch covers rows
    ``y - window // 2 .. y - window // 2 + window - 1`` (and the same in columns), so for an
    even window the pixel sits just below and right of the patch centre.

    Args:
        survey_image: 2-D image.
        window: patch side in pixels (>= 1).
        positions: ``(N, 2)`` ``(x, y)``; ``None`` = every ``step``-th pixel
            (:func:`candidate_grid`).
        step: grid spacing when ``positions`` is None.
        normalise: ``"image"``, ``"patch"`` or ``None`` (see the module docstring).
        border: ``"reflect"`` or ``"exclude"``. With ``"exclude"``, given positions whose
            window would leave the image raise an error rather than being dropped silently.

    Returns:
        ``(patches, xy)``: float32 ``(N, window * window)`` and float64 ``(N, 2)`` ``(x, y)``
        (the rounded pixel of each patch).

    Raises:
        ValueError: bad window, a position outside the image, or a window that cannot fit.

    Example:
        >>> img = np.arange(36.0).reshape(6, 6)
        >>> p, xy = extract_patches(img, window=3, positions=[[2, 1]], normalise=None)
        >>> p.reshape(3, 3).tolist()
        [[1.0, 2.0, 3.0], [7.0, 8.0, 9.0], [13.0, 14.0, 15.0]]
    """
    image = survey_image_array(survey_image)
    window = int(window)
    if window < 1 or window > max(image.shape):
        raise ValueError(
            f"window must be 1..{max(image.shape)} pixels, got {window}: the patch window "
            f"is larger than the {image.shape[0]} x {image.shape[1]} px survey image (a "
            "larger field, or a smaller window=)"
        )
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, got {border!r}")
    rows, cols = image.shape
    if positions is None:
        xy = candidate_grid(image.shape, step, window, border)
    else:
        xy = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
        if not np.all(np.isfinite(xy)):
            raise ValueError("positions must be finite")
        xy = np.rint(xy)
        outside = (xy[:, 0] < 0) | (xy[:, 0] >= cols) | (xy[:, 1] < 0) | (xy[:, 1] >= rows)
        if np.any(outside):
            bad = xy[np.argmax(outside)]
            raise ValueError(
                f"position (x={bad[0]:g}, y={bad[1]:g}) lies outside the {cols} x {rows} "
                "(columns x rows) image"
            )
    if normalise == "image":
        lo, hi = float(image.min()), float(image.max())
        image = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    half = window // 2
    if border == "reflect":
        # 'symmetric' mirrors including the edge pixel, so a flat border stays flat
        pad = ((half, window - 1 - half), (half, window - 1 - half))
        padded = np.pad(image, pad, mode="symmetric")
        offset = 0
    else:
        padded, offset = image, -half
        fits = (
            (xy[:, 0] - half >= 0)
            & (xy[:, 0] - half + window <= cols)
            & (xy[:, 1] - half >= 0)
            & (xy[:, 1] - half + window <= rows)
        )
        if not np.all(fits):
            bad = xy[np.argmin(fits)]
            raise ValueError(
                f"the {window} px window around (x={bad[0]:g}, y={bad[1]:g}) leaves the image; "
                'use border="reflect" or keep positions away from the border'
            )
    views = sliding_window_view(padded, (window, window))
    r = xy[:, 1].astype(np.intp) + offset
    c = xy[:, 0].astype(np.intp) + offset
    patches = views[r, c].reshape(len(xy), window * window).astype(np.float32)
    if normalise == "patch":
        patches -= patches.mean(axis=1, keepdims=True)
        std = patches.std(axis=1, keepdims=True)
        patches /= np.where(std > 0, std, 1.0)
    return patches, xy


def grid_points(shape: Tuple[int, int], n: int) -> np.ndarray:
    """About ``n`` pixels on an even grid over an image, at the centres of equal cells.

    Rows and columns are split in proportion to the image's shape; the first ``n`` grid
    points in raster order are returned, rounded to whole pixels (seed points for an
    agent, or a coarse raster scan).

    Example:
        >>> grid_points((48, 48), 9)[:, 0].tolist()
        [8.0, 24.0, 40.0, 8.0, 24.0, 40.0, 8.0, 24.0, 40.0]
    """
    if n <= 0:
        return np.empty((0, 2))
    rows, cols = (int(v) for v in shape)
    ny = max(1, int(np.rint(np.sqrt(n * rows / cols))))
    nx = max(1, int(np.ceil(n / ny)))
    xs = (np.arange(nx) + 0.5) * cols / nx - 0.5
    ys = (np.arange(ny) + 0.5) * rows / ny - 0.5
    grid = np.array([(x, y) for y in ys for x in xs])[:n]
    return np.rint(grid)


def spread_points(
    shape: Tuple[int, int], n: int, candidates: np.ndarray, rng: np.random.Generator
) -> List[int]:
    """One random candidate in each of ``n`` cells tiling a field (the cells of
    :func:`grid_points`), cells in raster order: first measurements that cover the field,
    yet differ from seed to seed.

    Args:
        shape: ``(rows, columns)`` of the field.
        n: how many points.
        candidates: ``(N, 2)`` ``(x, y)`` positions to pick from.
        rng: the random generator (seeded by the caller).

    Returns:
        Indices into ``candidates``, distinct.

    Example:
        >>> xy = candidate_grid((48, 80))
        >>> picks = spread_points((48, 80), 6, xy, np.random.default_rng(0))
        >>> sorted({(int(x // 27), int(y // 24)) for x, y in xy[picks]})
        [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    """
    if n <= 0:
        return []
    rows, cols = (int(v) for v in shape)
    centres = grid_points(shape, n)
    ny = len(np.unique(centres[:, 1]))
    nx = int(np.ceil(n / ny))
    cell_x = np.minimum((candidates[:, 0] + 0.5) * nx // cols, nx - 1).astype(int)
    cell_y = np.minimum((candidates[:, 1] + 0.5) * ny // rows, ny - 1).astype(int)
    cell = cell_y * nx + cell_x
    picks: List[int] = []
    for k in range(n):
        inside = np.setdiff1d(np.flatnonzero(cell == k), picks)
        if len(inside) == 0:  # explicit candidates may leave a cell empty
            inside = np.setdiff1d(np.arange(len(candidates)), picks)
        if len(inside) == 0:
            break
        picks.append(int(rng.choice(inside)))
    return picks
