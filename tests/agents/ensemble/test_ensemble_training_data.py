"""Training images from the digital twin (ophyd_stem.app.training_data)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy", reason="the twin needs scipy (extra 'twin')")

from ophyd_stem.app.training_data import make_training_set, twin_image


def _near_peaks(image: np.ndarray, atoms: np.ndarray) -> float:
    """Mean image value at the atoms over the image mean (> 1: atoms sit on bright spots)."""
    from scipy import ndimage

    inside = np.all((atoms >= 0) & (atoms <= np.array(image.shape) - 1), axis=1)
    smooth = ndimage.gaussian_filter(image.astype(np.float64), 1.0)
    return float(ndimage.map_coordinates(smooth, atoms[inside].T, order=1).mean() / smooth.mean())


def test_training_set_has_images_and_atoms_of_both_samples():
    images, atoms, infos = make_training_set(n_images=4, size=48, seed=3, return_info=True)
    assert images.shape == (4, 48, 48)
    assert images.dtype == np.float32
    assert [i.sample for i in infos] == ["graphene", "srtio3", "graphene", "srtio3"]
    for image, pos, info in zip(images, atoms, infos):
        assert pos.ndim == 2
        assert pos.shape[1] == 2
        assert len(pos) == info.atoms > 0
        assert 0.0 <= info.noise_level <= 0.9
        assert 0.07 <= info.probe_fwhm <= 0.14
        # atoms up to the margin (8 px) outside the image are kept: their discs show
        assert pos.min() >= -8.5
        assert pos.max() <= 48 + 8
        assert _near_peaks(image, pos) > 1.0
    assert any(pos.min() < -0.5 or pos.max() > 47.5 for pos in atoms)


def test_same_seed_same_set_and_ranges_are_respected():
    a, pa = make_training_set(("graphene",), n_images=2, size=32, seed=5, noise_levels=0.2)
    b, pb = make_training_set(("graphene",), n_images=2, size=32, seed=5, noise_levels=0.2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pa[1], pb[1])
    _, _, infos = make_training_set(
        ("SrTiO3",),
        n_images=3,
        size=32,
        seed=1,
        noise_levels=[0.1, 0.4],
        pixel_sizes=(0.02, 0.02),
        rotations=30.0,
        probe_sizes=0.1,
        return_info=True,
    )
    assert {i.noise_level for i in infos} <= {0.1, 0.4}
    assert all(i.pixel_size == pytest.approx(0.02) for i in infos)
    assert all(i.rotation == 30.0 and i.probe_fwhm == 0.1 for i in infos)


def test_srtio3_labels_the_visible_columns_only():
    _, atoms, codes = twin_image("SrTiO3", size=64, pixel_size=0.02, seed=2)
    _, all_atoms, all_codes = twin_image(
        "SrTiO3", size=64, pixel_size=0.02, seed=2, species=("Sr", "TiO", "O")
    )
    assert set(codes.tolist()) == {0, 1}  # Sr and Ti-O columns; O (2) is invisible in HAADF
    assert 2 in set(all_codes.tolist())
    assert len(all_atoms) > len(atoms)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"samples": ("gold",)}, "unknown sample"),
        ({"samples": ()}, "at least one"),
        ({"n_images": 0}, "n_images"),
        ({"noise_levels": (0.5, 0.1)}, "low <= high"),
    ],
)
def test_bad_requests_get_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_training_set(**{"n_images": 1, "size": 16, **kwargs})


def test_making_images_counts_them_when_asked(capsys):
    """The first `run dcnn` makes 160 training images (15-20 s): the wait shows counts."""
    make_training_set(("graphene",), n_images=3, size=32, progress=True)
    assert "3/3" in capsys.readouterr().err
    make_training_set(("graphene",), n_images=3, size=32)
    assert capsys.readouterr().err == ""
