"""A Laplacian-of-Gaussian scale space built once per image, so each LoG* trial is cheap.

``skimage.feature.blob_log`` spends almost all its time filtering the image once per sigma.
During an optimisation the image does not change, only the parameters do, so we filter each
sigma of a fixed grid once (lazily, on first use) and keep, beside every LoG slice, its 3×3
spatial maximum. A trial then only

1. takes the slices between ``min_sigma`` and ``max_sigma`` (a view, no copy of the LoG),
2. completes the 3×3×3 maximum filter along sigma (two ``numpy.maximum`` calls),
3. keeps the maxima above the threshold, outside the excluded border,
4. orders them like ``peak_local_max`` does and prunes overlapping blobs like ``blob_log``.

With the sigmas on a grid of power-of-two step (see :class:`~agents.logstar.params.LoGParameters`)
the result is *identical*, array for array, to ``blob_log`` with the same parameters: same
threshold semantics (``threshold`` absolute, ``threshold_rel`` relative to the maximum of the
selected slices, the larger wins), the same ``mode="nearest"`` peak footprint, the same
``sigma**2`` normalisation, and the same (order-dependent) overlap pruning. The identity is
asserted by ``tests/agents/logstar/test_scalespace.py``.
"""

from __future__ import annotations

import itertools
import math
from typing import Dict, Optional, Tuple

import numpy as np
import scipy.ndimage as ndi
from scipy.spatial import cKDTree
from skimage.util import img_as_float

from ..images import (
    one_frame,
    stack_hint,
    survey_image_array,
    with_clipped_levelled,
    without_hot_pixels,
)
from .params import LoGParameters, check_sigma_step

__all__ = [
    "ImageScaleSpaces",
    "ScaleSpace",
    "apply_prefilter",
    "as_float_image",
    "blob_log_reference",
    "prepare_image",
    "prune_blobs",
]


def as_float_image(image: np.ndarray) -> np.ndarray:
    """Convert to the float type ``blob_log`` works in (float32 stays float32, else float64).

    A one-frame stack ``(1, H, W)`` is taken as its frame, and a masked array's masked
    pixels as undefined, as every survey-image agent takes them (:mod:`agents.images`).

    Raises:
        ValueError: if the image is not 2-D, is empty, or holds more than a few NaN/inf
            pixels (see :func:`agents.images.survey_image_array`).
    """
    arr = one_frame(image)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise ValueError(
            f"a survey image must be a non-empty 2-D array, got shape {arr.shape}{stack_hint(arr)}"
        )
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"a survey image must hold numbers, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValueError("a survey image must be real, got complex values")
    out = img_as_float(arr)
    if out.dtype == np.float16:
        out = out.astype(np.float32)
    if not np.all(np.isfinite(out)):
        # a few undefined pixels are filled from their neighbours (logged); many are refused
        out = survey_image_array(out).astype(out.dtype, copy=False)
    return out


