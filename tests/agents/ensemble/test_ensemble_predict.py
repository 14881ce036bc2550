"""Prediction: shapes, variance across members, tiling, atom finding."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from agents.ensemble import (
    Ensemble,
    UNet,
    UNetConfig,
    find_atoms,
    member_variance,
    predict,
    predict_members,
)
from agents.metrics import match_atoms


def test_prediction_has_maps_of_image_shape_and_atoms_inside(tiny_ensemble, make_images):
    images, _truth = make_images(1, seed=3, size=45)
    image = images[0][:, :37]  # odd sides: padded to the network's size multiple inside
    p = predict(tiny_ensemble, image, num_threads=1)
    assert p.mean.shape == p.variance.shape == (45, 37)
    assert p.members == 2
    assert p.mean.min() >= 0.0
    assert p.mean.max() <= 1.0
    assert p.variance.min() >= 0.0
    assert p.variance.max() <= 0.25
    n = len(p.atoms)
    assert n > 0
    assert p.atoms.shape == (n, 2)
    assert p.probability.shape == p.uncertainty.shape == (n,)
    assert np.all((p.atoms >= -0.5) & (p.atoms <= np.array([44.5, 36.5])))
    assert np.all(p.probability >= 0.5)
    assert np.all(p.uncertainty >= 0)
    assert np.array_equal(p.xy, p.atoms[:, ::-1])
    summary = p.summary()
    assert summary["atoms"] == n
    assert summary["members"] == 2


def test_variance_is_zero_for_identical_members_and_positive_for_different_ones(
    tiny_ensemble, tiny_data
):
    image = tiny_data[0][0]
    twin = Ensemble([tiny_ensemble.members[0], copy.deepcopy(tiny_ensemble.members[0])])
    same = predict(twin, image, num_threads=1)
    assert np.all(same.variance == 0.0)
    assert np.all(same.uncertainty == 0.0)
    different = predict(tiny_ensemble, image, num_threads=1)
    assert different.variance.max() > 0.0
    assert different.image_uncertainty > 0.0


def test_member_variance_matches_numpy():
    rng = np.random.default_rng(0)
    probs = rng.uniform(size=(5, 6, 7)).astype(np.float32)
    np.testing.assert_allclose(member_variance(probs), probs.var(axis=0), rtol=1e-5, atol=1e-7)


@pytest.fixture(params=["tiny", "untrained-2-level"])
def members(request, tiny_ensemble):
    if request.param == "tiny":
        return tiny_ensemble
    torch.manual_seed(0)
    return [UNet(UNetConfig(levels=2, base_filters=4)).eval() for _ in range(2)]


@pytest.mark.parametrize("shape", [(50, 70), (33, 33)])
def test_tiled_prediction_equals_whole_image_prediction(members, make_images, shape):
    images, _ = make_images(1, seed=4, size=max(shape))
    image = images[0][: shape[0], : shape[1]]
    whole = predict_members(members, image, tile_size=None, num_threads=1)
    for tile, border in ((8, 16), (16, 0), (24, 5)):
        whole = predict_members(members, image, tile_size=None, border=border, num_threads=1)
        tiled = predict_members(
            members, image, tile_size=tile, border=border, batch_size=3, num_threads=1
        )
        assert tiled.shape == whole.shape == (2, *shape)
        np.testing.assert_allclose(tiled, whole, atol=2e-6)


def test_members_can_be_a_plain_list(tiny_ensemble, tiny_data):
    image = tiny_data[0][1]
    a = predict_members(tiny_ensemble, image, num_threads=1)
    b = predict_members(list(tiny_ensemble.members), image, num_threads=1)
    np.testing.assert_array_equal(a, b)


def test_tiny_ensemble_finds_the_lattice(tiny_ensemble, tiny_data):
    """Sanity check that training and prediction are wired the right way round."""
    images, atoms = tiny_data
    # the truth lists atoms cut by the edge too: keep them for this check
    p = predict(tiny_ensemble, images[0], num_threads=1, exclude_edge=False)
    r = match_atoms(p.atoms, atoms[0], max_distance=2.0)
    assert r.f1 > 0.8


def test_find_atoms_components_and_peaks():
    mean = np.zeros((20, 30), np.float32)
    variance = np.zeros_like(mean)
    mean[4:7, 4:7] = 0.9  # one atom, centroid (5, 5)
    variance[4:7, 4:7] = 0.02
    mean[12:15, 10:20] = 0.6  # two touching atoms: one region, two maxima
    mean[13, 12] = mean[13, 17] = 0.95
    mean[18, 28] = 0.9  # a one-pixel speck
    atoms, prob, unc, area = find_atoms(mean, variance, min_area=2)
    assert len(atoms) == 2
    np.testing.assert_allclose(atoms[0], [5.0, 5.0])
    assert prob[0] == pytest.approx(0.9)
    assert unc[0] == pytest.approx(0.02)
    assert area.tolist() == [9.0, 30.0]
    peaks, _, _, _ = find_atoms(mean, variance, method="peaks", min_distance=2)
    assert len(peaks) == 3
    assert np.min(np.abs(peaks[:, 1] - 12.0)) < 1.0
    assert np.min(np.abs(peaks[:, 1] - 17)) < 1


def test_auto_min_area_drops_specks_much_smaller_than_confident_atoms():
    mean = np.zeros((30, 30), np.float32)
    mean[2:8, 2:8] = mean[2:8, 20:26] = 0.95  # two confident 36-pixel atoms
    mean[20:22, 20:22] = 0.95  # a 4-pixel speck: below 30 % of 36
    mean[20:25, 2:7] = 0.7  # a 25-pixel, less probable atom: kept
    variance = np.zeros_like(mean)
    _atoms, _, _, area = find_atoms(mean, variance)  # min_area="auto"
    assert sorted(area.tolist()) == [25.0, 36.0, 36.0]
    assert len(find_atoms(mean, variance, min_area=2)[0]) == 4
    with pytest.raises(ValueError, match="min_area"):
        find_atoms(mean, variance, min_area="big")


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((8, 8, 3)), "2-D"),
        (np.zeros((2, 40)), "at least"),
        (np.full((16, 16), np.inf), "NaN or infinite"),
        ([["a", "b"]], "2-D array of numbers"),
    ],
)
def test_bad_images_get_a_clear_error(tiny_ensemble, image, message):
    with pytest.raises(ValueError, match=message):
        predict(tiny_ensemble, image)


def test_a_few_undefined_pixels_are_filled_not_refused(tiny_ensemble, caplog):
    """A real image with a NaN pixel or two (drift correction, a dead-pixel mask) is
    predicted as if the pixel held its neighbour's value; a one-frame stack as its frame."""
    rng = np.random.default_rng(0)
    image = rng.random((32, 32)).astype(np.float32)
    flawed = image.copy()
    flawed[5, 7] = np.nan
    repaired = image.copy()
    candidates = [image[4, 7], image[6, 7], image[5, 6], image[5, 8]]  # its 4 neighbours
    with caplog.at_level("WARNING", logger="agents.images"):
        got = predict(tiny_ensemble, flawed)
    assert "1 undefined pixel(s)" in caplog.text
    assert np.all(np.isfinite(got.mean))
    matches = []
    for value in candidates:
        repaired[5, 7] = value
        matches.append(np.allclose(predict(tiny_ensemble, repaired).mean, got.mean))
    assert any(matches)
    stacked = predict(tiny_ensemble, image[None])
    assert np.allclose(stacked.mean, predict(tiny_ensemble, image).mean)


def test_flat_image_gives_no_atoms_rather_than_an_error(tiny_ensemble):
    p = predict(tiny_ensemble, np.full((32, 32), 7.0), num_threads=1)
    assert p.mean.shape == (32, 32)
    assert np.all(np.isfinite(p.mean))
