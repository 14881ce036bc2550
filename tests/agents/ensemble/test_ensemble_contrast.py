"""EnsembleAgent on dark columns (ABF, BF): the image is inverted before prediction, so the
members see what they were trained on; the decision is recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.ensemble import EnsembleAgent


@pytest.fixture
def survey(make_images):
    images, atoms = make_images(1, seed=11, size=48)
    return images[0], atoms[0]


def test_a_dark_column_image_gives_the_atoms_of_its_bright_twin(tiny_ensemble, survey):
    image = survey[0]
    bright = EnsembleAgent(tiny_ensemble, num_threads=1, contrast="bright")
    expected = bright.observe(image)
    abf = 5.0 - image  # the same columns, dark on a bright background
    for kwargs in ({}, {"detector": "ABF"}):  # auto: from the image, or from the name
        agent = EnsembleAgent(tiny_ensemble, num_threads=1)
        found = agent.observe(abf, **kwargs)
        assert found.xy.shape == expected.xy.shape  # float32 rounding of 5 - image aside
        assert np.allclose(found.xy, expected.xy, atol=1e-4)
        assert np.allclose(found.probability, expected.probability, atol=1e-5)
        decided = agent.report()["contrast"]
        assert decided["contrast"] == "dark"
        assert decided["source"] == ("detector" if kwargs else "image")
    # "brightest" means the strongest columns: the darkest ones in the ABF image; the
    # recorded intensity is the ABF image's own value there
    assert np.allclose(agent.strength, bright.intensity - 5.0, atol=1e-4)
    assert np.allclose(agent.intensity, 5.0 - bright.intensity, atol=1e-4)


def test_auto_keeps_a_bright_image_as_it_is_and_records_the_choice(tiny_ensemble, survey):
    image = survey[0]
    asked = EnsembleAgent(tiny_ensemble, num_threads=1, contrast="bright").observe(image)
    agent = EnsembleAgent(tiny_ensemble, num_threads=1)
    assert agent.report()["contrast"] == {"asked": "auto", "contrast": None}
    found = agent.observe(image, detector="HAADF")
    assert np.array_equal(found.xy, asked.xy)
    assert agent.config()["contrast"] == "auto"
    report = agent.report()
    assert (report["contrast"]["contrast"], report["contrast"]["source"]) == ("bright", "detector")
    assert len(json.dumps(report)) < 1500
    with pytest.raises(ValueError, match="contrast must be one of"):
        EnsembleAgent(tiny_ensemble, contrast="abf")
