"""LoG* on a field too noisy to show its columns says so instead of a confident answer.

With a pixel size given 2.4 x too large, LoG* looks for columns 2.4 x closer than they are;
on the twin's graphene at noise 1 (96 px) it found 852 noise maxima (F1 0.37 against the
truth) and the lattice tests passed them: a spacing that small fits noise anywhere. The
structure-over-noise test the ensemble's atom map passes (agents.structure) now fails it.
"""

from __future__ import annotations

import numpy as np
import pytest

from agents.logstar import LoGStarAgent, get_lattice
from agents.logstar.plausibility import check_plausibility
from agents.logstar.scalespace import prepare_image


@pytest.fixture(scope="module")
def noisy_twin():
    from ophyd_stem.app.training_data import twin_image

    image, _, _ = twin_image("graphene", size=96, noise_level=1.0, seed=0)
    return image, 2.0 / 96  # the twin's own pixel size, nm


def test_a_field_too_noisy_for_its_columns_is_judged_so(noisy_twin):
    image, px = noisy_twin
    agent = LoGStarAgent("graphene", pixel_size_nm=2.4 * px, budget=8, n_clusters=0, seed=0)
    agent.observe(image)
    check = agent.report()["plausibility"]
    assert len(agent.atoms) > 500  # the noise maxima the search at too small a scale finds
    assert not check["ok"]
    assert "too noisy" in check["reason"]
    assert check["featureless_field"] > 0.5
    assert check["contrast_snr"] < 1.0
    assert any("too noisy" in w for w in check["warnings"])


def test_pure_noise_fails_and_a_real_lattice_passes_the_noise_test(real_graphene):
    image, reference, px = real_graphene
    graphene = get_lattice("graphene")
    real = check_plausibility(reference, prepare_image(image), graphene, px, quiet=True)
    assert real.ok, real.warnings
    assert real.featureless_field < 0.05
    assert real.contrast_snr > 2.0
    # the same atoms on noise of the image's own level: nothing above the noise there
    noise = np.random.default_rng(0).normal(0.0, float(np.std(image)), image.shape)
    fake = check_plausibility(reference, noise, graphene, px, quiet=True)
    assert not fake.ok
    assert fake.featureless_field > 0.9
    assert any("too noisy" in r for r in fake.reasons)
