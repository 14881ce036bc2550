"""Survey images as recorded: the checks and the one repair every survey-image agent shares.

Real recordings are not the twin's clean arrays. A DigitalMicrograph image can come as
``uint16`` counts, with a singleton leading axis (a one-frame stack), or with a few
undefined pixels: NaN where a processing step (drift correction, alignment, a dead-pixel
mask) left no value. One bad pixel must not stop an experiment, so such pixels are filled
from their nearest valid neighbour and the repair is logged; an image that is largely
undefined, or not one image at all, is refused with a clear message.

>>> img = np.full((5, 5), 7.0)
>>> img[2, 2] = np.nan  # one undefined pixel of 25 (4 %, under MAX_UNDEFINED_FRACTION)
>>> float(survey_image_array(img)[2, 2])
7.0
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = [
    "CLIPPED_FRACTION",
    "HOT_PIXEL_NOISE_UNITS",
    "MAX_UNDEFINED_FRACTION",
    "masked_as_undefined",
    "one_frame",
    "stack_hint",
    "survey_image_array",
    "with_clipped_levelled",
    "without_hot_pixels",
]

logger = logging.getLogger("agents.images")

#: above this fraction of NaN/infinite pixels an image is refused rather than repaired
MAX_UNDEFINED_FRACTION = 0.05


def survey_image_array(
    survey_image: Any, *, what: str = "survey image", min_size: int = 1
) -> np.ndarray:
    """The survey image as a 2-D float64 array, undefined pixels filled.

    Args:
        survey_image: a 2-D image (any real dtype), or a stack holding one frame
            (``(1, rows, cols)``); a masked array's masked pixels count as undefined.
        what: how the image is named in messages.
        min_size: the smallest number of rows and columns accepted, in pixels.

    Returns:
        A ``(rows, cols)`` float64 array: the caller's own array when it already is one
        and needs no repair (agents call this on every step: no copy), else a new one.
        NaN and infinite pixels (at most :data:`MAX_UNDEFINED_FRACTION` of the image)
        take the value of their nearest finite pixel in the new array (the caller's is
        left as it was); how many were filled is logged as a warning.

    Raises:
        ValueError: not 2-D (a stack of several frames: pick one), smaller than
            ``min_size``, complex, or with too many undefined pixels.
    """
    image = one_frame(survey_image)
    if image.ndim != 2:
        raise ValueError(f"{what} must be 2-D, got shape {image.shape}{stack_hint(image)}")
    if np.iscomplexobj(image):
        raise ValueError(f"{what} must be real, got {image.dtype}")
    if min(image.shape) < min_size:
        raise ValueError(f"{what} must be at least {min_size} x {min_size} px, got {image.shape}")
    try:
        image = np.asarray(image, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must hold numbers, got {image.dtype}") from None
    bad = ~np.isfinite(image)
    if bad.any():
        fraction = float(bad.mean())
        if fraction > MAX_UNDEFINED_FRACTION:
            raise ValueError(
                f"{what} holds NaN or infinite values in {bad.sum()} of {bad.size} pixels "
                f"({fraction:.0%}, more than the {MAX_UNDEFINED_FRACTION:.0%} that are filled "
                "from their neighbours): is it the right image?"
            )
        # the nearest finite pixel's value: no new extremes, edges stay sharp
        from scipy import ndimage

        _, (rows, cols) = ndimage.distance_transform_edt(bad, return_indices=True)
        image = image[rows, cols]
        logger.warning(
            "%s: %d undefined pixel(s) (NaN, infinite or masked) filled from their nearest "
            "neighbour",
            what,
            int(bad.sum()),
        )
    return image


def one_frame(image: Any) -> np.ndarray:
    """``image`` as an array as every survey-image agent takes it: a one-frame stack
    ``(1, rows, cols)`` as its frame, a masked array's masked pixels as NaN
    (:func:`masked_as_undefined`). Whether it is 2-D is the caller's check."""
    arr = np.asarray(masked_as_undefined(image))
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    return arr


def stack_hint(image: np.ndarray) -> str:
    """What to add to a "must be 2-D" message for a stack of several frames ("" otherwise)."""
    return " (a stack of frames: pass one frame, or their sum)" if image.ndim == 3 else ""


def masked_as_undefined(image: Any) -> Any:
    """A masked array's masked pixels as NaN (float64), to be filled like any undefined
    pixel; anything else as it is.

    A mask says which pixels of a recording are not to be trusted (dead, saturated):
    ``np.asarray`` would quietly keep the values under it.

    >>> masked_as_undefined(np.ma.masked_equal([1, 9, 3], 9)).tolist()
    [1.0, nan, 3.0]
    """
    if np.ma.isMaskedArray(image) and np.ma.getmaskarray(image).any():
        return np.ma.filled(np.ma.asarray(image, dtype=np.float64), np.nan)
    return image


