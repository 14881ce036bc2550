"""Weakly supervised atom classes (section V of the paper): GMM on atom-centred patches.

Every found atom gives a small square patch of the survey image centred on it. The patches
are reduced with PCA and grouped with a Gaussian mixture model (scikit-learn); the first two
principal components are kept for display. Per class, the mean patch (centroid image) shows
what a typical atom of the class looks like and the standard deviation (dispersion image)
how much its members vary.

Why PCA before the GMM: a 15×15 patch has 225 pixels and an image a few hundred atoms; a
full-covariance mixture in 225 dimensions would have more parameters than data. A handful of
components keeps the contrast (bright dopant or not, vacancy next door or not) and drops
shot noise.

Classes are numbered by brightness of their centroid's centre, dimmest first, so the last
class is the brightest (e.g. the Si dopants in graphene) whatever the GMM's own order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np

__all__ = ["AtomClusters", "cluster_atoms", "extract_patches"]


def extract_patches(image: np.ndarray, atoms: np.ndarray, patch_size: int) -> np.ndarray:
    """Square patches centred on each atom (nearest pixel), edges mirrored.

    Args:
        image: 2-D image.
        atoms: ``(N, >=2)`` positions ``(row, col, ...)``, pixels.
        patch_size: odd width of the patches, pixels.

    Returns:
        ``(N, patch_size, patch_size)`` float64 patches.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    size = int(patch_size)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"patch_size must be odd and >= 1, got {patch_size}")
    pts = np.asarray(atoms, dtype=np.float64)
    if pts.size == 0:
        return np.empty((0, size, size))
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f"atoms must be (N, 2+) (row, col, ...), got shape {pts.shape}")
    half = size // 2
    padded = np.pad(img, half, mode="reflect" if min(img.shape) > half else "edge")
    r = np.clip(np.rint(pts[:, 0]).astype(int), 0, img.shape[0] - 1)
    c = np.clip(np.rint(pts[:, 1]).astype(int), 0, img.shape[1] - 1)
    offsets = np.arange(size)
    rows = (r[:, None] + offsets[None, :])[:, :, None]
    cols = (c[:, None] + offsets[None, :])[:, None, :]
    return padded[rows, cols]


@dataclass
class AtomClusters:
    """Result of :func:`cluster_atoms`.

    Attributes:
        labels: ``(N,)`` class of every atom (0 = dimmest centroid).
        probabilities: ``(N, n_clusters)`` GMM membership probabilities.
        centroids: ``(n_clusters, p, p)`` mean patch of each class.
        dispersions: ``(n_clusters, p, p)`` standard deviation of each class's patches.
        pca_scores: ``(N, 2)`` first two principal components (for display).
        explained_variance_ratio: variance fraction of those two components.
        patch_size: patch width, pixels.
    """

    labels: np.ndarray
    probabilities: np.ndarray = field(repr=False)
    centroids: np.ndarray = field(repr=False)
    dispersions: np.ndarray = field(repr=False)
    pca_scores: np.ndarray = field(repr=False)
    explained_variance_ratio: np.ndarray
    patch_size: int

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def counts(self) -> np.ndarray:
        """Atoms per class."""
        return np.bincount(self.labels, minlength=self.n_clusters)

    @property
    def brightest(self) -> int:
        """The class whose centroid is brightest at its centre (the last one)."""
        return self.n_clusters - 1

    def summary(self) -> Dict[str, Any]:
        """JSON-able and small: counts and the centre brightness of each class."""
        half = self.patch_size // 2
        return {
            "n_clusters": self.n_clusters,
            "patch_size": self.patch_size,
            "counts": [int(v) for v in self.counts],
            "centre_intensity": [float(c[half, half]) for c in self.centroids],
            "explained_variance_ratio": [float(v) for v in self.explained_variance_ratio],
        }


