"""Patches around candidate pixels: layout, normalisation and borders."""

from __future__ import annotations

import numpy as np
import pytest

from agents.patches import candidate_grid, extract_patches

IMAGE = np.arange(100.0).reshape(10, 10)  # value = 10 * row + column


def test_patch_is_the_window_around_the_pixel_x_column_y_row():
    patches, xy = extract_patches(IMAGE, window=3, positions=[[4, 2]], normalise=None)
    assert patches.dtype == np.float32
    assert patches.shape == (1, 9)
    expected = IMAGE[1:4, 3:6]  # rows y-1..y+1, columns x-1..x+1
    np.testing.assert_array_equal(patches[0].reshape(3, 3), expected)
    np.testing.assert_array_equal(xy, [[4.0, 2.0]])


def test_sub_pixel_positions_round_to_the_nearest_pixel():
    a, xy = extract_patches(IMAGE, window=3, positions=[[4.4, 1.6]], normalise=None)
    b, _ = extract_patches(IMAGE, window=3, positions=[[4, 2]], normalise=None)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(xy, [[4.0, 2.0]])


def test_reflect_border_gives_every_pixel_a_patch_mirrored_at_the_edge():
    patches, xy = extract_patches(IMAGE, window=4, normalise=None)
    assert patches.shape == (100, 16)
    assert len(xy) == 100
    corner = patches[0].reshape(4, 4)  # pixel (0, 0): rows -2..1, columns -2..1
    np.testing.assert_array_equal(corner[2:, 2:], IMAGE[:2, :2])
    np.testing.assert_array_equal(corner[:2, 2:], IMAGE[1::-1, :2])  # mirrored rows


def test_exclude_border_keeps_whole_windows_and_refuses_positions_that_leave():
    patches, xy = extract_patches(IMAGE, window=4, border="exclude", normalise=None)
    assert len(xy) == 7 * 7
    assert xy[:, 0].min() == 2
    assert xy[:, 0].max() == 8
    np.testing.assert_array_equal(patches[0].reshape(4, 4), IMAGE[0:4, 0:4])
    with pytest.raises(ValueError, match="leaves the image"):
        extract_patches(IMAGE, window=4, positions=[[1, 5]], border="exclude")


def test_image_normalisation_keeps_contrast_between_patches():
    patches, _ = extract_patches(IMAGE, window=3, positions=[[1, 1], [8, 8]])
    assert patches.min() >= 0
    assert patches.max() <= 1
    assert patches[1].mean() > patches[0].mean() + 0.5  # bright corner stays brighter


def test_patch_normalisation_keeps_only_shape():
    patches, _ = extract_patches(IMAGE, window=3, positions=[[1, 1], [8, 8]], normalise="patch")
    np.testing.assert_allclose(patches.mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(patches.std(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(patches[0], patches[1], atol=1e-5)  # same ramp, any brightness


def test_flat_patches_do_not_divide_by_zero():
    patches, _ = extract_patches(np.ones((6, 6)), window=3, normalise="patch")
    assert np.all(np.isfinite(patches))
    assert np.all(patches == 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"positions": [[10, 0]]}, "outside"),
        ({"positions": [[0, -1]]}, "outside"),
        ({"positions": [[np.nan, 0]]}, "finite"),
        ({"window": 0}, "window"),
        ({"normalise": "global"}, "normalise"),
        ({"border": "wrap"}, "border"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        extract_patches(IMAGE, **{"window": 3, **kwargs})


def test_candidate_grid_is_x_column_y_row_in_raster_order():
    grid = candidate_grid((128, 128), step=2)
    assert len(grid) == 4096
    np.testing.assert_array_equal(grid[:2], [[0, 0], [2, 0]])
    np.testing.assert_array_equal(grid[64], [0, 2])
