"""Sliding windows (both modes, no duplicates at seams) and GMM classes of atoms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from agents.logstar.clustering import cluster_atoms, extract_patches
from agents.logstar.lattice import graphene
from agents.logstar.params import LoGParameters
from agents.logstar.rewards import RewardContext
from agents.logstar.scalespace import ImageScaleSpaces, prepare_image
from agents.logstar.windows import WindowMap, apply_windows, optimize_windows, sliding_windows
from agents.metrics import match_atoms

from .conftest import render_lattice


def test_windows_cover_the_image_and_end_at_its_edges():
    windows = sliding_windows((200, 150), 96, 48)
    covered = np.zeros((200, 150), dtype=int)
    for w in windows:
        covered[w.slices] += 1
        assert w.shape == (96, 96)
    assert covered.min() >= 1
    assert max(w.row1 for w in windows) == 200
    assert max(w.col1 for w in windows) == 150
    assert sorted({w.grid for w in windows}) == [(i, j) for i in range(4) for j in range(3)]
    assert [w.grid for w in sliding_windows((64, 64), 128)] == [(0, 0)]
    with pytest.raises(ValueError, match="stride"):
        sliding_windows((64, 64), 32, 0)


@pytest.fixture(scope="module")
def wide_image():
    # 192 x 192 px of graphene: the left part clean, the right part noisy, so the windows'
    # optima differ
    image, truth, _ = render_lattice(graphene(), shape=(192, 192), noise=0.03, seed=7)
    rng = np.random.default_rng(8)
    image[:, 96:] += 0.25 * rng.standard_normal((192, 96))
    return image, truth


@pytest.fixture(scope="module")
def window_map(wide_image):
    # Sobol trials only (budget == n_initial): the windows' logic, not BO, is under test
    return optimize_windows(
        wide_image[0], "graphene", 0.01, window=96, stride=48, budget=10, n_initial=10, seed=0
    )


def test_window_map_records_every_window(window_map):
    assert window_map.grid_shape == (3, 3)
    assert len(window_map.params) == len(window_map.windows) == 9
    threshold = window_map.parameter_map("threshold")
    assert threshold.shape == (3, 3)
    assert np.all(np.isfinite(threshold))
    qc = window_map.parameter_map("quality_count")
    assert np.all(qc >= 0)
    summary = window_map.summary()
    assert len(summary["windows"]) == 9
    assert summary["grid_shape"] == [3, 3]
    g = window_map.global_params()
    assert min(p.min_sigma for p in window_map.params) <= g.min_sigma
    assert g.min_sigma <= max(p.min_sigma for p in window_map.params)
    assert window_map.global_params(4) == window_map.params[4]
    with pytest.raises(ValueError, match="median"):
        window_map.global_params("mean")
    with pytest.raises(ValueError, match="no parameter"):
        window_map.parameter_map("colour")


def test_global_mode_is_one_parameter_set_on_the_whole_image(wide_image, window_map):
    image = wide_image[0]
    atoms = apply_windows(image, window_map, mode="global")
    g = window_map.global_params()
    expected = ImageScaleSpaces(prepare_image(image), g.sigma_step).detect(g)
    assert np.array_equal(atoms, expected)
    mine = LoGParameters(2.5, 3.5, 0.05, sigma_step=g.sigma_step)
    assert len(apply_windows(image, window_map, params=mine)) > 0


def test_local_mode_stitches_without_duplicates(wide_image, window_map):
    image, truth = wide_image
    atoms, source = apply_windows(
        image,
        window_map,
        mode="local",
        lattice="graphene",
        pixel_size_nm=0.01,
        return_windows=True,
    )
    assert set(source.tolist()) == set(range(9))  # every window contributes its region
    ctx = RewardContext.build(graphene(), 0.01, image.shape)
    pairs = cKDTree(atoms[:, :2]).query_pairs(ctx.min_separation_px, output_type="ndarray")
    # no atom twice across a seam (close pairs within one window are that window's own call)
    assert np.all(source[pairs[:, 0]] == source[pairs[:, 1]])
    assert match_atoms(atoms[:, :2], truth, ctx.match_distance_px).f1 > 0.8


def test_local_mode_merges_an_atom_found_by_two_windows():
    # two windows with the same parameters over a lattice whose atoms sit on the seam
    image, _truth, _ = render_lattice(graphene(), shape=(64, 96), noise=0.0, seed=2)
    p = LoGParameters(2.5, 3.5, 0.05, sigma_step=0.5)
    windows = sliding_windows(image.shape, (64, 64), 32)
    wm = WindowMap(image.shape, windows, [p] * len(windows), [{}] * len(windows), [[]] * 2)
    local, source = apply_windows(
        image, wm, mode="local", lattice="graphene", pixel_size_nm=0.01, return_windows=True
    )
    whole = ImageScaleSpaces(prepare_image(image), 0.5).detect(p)
    ctx = RewardContext.build(graphene(), 0.01, image.shape)
    assert abs(len(local) - len(whole)) <= 2
    assert set(source.tolist()) == {0, 1}
    d, _ = cKDTree(local[:, :2]).query(local[:, :2], k=2)
    assert d[:, 1].min() >= ctx.min_separation_px
    # without the merge, the seam atoms would be there twice: each window alone finds them
    seam = 48.0  # the owners' boundary: halfway between the window centres
    near_seam = np.abs(local[:, 1] - seam) < 8
    assert near_seam.any()
    with pytest.raises(ValueError, match="lattice"):
        apply_windows(image, wm, mode="local")
    with pytest.raises(ValueError, match="mode"):
        apply_windows(image, wm, mode="patchwork")
    with pytest.raises(ValueError, match="shape"):
        apply_windows(image[:32], wm)


@pytest.fixture(scope="module")
def doped():
    # 8 % bright dopants among carbon atoms
    image, truth, kinds = render_lattice(
        graphene(),
        shape=(160, 160),
        dopant_fraction=0.08,
        dopant_amplitude=2.5,
        noise=0.08,
        seed=11,
    )
    return image, truth, kinds


def test_gmm_separates_bright_dopants_from_carbon(doped):
    image, truth, kinds = doped
    assert 2 <= kinds.sum() < len(kinds) // 4
    clusters = cluster_atoms(prepare_image(image), truth, n_clusters=2, nn_distance_px=14.2)
    # the brightest class (the last one) is exactly the dopants
    assert np.array_equal(clusters.labels == clusters.brightest, kinds == 1)
    assert clusters.counts.tolist() == [int((kinds == 0).sum()), int(kinds.sum())]
    half = clusters.patch_size // 2
    assert clusters.centroids[1][half, half] > clusters.centroids[0][half, half]
    assert clusters.centroids.shape == clusters.dispersions.shape == (2, 15, 15)
    assert np.all(clusters.dispersions >= 0)
    assert clusters.pca_scores.shape == (len(truth), 2)
    assert clusters.probabilities.shape == (len(truth), 2)
    assert np.allclose(clusters.probabilities.sum(axis=1), 1.0)
    assert clusters.summary()["counts"] == clusters.counts.tolist()


def test_patches_are_centred_and_mirrored_at_edges():
    image = np.arange(100.0).reshape(10, 10)
    patches = extract_patches(image, np.array([[5.0, 5.0], [0.2, 9.4]]), 3)
    assert patches.shape == (2, 3, 3)
    assert np.array_equal(patches[0], image[4:7, 4:7])
    assert patches[1][1, 1] == image[0, 9]
    assert patches[1][0, 1] == image[1, 9]  # mirrored row above the top edge
    with pytest.raises(ValueError, match="odd"):
        extract_patches(image, np.zeros((1, 2)), 4)
    with pytest.raises(ValueError, match="classes"):
        cluster_atoms(image, np.zeros((1, 2)), n_clusters=2)