def prepare_image(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Scale a survey image so its intensities span about 0..1 (float64).

    Detector counts differ between instruments, dwell times and samples; the LoG threshold is
    only comparable between images once they share one scale. The ``low`` and ``high``
    percentiles map to 0 and 1 (robust to a few hot pixels; brighter atoms, such as
    dopants, may exceed 1). A flat image maps to zeros.

    Example:
        >>> import numpy as np
        >>> from agents.logstar.scalespace import prepare_image
        >>> bool(prepare_image(np.array([[0.0, 5.0], [10.0, 10.0]])).max() <= 1.1)
        True
    """
    arr = as_float_image(image).astype(np.float64, copy=False)
    # a camera's hot pixels would be found as atoms: single pixels, replaced by their median
    arr, _ = without_hot_pixels(arr)
    # a patch where the detector was full must not set the scale (agents.images)
    arr, _ = with_clipped_levelled(arr)
    lo, hi = np.percentile(arr, [low, high])
    if not hi > lo:
        return np.zeros_like(arr)
    return (arr - lo) / (hi - lo)


def apply_prefilter(image: np.ndarray, prefilter: str, size: float) -> np.ndarray:
    """Apply a trial's pre-filter (``"none"``, ``"gaussian"`` sigma in px, ``"median"`` odd
    width in px) to a float image, keeping its dtype."""
    if prefilter == "none":
        return image
    if prefilter == "gaussian":
        return ndi.gaussian_filter(image, sigma=float(size), mode="reflect")
    if prefilter == "median":
        width = int(size)
        return image if width <= 1 else ndi.median_filter(image, size=width, mode="reflect")
    raise ValueError(f"unknown prefilter {prefilter!r}")


def blob_log_reference(image: np.ndarray, params: LoGParameters) -> np.ndarray:
    """The plain ``skimage.feature.blob_log`` call a trial stands for (the baseline).

    The pre-filter is applied to ``image`` first, exactly as :class:`ImageScaleSpaces` does.
    """
    from skimage.feature import blob_log

    filtered = apply_prefilter(as_float_image(image), *params.prefilter_key)
    return blob_log(filtered, **params.blob_log_kwargs())


def _disk_overlap_scalar(d, r1, r2):
    # Same operations, order and operand types as scikit-image's disk-overlap formula, for the
    # rare pairs whose overlap lies within rounding of the cut: the result must match to the bit.
    ratio1 = np.clip((d**2 + r1**2 - r2**2) / (2 * d * r1), -1, 1)
    ratio2 = np.clip((d**2 + r2**2 - r1**2) / (2 * d * r2), -1, 1)
    acos1 = math.acos(ratio1)
    acos2 = math.acos(ratio2)
    a = -d + r2 + r1
    b = d - r2 + r1
    c = d + r2 - r1
    e = d + r2 + r1
    area = r1**2 * acos1 + r2**2 * acos2 - 0.5 * math.sqrt(abs(a * b * c * e))
    return area / (math.pi * (min(r1, r2) ** 2))


def _pair_overlap_scalar(blob1: np.ndarray, blob2: np.ndarray) -> float:
    root_ndim = math.sqrt(2)
    if blob1[-1] == blob2[-1] == 0:
        return 0.0
    if blob1[-1] > blob2[-1]:
        max_sigma = blob1[-1:]
        r1, r2 = 1, blob2[-1] / blob1[-1]
    else:
        max_sigma = blob2[-1:]
        r2, r1 = 1, blob1[-1] / blob2[-1]
    pos1 = blob1[:2] / (max_sigma * root_ndim)
    pos2 = blob2[:2] / (max_sigma * root_ndim)
    d = np.sqrt(np.sum((pos2 - pos1) ** 2))
    if d > r1 + r2:
        return 0.0
    if d <= abs(r1 - r2):
        return 1.0
    return _disk_overlap_scalar(d, r1, r2)


def prune_blobs(blobs: np.ndarray, overlap: float) -> np.ndarray:
    """Drop the smaller of every two blobs whose disks overlap by more than ``overlap``.

    Follows ``blob_log``'s rule exactly, including its order: pairs are visited in the
    iteration order of ``cKDTree.query_pairs`` (a set), and a blob already dropped no longer
    drops others. The overlaps are computed vectorised; the few pairs within rounding of the
    cut are recomputed with scalar arithmetic identical to scikit-image's.

    Args:
        blobs: ``(N, 3)`` rows ``(row, col, sigma)``, highest LoG response first; not modified.
        overlap: area fraction, 0..1.

    Returns:
        The kept rows, in their original order.
    """
    if len(blobs) == 0:
        return blobs
    sigma = blobs[:, -1:].max()
    distance = 2 * sigma * math.sqrt(2)
    pair_set = cKDTree(blobs[:, :-1]).query_pairs(distance)
    if not pair_set:
        return blobs
    # the set's own iteration order is the order blob_log visits the pairs in
    flat = np.fromiter(itertools.chain.from_iterable(pair_set), np.intp, 2 * len(pair_set))
    pairs = flat.reshape(-1, 2)
    i, j = pairs[:, 0], pairs[:, 1]
    s1, s2 = blobs[i, -1], blobs[j, -1]
    first_larger = s1 > s2
    big = np.where(first_larger, s1, s2)
    small_ratio = np.where(first_larger, s2 / s1, s1 / s2)
    scale = (big * math.sqrt(2))[:, None]
    pos1 = blobs[i, :2] / scale
    pos2 = blobs[j, :2] / scale
    d = np.sqrt(np.sum((pos2 - pos1) ** 2, axis=1))
    # with r_big = 1 and r_small = ratio: apart, nested, or partly overlapping disks
    apart = d > 1 + small_ratio
    nested = d <= np.abs(1 - small_ratio)
    ov = np.where(nested, 1.0, 0.0)
    partial = ~apart & ~nested
    if partial.any():
        dp, r = d[partial], small_ratio[partial]
        with np.errstate(divide="ignore", invalid="ignore"):
            c1 = np.clip((dp**2 + 1 - r**2) / (2 * dp), -1, 1)
            c2 = np.clip((dp**2 + r**2 - 1) / (2 * dp * r), -1, 1)
            area = (
                np.arccos(c1)
                + r**2 * np.arccos(c2)
                - 0.5 * np.sqrt(np.abs((-dp + r + 1) * (dp - r + 1) * (dp + r - 1) * (dp + r + 1)))
            )
            ov[partial] = area / (math.pi * r**2)
    # pairs that may cross the cut: decided by the exact scalar formula
    unsure = np.flatnonzero(partial & (np.abs(ov - overlap) < 1e-9))
    for k in unsure:
        ov[k] = _pair_overlap_scalar(blobs[i[k]], blobs[j[k]])
    conflict = ov > overlap
    # the smaller blob of each conflicting pair (the first one on a tie, as in blob_log)
    loser = np.where(first_larger, j, i)[conflict].tolist()
    winner = np.where(first_larger, i, j)[conflict].tolist()
    alive = [True] * len(blobs)
    for a, b in zip(winner, loser):
        # a dropped blob has sigma 0 in blob_log and can no longer drop others
        if alive[a] and alive[b]:
            alive[b] = False
    return blobs[np.array(alive, dtype=bool)]


class ScaleSpace:
    """The LoG scale space of one (pre-filtered) image on a fixed sigma grid.

    For every sigma of the grid (computed on first use, then kept) it holds the 3×3 spatial
    maximum of the LoG slice, dense, and the slice's own 2-D local maxima, sparse: a
    scale-space peak must be a 2-D peak of its own slice, so a trial only has to compare those
    few candidates with the two neighbouring slices. :meth:`detect` answers a trial.

    Args:
        image: the 2-D image the trials run on (already prepared and pre-filtered).
        sigma_step: sigma grid step, pixels (a power of two).

    Example (a synthetic graphene image, 0.02 nm/px; the same atoms as ``blob_log``'s):
        >>> import numpy as np
        >>> from skimage.feature import blob_log
        >>> from agents.logstar import LoGParameters, get_lattice
        >>> from agents.logstar.render import render_lattice
        >>> from agents.logstar.scalespace import ScaleSpace, prepare_image
        >>> image = prepare_image(render_lattice(get_lattice("graphene"), (96, 96), 0.02))
        >>> ss = ScaleSpace(image, sigma_step=0.25)
        >>> params = LoGParameters(min_sigma=2.0, max_sigma=4.0, threshold=0.05)
        >>> atoms = ss.detect(params)
        >>> atoms.shape[1]   # row, col, sigma
        3
        >>> np.array_equal(atoms, blob_log(image, **params.blob_log_kwargs()))
        True
    """

    def __init__(self, image: np.ndarray, sigma_step: float = 0.25) -> None:
        self.image = as_float_image(image)
        self.dtype = self.image.dtype
        self.sigma_step = check_sigma_step(sigma_step)
        self._max2d: Dict[int, np.ndarray] = {}
        self._peaks: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        self._min: Dict[int, np.generic] = {}
        self._max: Dict[int, np.generic] = {}

    @property
    def shape(self) -> Tuple[int, int]:
        """Image shape (rows, columns)."""
        return self.image.shape  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        """Memory held by the cached slices, bytes."""
        dense = sum(a.nbytes for a in self._max2d.values())
        return int(dense + sum(i.nbytes + v.nbytes for i, v in self._peaks.values()))

    @property
    def computed(self) -> Tuple[int, ...]:
        """Grid indices of the slices computed so far."""
        return tuple(sorted(self._max2d))

    def ensure(self, first: int, last: int) -> None:
        """Compute the slices of grid indices ``first..last`` (``sigma = index * step``)."""
        if first < 1 or last < first:
            raise ValueError(f"bad sigma index range {first}..{last}")
        for k in range(first, last + 1):
            if k in self._max2d:
                continue
            # the sigma as blob_log builds it: the grid value, in the image's float type
            sigma = np.full(2, k * self.sigma_step, dtype=self.dtype)
            log = -ndi.gaussian_laplace(self.image, sigma) * np.mean(sigma) ** 2
            max2d = ndi.maximum_filter(log, size=3, mode="nearest")
            flat = np.flatnonzero(log == max2d)
            self._peaks[k] = (flat, log.ravel()[flat])
            self._max2d[k] = max2d
            self._min[k] = log.min()
            self._max[k] = log.max()

    def sigma(self, index: int) -> float:
        """The sigma of a grid index, pixels."""
        return index * self.sigma_step

    def detect(
        self,
        params: LoGParameters,
        threshold: Optional[float] = None,
        threshold_rel: Optional[float] = None,
    ) -> np.ndarray:
        """Atoms found with ``params``: ``(N, 3)`` rows ``(row, col, sigma)``, pixels.

        Identical to ``blob_log(image, **params.blob_log_kwargs())``. The pre-filter in
        ``params`` is *not* applied here (this object holds one filtered image); use
        :class:`ImageScaleSpaces` to dispatch on it.

        Args:
            params: the trial. Its ``sigma_step`` must equal this scale space's.
            threshold: overrides ``params.threshold`` (``None`` keeps it); pass
                ``threshold_rel`` alone to mimic ``blob_log(threshold=None, threshold_rel=...)``.
            threshold_rel: ``blob_log``'s relative threshold, as a fraction of the maximum of
                the selected slices.
        """
        if params.sigma_step != self.sigma_step:
            raise ValueError(
                f"params use sigma_step {params.sigma_step}, this scale space {self.sigma_step}"
            )
        thr_abs = params.threshold if threshold is None and threshold_rel is None else threshold
        first, last = params.sigma_indices
        self.ensure(first, last)
        cut = thr_abs if thr_abs is not None else min(self._min[k] for k in range(first, last + 1))
        if threshold_rel is not None:
            cut = max(cut, threshold_rel * max(self._max[k] for k in range(first, last + 1)))
        rows, cols = self.shape
        n_maxima = 0
        found_flat, found_k, found_value = [], [], []
        for k in range(first, last + 1):
            flat, value = self._peaks[k]
            # a peak of the 3x3x3 neighbourhood (mode="nearest": at the ends of the selected
            # sigma range the missing neighbour slice is the slice itself)
            keep = np.ones(len(flat), dtype=bool)
            if k > first:
                keep &= value >= self._max2d[k - 1].ravel()[flat]
            if k < last:
                keep &= value >= self._max2d[k + 1].ravel()[flat]
            n_maxima += int(np.count_nonzero(keep))
            keep &= value > cut
            found_flat.append(flat[keep])
            found_value.append(value[keep])
            found_k.append(np.full(int(np.count_nonzero(keep)), k - first, dtype=np.intp))
        if n_maxima == (last - first + 1) * rows * cols:
            return np.empty((0, 3))  # a flat scale space has no peaks (peak_local_max's rule)
        flat = np.concatenate(found_flat)
        k = np.concatenate(found_k)
        response = np.concatenate(found_value)
        r, c = np.divmod(flat, cols)
        b = params.exclude_border
        if b:
            inside = (r >= b) & (r < rows - b) & (c >= b) & (c < cols - b)
            r, c, k, response = r[inside], c[inside], k[inside], response[inside]
        if len(k) == 0:
            return np.empty((0, 3))
        # peak_local_max lists maxima in (row, col, sigma) raster order, then sorts them by
        # response, highest first, keeping ties in raster order (a stable sort)
        order = np.lexsort((k, c, r, -response))
        blobs = np.empty((len(order), 3), dtype=self.dtype)
        blobs[:, 0] = r[order]
        blobs[:, 1] = c[order]
        # the sigma column must be the very float blob_log uses: its linspace grid value
        grid = np.linspace(
            np.full(2, params.min_sigma, dtype=self.dtype),
            np.full(2, params.max_sigma, dtype=self.dtype),
            params.num_sigma,
        )
        blobs[:, 2] = grid[k[order], 0]
        return prune_blobs(blobs, params.overlap)


class ImageScaleSpaces:
    """The scale spaces of one image, one per pre-filter a search uses.

    Args:
        image: the prepared survey image (see :func:`prepare_image`).
        sigma_step: sigma grid step, pixels (a power of two).

    Example (a synthetic graphene survey; two parameter sets, one with a Gaussian
    pre-filter, each on its own cached scale space):
        >>> from agents.logstar import LoGParameters, get_lattice
        >>> from agents.logstar.render import render_lattice
        >>> from agents.logstar.scalespace import ImageScaleSpaces, prepare_image
        >>> survey_image = render_lattice(get_lattice("graphene"), (96, 96), 0.02, counts=200)
        >>> spaces = ImageScaleSpaces(prepare_image(survey_image), sigma_step=0.25)
        >>> params = LoGParameters(min_sigma=1.5, max_sigma=3.0, threshold=0.05)
        >>> atoms = spaces.detect(params)
        >>> smoothed = LoGParameters(min_sigma=1.5, max_sigma=3.0, threshold=0.05,
        ...                          prefilter="gaussian", prefilter_size=1.0)
        >>> atoms.shape[1], spaces.detect(smoothed).shape[1]    # row, col, sigma
        (3, 3)
    """

    def __init__(self, image: np.ndarray, sigma_step: float = 0.25) -> None:
        self.image = as_float_image(image)
        self.sigma_step = check_sigma_step(sigma_step)
        self._spaces: Dict[Tuple[str, float], ScaleSpace] = {}

    @property
    def shape(self) -> Tuple[int, int]:
        """Image shape (rows, columns)."""
        return self.image.shape  # type: ignore[return-value]

    def space(self, prefilter: str = "none", size: float = 0.0) -> ScaleSpace:
        """The (cached) scale space of the image after one pre-filter."""
        key = (prefilter, float(size))
        if key not in self._spaces:
            filtered = apply_prefilter(self.image, prefilter, size)
            self._spaces[key] = ScaleSpace(filtered, self.sigma_step)
        return self._spaces[key]

    def filtered(self, prefilter: str = "none", size: float = 0.0) -> np.ndarray:
        """The image after a pre-filter (what the LoG of that trial sees)."""
        return self.space(prefilter, size).image

    def detect(self, params: LoGParameters) -> np.ndarray:
        """Atoms found with ``params`` (pre-filter included), ``(N, 3)`` ``(row, col, sigma)``."""
        return self.space(*params.prefilter_key).detect(params)

    @property
    def nbytes(self) -> int:
        """Memory held by all cached slices, bytes."""
        return sum(s.nbytes for s in self._spaces.values())
