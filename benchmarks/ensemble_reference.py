"""The method benchmarks/ensemble.py compares the ensemble with: LoG* (or, where LoG* cannot be
imported, scikit-image ``blob_log`` with parameters set from the lattice)."""

from __future__ import annotations

from typing import Callable

import numpy as np

#: twin samples -> (LoG* lattice name, default pixel size nm of a 256² test image)
SAMPLES = {"graphene": ("graphene", 2.0 / 256), "srtio3": ("SrTiO3", 4.0 / 256)}


def make_reference_finder(
    sample: str, pixel_size_nm: float, threads: int
) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """The method the ensemble is compared with: LoG* when importable, else ``blob_log``.

    Returns ``(name, find)`` where ``find(image) -> (N, >=2)`` positions ``(row, col)``.
    LoG* optimises its parameters once per (sample, noise level) on the first image it sees
    and applies them to the rest, as its agent does for a fixed pixel size.
    """
    lattice, _ = SAMPLES[sample]
    try:
        from agents.logstar import LoGStarAgent

        agent = LoGStarAgent(
            lattice, pixel_size_nm=pixel_size_nm, budget=30, n_clusters=0, num_threads=threads
        )

        def find_logstar(image: np.ndarray) -> np.ndarray:
            if agent.params is None:
                agent.observe(image)
                return np.asarray(agent.atoms)
            return np.asarray(agent.find_atoms(image))

        return "LoG*", find_logstar
    except Exception as exc:  # LoG* is being written alongside; fall back, say why
        print(f"  (LoG* not usable: {type(exc).__name__}: {exc}; comparing with blob_log)")
    return "blob_log", _blob_log_finder(sample, pixel_size_nm)


def _blob_log_finder(sample: str, pixel_size_nm: float) -> Callable[[np.ndarray], np.ndarray]:
    """scikit-image ``blob_log`` with sigma and threshold set from the lattice, no tuning."""
    from skimage.feature import blob_log

    nn_nm = {"graphene": 0.142, "srtio3": 0.276}[sample]
    nn_px = nn_nm / pixel_size_nm

    def find(image: np.ndarray) -> np.ndarray:
        img = image.astype(np.float64)
        img = (img - img.min()) / (np.ptp(img) or 1.0)
        blobs = blob_log(
            img,
            min_sigma=0.1 * nn_px,
            max_sigma=0.35 * nn_px,
            num_sigma=5,
            threshold=0.05,
            overlap=0.5,
            exclude_border=False,
        )
        return blobs[:, :2]

    return find