#: a pixel this far from its 3 x 3 median, in robust noise units and by more than half the
#: image's range, is a hot pixel or a spike, not an atom (atoms span several pixels)
HOT_PIXEL_NOISE_UNITS = 10.0


def without_hot_pixels(image: np.ndarray) -> tuple[np.ndarray, int]:
    """The image with isolated extreme pixels replaced by their 3 x 3 median.

    A camera's hot pixels and X-ray spikes are single pixels far above (or below) everything
    around them; atomic columns span several pixels and stay close to their neighbourhood's
    median, so they are left alone. A pixel counts as hot when it departs from its 3 x 3
    median by more than :data:`HOT_PIXEL_NOISE_UNITS` robust noise units *and* by more than
    half the image's 0.5-99.5 percentile range, and stands that far apart from all its eight
    neighbours but one (a block of equal pixels, as in an image sampled finer than it was
    recorded, is no spike): an image without such pixels comes back unchanged (the same
    array).

    Args:
        image: 2-D float image, finite.

    Returns:
        ``(image, n)``: the cleaned image and how many pixels were replaced.
    """
    from scipy import ndimage

    median = ndimage.median_filter(image, size=3, mode="nearest")
    excess = np.abs(image - median)
    noise = 1.4826 * float(np.median(excess))
    low, high = np.percentile(image, (0.5, 99.5))
    limit = max(HOT_PIXEL_NOISE_UNITS * noise, 0.5 * float(high - low))
    hot = excess > limit
    if hot.any():
        hot = _isolated(image, hot, limit)
    n = int(hot.sum())
    if n == 0:
        return image, 0
    return np.where(hot, median, image), n


def _isolated(image: np.ndarray, hot: np.ndarray, limit: float) -> np.ndarray:
    """Of the ``hot`` candidates, those that stand apart (by more than ``limit``) from all
    their eight neighbours but one (a spike may cover two pixels).

    An image sampled finer than its recording (upsampled 2 x: every pixel a 2 x 2 block)
    has next to no pixel-to-pixel noise, so the 3 x 3 median test alone took 1,655 pixels
    of the real graphene image's noisy blocks for hot pixels: a block has three equal
    neighbours, a hot pixel none."""
    rows, cols = np.nonzero(hot)
    padded = np.pad(image, 1, mode="edge")
    shifts = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]
    apart = np.stack(
        [np.abs(image[rows, cols] - padded[rows + 1 + dr, cols + 1 + dc]) for dr, dc in shifts]
    )
    keep = np.sort(apart, axis=0)[1] > limit  # the second nearest value: one partner allowed
    out = np.zeros_like(hot)
    out[rows[keep], cols[keep]] = True
    return out


#: the image's highest value over at least this share of the field, in patches of at least
#: MIN_PLATEAU pixels, is a detector at full scale: a clipped plateau, not the specimen's
CLIPPED_FRACTION = 0.001
MIN_PLATEAU = 16


def with_clipped_levelled(image: np.ndarray) -> tuple[np.ndarray, int]:
    """The image with a clipped plateau (a detector at full scale) brought down to the
    99.5th percentile of the other pixels.

    A thick particle or contamination saturates the HAADF detector: a patch at one value
    far above the lattice. It said only that the detector was full, yet it set the scale of
    everything: on the real graphene image with a 60 x 60 px patch at 3 x its brightest
    value, LoG* found 69 atoms outside it (F1 0.02) and the ensemble 5, its checks passing
    them. Levelled, the patch reads as one flat bright area.

    Args:
        image: 2-D float image, finite.

    Returns:
        ``(image, n)``: the levelled image and how many pixels were levelled (the same
        array and 0 when the highest value is not a plateau: a single brightest pixel, as
        in the real images, the equal one-pixel peaks of a clean synthetic lattice, or a
        constant image).
    """
    top = float(np.max(image))
    plateau = image >= top
    if plateau.all() or plateau.sum() < max(MIN_PLATEAU, CLIPPED_FRACTION * image.size):
        return image, 0
    # a patch, not the equal peaks of a clean synthetic lattice's columns (one pixel each)
    from scipy import ndimage

    labels, count = ndimage.label(plateau)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    plateau = sizes[labels] >= MIN_PLATEAU
    n = int(plateau.sum())
    if n < max(MIN_PLATEAU, CLIPPED_FRACTION * image.size):
        return image, 0
    level = float(np.percentile(image[~plateau], 99.5))
    return np.where(plateau, level, image), n
