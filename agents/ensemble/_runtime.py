"""Torch runtime settings shared by training and prediction: threads, input checks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["as_image", "default_num_threads", "normalize_image", "torch_threads"]

#: the fewest pixels per side an image may have (smaller is not a survey image)
MIN_IMAGE_SIDE = 4


def default_num_threads() -> int:
    """Threads torch uses for the ensemble when none are given: one.

    Measured on a shared 2-core machine (``benchmarks/threads_under_load.py``, decision
    0010): with other jobs running, two OpenMP threads spin-waited for a partner the OS had
    descheduled and made a training step 13-29x and inference 4-6x slower than one thread;
    with passive waiting two threads were mixed (faster only by taking cores from the
    neighbours). One thread also gives the same numbers in this process and on a Dask
    worker. Use the cores through processes (``compute="local"``: one member per worker),
    or pass ``num_threads`` on a machine known to be idle.
    """
    return 1


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[int]:
    """Run a block with ``torch.set_num_threads(num_threads)`` and restore the old value.

    Args:
        num_threads: threads for intra-op parallelism; ``None`` uses
            :func:`default_num_threads`.

    Example:
        >>> with torch_threads(2):
        ...     net(x)
    """
    n = default_num_threads() if num_threads is None else int(num_threads)
    if n < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)


def as_image(image: object, name: str = "image") -> np.ndarray:
    """Check a survey image and return it as float32 ``(H, W)``.

    Raises:
        ValueError: not 2-D, smaller than 4x4 pixels, or containing NaN/inf.
    """
    try:
        arr = np.asarray(image, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 2-D array of numbers: {exc}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (height, width), got shape {arr.shape}")
    if min(arr.shape) < MIN_IMAGE_SIDE:
        raise ValueError(f"{name} must be at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite pixels")
    return arr


def normalize_image(image: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation: what every member sees, in training and in use.

    Detector gain, dose and offset differ between instruments and sessions; standardising
    each image removes them so the networks learn shapes, not counts. A flat image (no
    contrast) becomes all zeros rather than a division by zero.
    """
    img = np.asarray(image, dtype=np.float32)
    std = float(img.std())
    out = img - np.float32(img.mean())
    if std > 1e-12:
        out /= np.float32(std)
    return out
