"""A patch where the HAADF detector was full (a thick particle, contamination) must not set
the scale LoG* reads the lattice at.

On the real graphene image with a 60 x 60 px patch at 3 x its brightest value (5 % of the
field at one clipped value), the percentile scaling put the whole lattice into the bottom
third: LoG* found 69 atoms outside the patch (F1 0.02 against the reference). The plateau is
now levelled to the rest's 99.5th percentile first (agents.images.with_clipped_levelled).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from agents.images import with_clipped_levelled
from agents.logstar import LoGStarAgent


def _f1(found: np.ndarray, reference: np.ndarray, tol: float) -> float:
    precision = float(np.mean(cKDTree(reference).query(found)[0] < tol))
    recall = float(np.mean(cKDTree(found).query(reference)[0] < tol))
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def test_the_lattice_beside_a_saturated_patch_is_found(real_graphene):
    image, reference, px = real_graphene
    patched = image.copy()
    patched[50:110, 50:110] = 3 * image.max()
    agent = LoGStarAgent("graphene", pixel_size_nm=px, budget=8, n_clusters=0, seed=0)
    agent.observe(patched)
    atoms = agent.atoms[:, :2]

    def outside(points: np.ndarray) -> np.ndarray:
        inside = np.all((points >= 46) & (points < 114), axis=1)
        return points[~inside]

    nn = float(np.median(cKDTree(reference).query(reference, k=2)[0][:, 1]))
    assert _f1(outside(atoms), outside(reference), 0.35 * nn) > 0.8
    assert agent.report()["plausibility"]["ok"]


def test_only_a_plateau_at_the_top_is_levelled(real_graphene):
    image = real_graphene[0]
    same, n = with_clipped_levelled(image)  # its single brightest pixel is no plateau
    assert n == 0
    assert same is image
    patched = image.copy()
    patched[:30, :30] = 10 * image.max()
    levelled, n = with_clipped_levelled(patched)
    assert n == 900
    rest = patched[patched < patched.max()]
    assert np.all(levelled[:30, :30] == np.percentile(rest, 99.5))
    np.testing.assert_array_equal(levelled[30:], image[30:])
    flat = np.full((16, 16), 5.0)
    assert with_clipped_levelled(flat)[1] == 0
    # the equal one-pixel peaks of a clean synthetic lattice are columns, not a plateau
    peaks = np.zeros((64, 64))
    peaks[::8, ::8] = 1.0
    assert with_clipped_levelled(peaks)[1] == 0
