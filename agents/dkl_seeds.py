"""Seed points on the kinds of feature a survey image shows: where a DKL agent measures first.

Before the model has anything to learn from, the first spectra decide what it can learn. A
microscopist puts them on the things the image shows (atomic columns, particles, the spaces
between them), one of each kind, rather than anywhere: a spectrum between two columns says
little about the columns. :func:`feature_seeds` does that without knowing which kind holds
the signal:

1. **sites**: the local extrema, bright and dark, of the survey band-passed at the scale of
   the agent's window (a difference of Gaussians, ``sigma = window / 12`` and ``3 sigma``):
   the centres of the image's blobs, a column or a particle, and of the gaps between them;
2. **kinds**: the sites' patch features (what the agent's model sees) split into ``n``
   groups by k-means; the site nearest each group's centre is its most typical member;
3. **order**: by default the *objects first* (``"objects"``): the kinds whose typical site is
   a blob of the specimen - a column or a particle, bright on a HAADF survey, dark on an
   ABF or BF one (``contrast``, :mod:`agents.contrast`) - before the kinds that are gaps
   between them, each group in an order drawn from the run's seed (no object favoured over
   another). An EELS signal worth finding sits on the specimen's objects far more often than
   between them, and a random pixel mostly lands between them: measured on the DKL
   benchmark's dev fields, then once on the held-out ones (``benchmarks/dkl_seed_order.py``,
   docs/adaptive-eels.md), objects first led random at step 1 on both the twin's HAADF
   particles and the real ABF replay, where the drawn order was level. Other orders: the
   kinds in the drawn order (``"drawn"``), or the brightest, darkest, rarest or most
   outlying kind first; no single one of those won on both scenes ("brightest" wins on
   HAADF and loses on ABF, where the signal sits on the smaller, fainter dark columns).

Deterministic for a given image, features and random generator (k-means is seeded from it).
On a flat image, or one with fewer sites than seed points, the seed points are spread over
the field instead (:func:`agents.patches.spread_points`). Numpy and scipy only.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
from scipy import ndimage

from .patches import spread_points

__all__ = ["SEED_ORDERS", "SITE_MIN_DISTANCE", "feature_seeds", "feature_sites", "kmeans"]

#: sites closer than this (px, along either axis) to a stronger extremum of the same sign
#: are not sites of their own
SITE_MIN_DISTANCE = 2
#: the band-pass's narrow Gaussian is this fraction of the window (and at least 0.7 px)
SITE_SCALE = 1.0 / 12.0
_KMEANS_RESTARTS = 4
_KMEANS_ITERATIONS = 50


def _band_passed(image: np.ndarray, window: int) -> np.ndarray:
    """The survey band-passed at the window's scale: what makes a site a site."""
    img = np.asarray(image, dtype=np.float64)
    sigma = max(0.7, float(window) * SITE_SCALE)
    return ndimage.gaussian_filter(img, sigma, mode="reflect") - ndimage.gaussian_filter(
        img, 3.0 * sigma, mode="reflect"
    )


def feature_sites(image: np.ndarray, window: int) -> np.ndarray:
    """The survey's blob centres and gaps: ``(M, 2)`` ``(x, y)`` whole pixels.

    Local maxima and minima (within :data:`SITE_MIN_DISTANCE` px) of the image band-passed
    by a difference of Gaussians (``sigma = max(0.7, window / 12)`` px and ``3 sigma``);
    strict ones only, so a flat image (or a flat region) has none.

    Example:
        >>> yy, xx = np.mgrid[:32, :32]
        >>> blob = np.exp(-((xx - 20) ** 2 + (yy - 10) ** 2) / 8.0)
        >>> [20, 10] in feature_sites(blob, 12).tolist()
        True
    """
    img = np.asarray(image, dtype=np.float64)
    band = _band_passed(img, window)
    size = 2 * SITE_MIN_DISTANCE + 1
    spread = float(band.max() - band.min())
    if not np.isfinite(spread) or spread <= 1e-12 * max(1.0, float(np.abs(img).max())):
        return np.empty((0, 2), dtype=np.float64)
    # a strict extremum: the neighbourhood's extreme, and not a plateau with its neighbours
    tol = 1e-9 * spread
    peaks = band >= ndimage.maximum_filter(band, size=size, mode="reflect") - tol
    peaks &= band > ndimage.minimum_filter(band, size=size, mode="reflect") + tol
    pits = band <= ndimage.minimum_filter(band, size=size, mode="reflect") + tol
    pits &= band < ndimage.maximum_filter(band, size=size, mode="reflect") - tol
    rows, cols = np.nonzero(peaks | pits)
    return np.column_stack([cols, rows]).astype(np.float64)


