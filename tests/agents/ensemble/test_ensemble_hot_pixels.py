"""A camera's hot pixels are one-pixel blobs: the ensemble must not take them for atoms (nor
send EELS to them). The twin's images have none; real recordings do."""

from __future__ import annotations

import numpy as np

from agents.ensemble import EnsembleAgent


def test_hot_pixels_are_not_atoms(tiny_ensemble, make_images):
    """With 0.05 % hot pixels on the real graphene image, 4 of the trained ensemble's 5 most
    uncertain atoms were hot pixels (benchmarked by hand: ~250 'atoms' for ~140 at 0.3 %)."""
    images, _ = make_images(1, seed=5, size=64)
    image = images[0]
    rng = np.random.default_rng(0)
    hot = np.zeros(image.shape, dtype=bool)
    hot[rng.integers(2, 62, 12), rng.integers(2, 62, 12)] = True
    spiked = np.where(hot, 5 * image.max(), image)

    def sites(agent):
        return np.array([[s["x"], s["y"]] for s in agent.suggest(5)])

    agent = EnsembleAgent(tiny_ensemble, num_threads=1, device="cpu", contrast="bright")
    clean = agent.observe(image).xy
    assert agent.report()["hot_pixels"] == 0
    expected = sites(agent)
    agent = EnsembleAgent(tiny_ensemble, num_threads=1, device="cpu", contrast="bright")
    found = agent.observe(spiked).xy
    assert agent.report()["hot_pixels"] == hot.sum()
    # the atoms of the clean image, not one more per hot pixel; EELS where it would go
    np.testing.assert_allclose(found, clean, atol=0.5)
    np.testing.assert_allclose(sites(agent), expected, atol=0.5)
