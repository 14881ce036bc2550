"""What real recordings bring that the twin does not, for every survey-image agent.

A DigitalMicrograph image can hold a few undefined pixels (NaN after drift correction or a
dead-pixel mask), come as ``uint16`` counts or as a one-frame stack; a spectrum can give no
number (a dead read-out, a ratio over zero counts). None of these may stop an experiment:
the image is repaired and the repair logged, the spectrum's position is kept as measured but
not learned from, and the agent goes on suggesting other positions.
"""

import logging
from pathlib import Path

import numpy as np
import pytest

from agents.images import MAX_UNDEFINED_FRACTION, survey_image_array, without_hot_pixels
from agents.registry import agent_entry

SMALL = {
    "dkl": {"n_seed": 3, "train_iters": 5, "step": 2, "window": 8},
    "edge": {},
    "bandit": {"n_arms": 4, "seed": 0},
    "physics": {"train_steps": 5, "finetune_steps": 2, "draws": 2, "n_seed": 3},
    "hypotheses": {"train_steps": 5, "finetune_steps": 2, "draws": 2, "n_seed": 3},
    "latent": {"epochs": 1, "window": 8, "step": 4, "train_step": 4},
}


def grain_image(size: int = 32) -> np.ndarray:
    """Two grains and a bright particle, in counts, with a few undefined pixels."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:size, :size]
    image = 1000.0 + 300.0 * (xx > size / 2) + 2000.0 * (np.hypot(xx - 8, yy - 8) < 5)
    image += rng.normal(0, 20, image.shape)
    image[3, 20] = np.nan
    image[25, 4] = np.inf
    return image


def test_undefined_pixels_are_filled_from_their_neighbours_and_logged(caplog):
    image = np.arange(25.0).reshape(5, 5)
    image[2, 2] = np.nan
    caplog.set_level(logging.WARNING, logger="agents.images")
    repaired = survey_image_array(image)
    assert np.isnan(image[2, 2])  # the caller's array is left as it was
    # a nearest neighbour's value: one of the four pixels around it
    assert repaired[2, 2] in {image[1, 2], image[3, 2], image[2, 1], image[2, 3]}
    assert np.array_equal(np.delete(repaired.ravel(), 12), np.delete(image.ravel(), 12))
    assert "1 undefined pixel(s)" in caplog.text


def test_counts_and_one_frame_stacks_are_accepted_and_stacks_refused():
    counts = np.full((1, 4, 6), 7, dtype=np.uint16)
    out = survey_image_array(counts)
    assert out.shape == (4, 6)
    assert out.dtype == np.float64
    assert out[0, 0] == 7.0
    with pytest.raises(ValueError, match="stack of frames"):
        survey_image_array(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="at least 3 x 3"):
        survey_image_array(np.zeros((2, 8)), min_size=3)


def test_an_image_mostly_undefined_is_refused():
    image = np.ones((10, 10))
    image[:, :2] = np.nan  # 20 % undefined, against at most MAX_UNDEFINED_FRACTION filled
    assert MAX_UNDEFINED_FRACTION < 0.2
    with pytest.raises(ValueError, match="20 of 100 pixels"):
        survey_image_array(image)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_agents_run_on_a_flawed_image_and_skip_a_spectrum_without_a_number(name):
    image = grain_image()
    agent = agent_entry(name).load()(image, **SMALL[name])
    first = agent.suggest(2)
    assert len(first) == 2
    dead = [first[0]["x"], first[0]["y"]]
    agent.ingest([dead, [first[1]["x"], first[1]["y"]]], [np.nan, 5.0])
    # the dead read-out is kept as measured but not learned from; the other one is
    assert agent.unusable.tolist() == [dead]
    assert agent.values.tolist() == [5.0]
    agent.ingest([[10.0, 10.0]], [np.inf])  # a call with nothing usable at all
    assert len(agent.unusable) == 2
    assert len(agent.values) == 1
    later = agent.suggest(4)
    assert later, "the agent stopped suggesting after a spectrum without a number"
    if name != "edge":  # the edge walker follows its path; the others choose freely
        assert dead not in [[s["x"], s["y"]] for s in later]
    assert all(np.isfinite([s["x"], s["y"]]).all() for s in later)


DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_hot_pixels_are_replaced_and_atoms_left_alone():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:64, :64]
    atoms = sum(
        np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 2.0**2))
        for cx in range(4, 64, 8)
        for cy in range(4, 64, 8)
    )
    image = 100.0 + 50.0 * atoms + rng.normal(0, 2.0, atoms.shape)
    same, n = without_hot_pixels(image)
    assert n == 0
    assert same is image  # no hot pixel: the very same array, nothing recomputed
    spiked = image.copy()
    spiked[10, 13] = 5000.0
    spiked[40, 41] = -3000.0
    clean, n = without_hot_pixels(spiked)
    assert n == 2
    assert abs(clean[10, 13] - image[10, 13]) < 20
    assert abs(clean[40, 41] - image[40, 41]) < 20
    assert np.array_equal(
        np.delete(clean.ravel(), [10 * 64 + 13, 40 * 64 + 41]),
        np.delete(image.ravel(), [10 * 64 + 13, 40 * 64 + 41]),
    )


def test_an_image_sampled_finer_than_recorded_has_no_hot_pixels():
    """Upsampled 2 x (every pixel a 2 x 2 block), the real graphene image has next to no
    pixel-to-pixel noise: 1,655 of its noisy blocks' pixels were taken for hot pixels and
    replaced, before LoG*, the ensemble and drift saw the image."""
    if not (DATA / "G-Si-2nm.npy").is_file():
        pytest.skip(f"G-Si-2nm.npy is not in {DATA}")
    image = np.load(DATA / "G-Si-2nm.npy")
    finer = np.kron(image, np.ones((2, 2)))
    same, n = without_hot_pixels(finer)
    assert n == 0
    assert same is finer
    # a spike on the finer image is still one: alone, or two pixels side by side
    spiked = finer.copy()
    spiked[100, 100] = spiked[300, 41] = spiked[300, 42] = 50 * image.max()
    clean, n = without_hot_pixels(spiked)
    assert n == 3
    assert clean.max() <= finer.max()


def test_logstar_on_a_real_image_with_hot_pixels_reads_as_without():
    """0.1 % of pixels at 50x the brightest atom (a camera's hot pixels) hid every lattice
    reflection of the real graphene image: the pixel size could not be read."""
    if not (DATA / "G-Si-2nm.npy").is_file():
        pytest.skip(f"G-Si-2nm.npy is not in {DATA}")
    from agents.logstar import LoGStarAgent, get_lattice
    from agents.logstar.calibration import estimate_pixel_size

    image = np.load(DATA / "G-Si-2nm.npy")
    rng = np.random.default_rng(0)
    hot = np.where(rng.random(image.shape) < 0.001, image.max() * 50, image)
    clean = estimate_pixel_size(image, get_lattice("graphene"), window="auto")
    spiked = estimate_pixel_size(hot, get_lattice("graphene"), window="auto")
    assert spiked.pixel_size_nm == pytest.approx(clean.pixel_size_nm, rel=0.002)
    counts = []
    for img in (image, hot):
        agent = LoGStarAgent("graphene", pixel_size_nm=clean.pixel_size_nm, budget=20, seed=0)
        agent.observe(img)
        counts.append(len(agent.find_atoms(img)))
    # not one atom per hot pixel (~65 of them): the same atoms, give or take a couple
    assert abs(counts[1] - counts[0]) <= 3