def kmeans(
    x: np.ndarray, k: int, rng: np.random.Generator, restarts: int = _KMEANS_RESTARTS
) -> Tuple[np.ndarray, np.ndarray]:
    """k-means (k-means++ starts, Lloyd's iterations), the best of ``restarts`` runs.

    Returns:
        ``(centres (k, D), labels (N,))``; every centre keeps at least one member.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    k = int(min(k, n))
    best: Tuple[float, np.ndarray, np.ndarray] = (np.inf, np.empty((0,)), np.empty((0,)))
    for _ in range(max(1, int(restarts))):
        centres = [x[int(rng.integers(n))]]
        d2 = ((x - centres[0]) ** 2).sum(axis=1)
        for _ in range(1, k):
            total = float(d2.sum())
            pick = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
            centres.append(x[pick])
            d2 = np.minimum(d2, ((x - x[pick]) ** 2).sum(axis=1))
        c = np.array(centres)
        labels = np.zeros(n, dtype=int)
        for _ in range(_KMEANS_ITERATIONS):
            dist = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
            labels = np.argmin(dist, axis=1)
            new = c.copy()
            for j in range(k):
                members = labels == j
                if members.any():
                    new[j] = x[members].mean(axis=0)
                else:  # an emptied group takes the point farthest from its centre
                    far = int(np.argmax(dist[np.arange(n), labels]))
                    new[j] = x[far]
            if np.allclose(new, c):
                break
            c = new
        dist = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
        labels = np.argmin(dist, axis=1)
        inertia = float(dist[np.arange(n), labels].sum())
        if inertia < best[0]:
            best = (inertia, c, labels)
    return best[1], best[2]


#: the orders of the kinds :func:`feature_seeds` knows
SEED_ORDERS = ("objects", "drawn", "brightest", "darkest", "rarest", "outlying")


def _ordered(
    order: str,
    drawn: np.ndarray,
    labels: np.ndarray,
    centres: np.ndarray,
    feats: np.ndarray,
    image: np.ndarray,
    window: int,
    candidates: np.ndarray,
    typical: List[int],
    contrast: str = "bright",
) -> List[int]:
    """The kinds' indices in ``order`` (:func:`feature_seeds`); ties keep the drawn order."""
    if order == "drawn":
        return list(drawn)
    if order == "objects":
        # a kind is an object when its typical site is a blob of the specimen's contrast:
        # a peak of the band-passed survey for bright columns or particles, a pit for dark
        band = _band_passed(image, window)
        xy = np.rint(candidates[typical]).astype(int)
        at_site = band[xy[:, 1], xy[:, 0]]
        is_object = at_site > 0 if contrast == "bright" else at_site < 0
        key = np.where(is_object, 0.0, 1.0)
    elif order == "rarest":
        key = np.bincount(labels, minlength=len(centres)).astype(float)
    elif order == "outlying":
        key = -((centres - feats.mean(axis=0)) ** 2).sum(axis=1)
    elif order in ("brightest", "darkest"):
        band = _band_passed(image, window)
        # the band-passed value (what made the site a site) at each kind's typical site
        xy = np.rint(candidates[typical]).astype(int)
        key = -band[xy[:, 1], xy[:, 0]] if order == "brightest" else band[xy[:, 1], xy[:, 0]]
    else:
        raise ValueError(f"order must be one of {SEED_ORDERS}, got {order!r}")
    rank = np.empty(len(drawn), dtype=int)
    rank[drawn] = np.arange(len(drawn))
    return sorted(range(len(centres)), key=lambda j: (key[j], rank[j]))