def cluster_atoms(
    image: np.ndarray,
    atoms: np.ndarray,
    n_clusters: int = 2,
    patch_size: Optional[int] = None,
    nn_distance_px: Optional[float] = None,
    n_components: int = 6,
    seed: int = 0,
) -> AtomClusters:
    """Group atoms by the look of their neighbourhood.

    Args:
        image: the (prepared) survey image.
        atoms: ``(N, >=2)`` atom positions ``(row, col, ...)``, pixels.
        n_clusters: number of GMM components (classes).
        patch_size: odd patch width, pixels. Default: the odd number nearest the
            nearest-neighbour distance (an atom and the inner half of its neighbours), or 11.
        nn_distance_px: the lattice's nearest-neighbour distance, pixels, for the default
            patch size.
        n_components: PCA components the GMM sees.
        seed: seeds the GMM.

    Raises:
        ValueError: fewer atoms than classes, or bad sizes.

    Example (a synthetic square lattice, 0.4 nm at 0.04 nm/px, with three bright dopants;
    a 3 px patch sees the column itself: with the default patch, one column wide, the row of
    atoms cut by this small image's edge made a class of its own):
        >>> import numpy as np
        >>> from agents.logstar import Lattice, LoGParameters
        >>> from agents.logstar.clustering import cluster_atoms
        >>> from agents.logstar.render import render_lattice
        >>> from agents.logstar.scalespace import ScaleSpace, prepare_image
        >>> square = Lattice.from_unit_cell("square", (0.4, 0.4), 90.0, [(0.0, 0.0)])
        >>> image = render_lattice(square, (64, 64), 0.04)
        >>> params = LoGParameters(min_sigma=1.0, max_sigma=2.0, threshold=0.05)
        >>> atoms = ScaleSpace(prepare_image(image)).detect(params)
        >>> yy, xx = np.mgrid[:64, :64]
        >>> for row, col in atoms[[5, 20, 40], :2]:        # three of them brighter: dopants
        ...     image += 0.8 * np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / 2.5)
        >>> clusters = cluster_atoms(prepare_image(image), atoms, n_clusters=2, patch_size=3)
        >>> clusters.counts.tolist()       # the lattice, and the dopants (class 1: brighter)
        [46, 3]
        >>> np.flatnonzero(clusters.labels == 1).tolist()
        [5, 20, 40]
    """
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    k = int(n_clusters)
    if k < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    pts = np.asarray(atoms, dtype=np.float64)
    n = 0 if pts.size == 0 else len(pts)
    if n < max(2, k):
        raise ValueError(f"{n} atoms cannot be split into {k} classes")
    if patch_size is None:
        if nn_distance_px is not None and nn_distance_px > 0:
            patch_size = max(3, 2 * round(nn_distance_px / 2) + 1)
        else:
            patch_size = 11
    patches = extract_patches(image, pts, int(patch_size))
    flat = patches.reshape(n, -1)
    n_pca = max(1, min(int(n_components), n - 1, flat.shape[1]))
    pca = PCA(n_components=n_pca, random_state=seed)
    scores = pca.fit_transform(flat)
    if n_pca < 2:
        scores_2d = np.column_stack([scores[:, 0], np.zeros(n)])
        ratio = np.concatenate([pca.explained_variance_ratio_, [0.0]])
    else:
        scores_2d = scores[:, :2]
        ratio = pca.explained_variance_ratio_[:2]
    gmm = GaussianMixture(
        n_components=k, covariance_type="full", random_state=seed, n_init=3, reg_covar=1e-4
    )
    raw = gmm.fit_predict(scores)
    proba = gmm.predict_proba(scores)
    half = int(patch_size) // 2
    centre = np.array(
        [patches[raw == j][:, half, half].mean() if np.any(raw == j) else -np.inf for j in range(k)]
    )
    order = np.argsort(centre, kind="stable")  # new class i = old class order[i]
    relabel = np.empty(k, dtype=int)
    relabel[order] = np.arange(k)
    labels = relabel[raw]
    proba = proba[:, order]
    shape = (k, int(patch_size), int(patch_size))
    centroids, dispersions = np.zeros(shape), np.zeros(shape)
    for j in range(k):
        members = patches[labels == j]
        if len(members):
            centroids[j] = members.mean(axis=0)
            dispersions[j] = members.std(axis=0)
    return AtomClusters(
        labels=labels,
        probabilities=proba,
        centroids=centroids,
        dispersions=dispersions,
        pca_scores=scores_2d,
        explained_variance_ratio=np.asarray(ratio, dtype=float),
        patch_size=int(patch_size),
    )
