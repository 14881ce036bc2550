"""Torch runtime settings shared by training and prediction: threads, memory, input checks."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np
import torch

from ..images import one_frame, stack_hint, survey_image_array

__all__ = [
    "as_image",
    "default_num_threads",
    "each_member",
    "keep_freed_memory",
    "member_threads",
    "normalize_image",
    "torch_threads",
]

#: the fewest pixels per side an image may have (smaller is not a survey image)
MIN_IMAGE_SIDE = 4
#: glibc's mallopt parameters (malloc.h) and the values :func:`keep_freed_memory` sets: the
#: largest that glibc's own adaptive scheme reaches (blocks up to 32 MiB from the heap, up
#: to twice that of free heap kept), set at once instead of after a 32 MiB block is freed
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 64 * 2**20
#: environment variables through which a user tunes glibc's malloc: any of them set, and
#: :func:`keep_freed_memory` leaves malloc as configured
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_malloc_lock = threading.Lock()
_malloc_state: bool | None = None


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


def member_threads(num_threads: int | None) -> int:
    """How many ensemble members a CPU prediction runs at once, each on one torch thread.

    ``None``: :func:`default_num_threads` (one member at a time). The members are
    independent, so running N at once costs no waiting partner and leaves every number as
    one thread computes it; but it takes N cores' share from the neighbours, and on a
    partly busy machine the members' shared cache cost 5-20 % more wall time (decision
    0016, with the measurements).
    """
    n = default_num_threads() if num_threads is None else int(num_threads)
    if n < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    return n


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (once per process); True if set.

    A torch forward pass allocates and frees tens of MB of activations. With glibc's
    defaults the freed top of the heap goes back to the OS after every pass (the heap is
    trimmed once more than twice the largest recent block is free), so the next pass
    faults every page in again, zero-filled by the kernel: ~57,000 page faults and ~90 ms
    of a 5-member 512² prediction's ~290 ms of CPU on this project's 2-core machine. With
    blocks up to 32 MiB taken from the heap and up to 64 MiB of free heap kept (the most
    glibc's adaptive thresholds reach by themselves) a few hundred are left. Both must be
    set: setting only the trim threshold turns off glibc's adaptive mmap threshold, and
    then every large tensor is a fresh mmap (162,000 faults, 460 ms; what
    ``docs/compute.md`` found in Dask workers).

    The cost: up to 64 MiB of freed memory stays with the process instead of going back
    to the OS. Leaves malloc alone on other C libraries and when the environment tunes it
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_TOP_PAD_`` set).
    """
    global _malloc_state
    with _malloc_lock:
        if _malloc_state is None:
            _malloc_state = _set_malloc()
        return _malloc_state


def _set_malloc() -> bool:
    if not sys.platform.startswith("linux") or any(v in os.environ for v in _MALLOC_ENV):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl has no such symbol)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # the mmap threshold first: a failure there leaves the adaptive threshold on
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        return False
    return mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[int]:
    """Run a block with ``torch.set_num_threads(num_threads)`` and restore the old value.

    Args:
        num_threads: threads for intra-op parallelism; ``None`` uses
            :func:`default_num_threads`.

    Example:
        >>> import torch
        >>> from agents.ensemble._runtime import torch_threads
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1) as n:
        ...     print(n, torch.get_num_threads())
        1 1
        >>> torch.get_num_threads() == before      # restored on the way out
        True
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


def each_member(work: Callable[[int], None], n_members: int, threads: int) -> None:
    """``work(k)`` for every member; with ``threads > 1`` that many members at once, each
    on its own thread running one torch thread.

    Each member's numbers are then computed exactly as with one thread (same kernels, same
    order within the member), so the result does not depend on ``threads``; torch releases
    the GIL inside every convolution. Call it inside :func:`torch_threads`, which restores
    the caller's thread count. A member's error is raised once all members have stopped.
    """
    threads = min(int(threads), n_members)
    if threads <= 1:
        for k in range(n_members):
            work(k)
        return
    torch.set_num_threads(1)
    pool = _member_pool(threads)
    futures = [pool.submit(_single_threaded, work, k) for k in range(n_members)]
    wait(futures)
    for future in futures:
        future.result()


def _single_threaded(work: Callable[[int], None], k: int) -> None:
    torch.set_num_threads(1)  # this thread's own OpenMP setting (a new thread has the default)
    work(k)


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _forget_pools() -> None:
    """In a forked child: the parent's threads are not there (a pool would wait forever)."""
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_pools)


def _member_pool(threads: int) -> ThreadPoolExecutor:
    """A lasting pool of ``threads`` threads: new threads would set up their OpenMP and
    oneDNN state (and fault in their memory) again on every call."""
    with _pools_lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="ensemble-member")
        return _pools[threads]


def as_image(image: object, name: str = "image") -> np.ndarray:
    """Check a survey image and return it as float32 ``(H, W)``.

    A one-frame stack ``(1, H, W)`` is taken as its frame; a few NaN/inf pixels (as drift
    correction or a dead-pixel mask leave them) and a masked array's masked pixels are
    filled from their nearest neighbour and logged (:func:`agents.images.survey_image_array`).

    Raises:
        ValueError: not 2-D, smaller than 4x4 pixels, or with more than a few NaN/inf pixels.
    """
    try:  # a masked array's masked pixels are undefined, filled below
        arr = np.asarray(one_frame(image), dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 2-D array of numbers: {exc}") from None
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (height, width), got shape {arr.shape}{stack_hint(arr)}"
        )
    if min(arr.shape) < MIN_IMAGE_SIDE:
        raise ValueError(f"{name} must be at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels")
    if not np.all(np.isfinite(arr)):
        arr = survey_image_array(arr, what=name, min_size=MIN_IMAGE_SIDE).astype(np.float32)
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