def feature_seeds(
    image: np.ndarray,
    window: int,
    candidates: np.ndarray,
    features: np.ndarray,
    n: int,
    rng: np.random.Generator,
    order: str = "objects",
    contrast: str = "bright",
) -> List[int]:
    """``n`` seed points, one on each kind of feature the survey shows (module docstring).

    Args:
        image: the 2-D survey image.
        window: the agent's patch side, px (sets the band-pass scale).
        candidates: ``(N, 2)`` ``(x, y)`` candidate positions; each site is moved to the
            nearest one.
        features: ``(N, D)`` the candidates' patch features (the model's inputs).
        n: how many seed points.
        rng: the agent's random generator.
        order: the order of the kinds: ``"objects"`` (the kinds on the specimen's blobs,
            columns or particles, first: peaks of the band-passed survey under
            ``contrast="bright"``, pits under ``"dark"``; each group in the order drawn from
            ``rng``), ``"drawn"`` (from ``rng``), ``"brightest"`` /
            ``"darkest"`` (the highest / lowest band-passed survey value at the kind's
            typical site first), ``"rarest"`` (fewest sites first) or ``"outlying"`` (the
            kind whose centre lies farthest from all sites' mean feature first). The draw
            from ``rng`` is made in every order, so what follows draws the same.
        contrast: ``"bright"`` (HAADF, ADF: objects are bright) or ``"dark"`` (ABF, BF);
            used by ``order="objects"`` only (:func:`agents.contrast.decide_contrast`).

    Returns:
        Indices into ``candidates``, distinct, in the order to measure them.

    Example (four particles on a 32 x 32 survey; every pixel a candidate, its raw 9 x 9 px
    patch its features):
        >>> import numpy as np
        >>> from agents.dkl_seeds import feature_seeds
        >>> from agents.patches import extract_patches
        >>> yy, xx = np.mgrid[:32, :32]
        >>> centres = [(8, 8), (24, 10), (12, 24), (26, 26)]
        >>> image = sum(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 6.0) for cx, cy in centres)
        >>> feats, xy = extract_patches(image, window=9)
        >>> picks = feature_seeds(image, 9, xy, feats, 2, np.random.default_rng(0))
        >>> xy[picks].tolist()                  # a particle's centre first, then a gap
        [[8.0, 8.0], [18.0, 31.0]]
    """
    if order not in SEED_ORDERS:
        raise ValueError(f"order must be one of {SEED_ORDERS}, got {order!r}")
    if contrast not in ("bright", "dark"):
        raise ValueError(f"contrast must be 'bright' or 'dark', got {contrast!r}")
    n = int(min(n, len(candidates)))
    if n <= 0:
        return []
    sites = feature_sites(image, window)
    picks: List[int] = []
    if len(sites):
        # each site on its nearest candidate (the same when the candidates are every pixel)
        nearest = np.empty(len(sites), dtype=int)
        for start in range(0, len(sites), 256):
            block = sites[start : start + 256]
            d2 = ((block[:, None, :] - candidates[None, :, :]) ** 2).sum(axis=2)
            nearest[start : start + 256] = np.argmin(d2, axis=1)
        ids = np.unique(nearest)
        if len(ids) >= n:
            feats = np.asarray(features, dtype=np.float64)[ids]
            centres, labels = kmeans(feats, n, rng)
            typical = []
            for j in range(len(centres)):
                members = np.flatnonzero(labels == j)
                d = ((feats[members] - centres[j]) ** 2).sum(axis=1)
                typical.append(int(ids[members[int(np.argmin(d))]]))
            drawn = rng.permutation(len(typical))
            # drawn in every order, so the generator's later draws are the same
            kinds = _ordered(
                order, drawn, labels, centres, feats, image, window, candidates, typical, contrast
            )
            picks = [typical[i] for i in kinds]
    if len(picks) < n:  # a flat image, or too few sites: spread over the field instead
        picks = [int(i) for i in spread_points(image.shape, n, candidates, rng)]
    return picks[:n]
