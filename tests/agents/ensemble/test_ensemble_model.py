"""The U-Net and the target masks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from agents.ensemble import UNet, UNetConfig, atom_mask, auto_radius, nearest_neighbour_distance


@pytest.mark.parametrize(
    ("levels", "norm"), [(1, "batch"), (2, "group"), (3, "none")], ids=["1-batch", "2-group", "3"]
)
def test_unet_maps_image_to_same_size_logits(levels, norm):
    net = UNet(UNetConfig(levels=levels, base_filters=4, norm=norm)).eval()
    side = 8 * net.config.size_multiple
    out = net(torch.randn(3, 1, side, side + net.config.size_multiple))
    assert out.shape == (3, 1, side, side + net.config.size_multiple)
    prob = net.probability(torch.randn(1, 1, side, side))
    assert float(prob.min()) >= 0.0
    assert float(prob.max()) <= 1.0


def test_unet_rejects_sides_that_are_not_multiples():
    net = UNet(UNetConfig(levels=2, base_filters=4))
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.zeros(1, 2, 32, 32))


@pytest.mark.parametrize(
    "bad", [{"levels": 0}, {"base_filters": 0}, {"norm": "layer"}, {"dropout": 1.0}]
)
def test_unet_config_validates(bad):
    with pytest.raises(ValueError):
        UNetConfig(**bad)


@pytest.mark.parametrize("levels", [1, 2])
def test_receptive_radius_bounds_the_real_one(levels):
    """Tiling relies on it: no pixel beyond the radius may influence the output."""
    torch.manual_seed(levels)
    net = UNet(UNetConfig(levels=levels, base_filters=4)).eval()
    x = torch.randn(1, 1, 96, 96, requires_grad=True)
    # a 2x2 block of outputs: one pixel can have every ReLU on its path switched off
    net(x)[0, 0, 48:50, 48:50].sum().backward()
    rows, cols = np.nonzero(x.grad[0, 0].numpy())
    assert len(rows) > 0
    reach = max(np.abs(rows - 48.5).max(), np.abs(cols - 48.5).max()) - 0.5
    assert reach <= net.receptive_radius


def test_disc_mask_marks_pixels_within_radius():
    mask = atom_mask([[4, 4], [4.0, 12.0]], (9, 17), radius=1.5)
    assert mask.dtype == np.float32
    assert mask.sum() == 18  # two 3x3 discs
    assert mask[4, 4] == 1
    assert mask[4, 12] == 1
    assert mask[4, 8] == 0


def test_mask_of_atom_near_border_is_clipped_and_outside_atoms_are_ignored():
    mask = atom_mask([[0, 0], [50, 50]], (8, 8), radius=2)
    assert mask[0, 0] == 1
    assert mask[:3, :3].sum() == mask.sum()  # only the corner atom's quarter disc


def test_gaussian_mask_peaks_at_one():
    mask = atom_mask([[5, 5]], (11, 11), radius=1.0, kind="gaussian")
    assert mask[5, 5] == pytest.approx(1.0)
    assert 0 < mask[5, 7] < mask[5, 6] < 1


def test_auto_radius_follows_lattice_and_is_clipped():
    square = np.array([[0, 0], [0, 10], [10, 0], [10, 10]])
    assert nearest_neighbour_distance(square) == pytest.approx(10.0)
    assert auto_radius(square) == pytest.approx(2.5)
    assert auto_radius(square * 10) == pytest.approx(4.0)  # clipped high
    assert auto_radius(square * 0.2) == pytest.approx(1.5)  # clipped low
    assert auto_radius(square[:1]) == pytest.approx(4.0)  # one atom: no spacing


@pytest.mark.parametrize(
    ("positions", "shape", "kwargs"),
    [
        ([[1, 2, 3]], (4,), {}),
        ([[np.nan, 1]], (4, 4), {}),
        ([1, 2, 3], (4, 4), {}),
        ([[1, 1]], (4, 4), {"radius": -1}),
        ([[1, 1]], (4, 4), {"kind": "square"}),
    ],
)
def test_mask_rejects_bad_input(positions, shape, kwargs):
    with pytest.raises(ValueError):
        atom_mask(positions, shape, **kwargs)


def test_import_agents_stays_torch_free():
    code = "import sys, agents; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
