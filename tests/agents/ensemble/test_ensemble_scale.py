"""Columns far larger than the members learned: the survey image is binned before prediction.

The default ensemble read the real graphene image (its lattice repeating every ~28 px) at
F1 0.94, but the same image sampled 2 x finer (a smaller pixel size) gave 4,755 "atoms" for
its 140 columns (F1 0.12) and its atom-map checks passed them. The agent now reads the
lattice's repeat from the image's power spectrum and bins the image when it is longer than
the members learned (agents/ensemble/scale.py); the atoms come back on the image's pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.ensemble import EnsembleAgent
from agents.ensemble.scale import MAX_PERIOD, bin_factor, binned, column_period


@pytest.fixture(scope="module")
def graphene(shared_data: Path) -> np.ndarray:
    return np.load(shared_data / "G-Si-2nm.npy")


def test_the_lattice_repeat_of_the_real_image_is_read_and_scaled(graphene):
    # graphene's {100} planes are 0.213 nm apart: 27.7 px at the image's 0.0077 nm/px
    period, clarity = column_period(graphene)
    assert period == pytest.approx(27.7, rel=0.1)
    assert clarity > 10
    assert bin_factor(graphene) == (1, pytest.approx(period, abs=0.1))  # left as it is
    finer = np.kron(graphene, np.ones((2, 2)))  # the same field sampled 2 x finer
    factor, repeat = bin_factor(finer)
    assert repeat == pytest.approx(2 * period, rel=0.1)
    assert factor == 2
    assert repeat / factor <= MAX_PERIOD
    # noise and a constant field have no repeat to bin for
    noise = np.random.default_rng(0).normal(size=graphene.shape)
    assert bin_factor(noise)[0] == 1
    assert bin_factor(np.full((64, 64), 3.0)) == (1, None)


def test_an_image_sampled_finer_gives_the_same_atoms_on_its_own_pixels(tiny_ensemble, graphene):
    agent = EnsembleAgent(tiny_ensemble, num_threads=1, device="cpu", contrast="bright")
    coarse = agent.observe(graphene).atoms.copy()
    assert agent.report()["binned"]["factor"] == 1
    finer = np.kron(graphene, np.ones((2, 2)))
    assert np.array_equal(binned(finer, 2), graphene)
    found = agent.observe(finer)
    report = agent.report()
    assert report["binned"]["factor"] == 2
    assert report["binned"]["column_period_px"] > MAX_PERIOD
    # the same atoms, each at its place on the finer pixels
    np.testing.assert_allclose(found.atoms, 2 * coarse + 0.5, atol=1e-6)
    assert found.mean.shape == finer.shape
    assert agent.config()["rescale"] is True
    # asked not to: the image as it is (what every image got before)
    as_is = EnsembleAgent(tiny_ensemble, num_threads=1, device="cpu", rescale=False)
    as_is.observe(finer)
    assert as_is.report()["binned"]["factor"] == 1
