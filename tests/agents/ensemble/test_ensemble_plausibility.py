"""The ensemble finds "atoms" in anything: on pure noise or mostly vacuum the default ensemble
found 166-643 of them with no word of doubt. The atom map is now judged against its image
(is there anything above the noise where the atoms are? do the members see whole atoms? are
they brighter than their background?), flagged with the reasons, and the flagged atoms are
never suggested; no atom is dropped. ABF atoms' intensity is the image's own value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.ensemble import EnsembleAgent
from agents.ensemble.plausibility import check_atom_map, structure_map


@pytest.fixture(scope="module")
def graphene(shared_data: Path):
    """The real G-Si HAADF image and its 140 reference atoms (row, col)."""
    image = np.load(shared_data / "G-Si-2nm.npy")
    return image, np.load(shared_data / "G-Si-2nm-coords.npy")[:, :2]


def test_real_atoms_pass_and_noise_maxima_in_vacuum_are_flagged(graphene):
    image, atoms = graphene
    check = check_atom_map(image, atoms, radius=3.5)
    assert check.ok, check.reasons
    assert check.featureless_field < 0.05
    assert not check.featureless.any()
    assert check.contrast_snr > 2.5

    # the same graphene as a 64² flake in a 256² field of vacuum (Poisson counts), with
    # "atoms" at every 9th pixel of the vacuum as the members find them at noise maxima
    rng = np.random.default_rng(0)
    field = rng.poisson(2.0, (256, 256)).astype(float)
    field[96:160, 96:160] = image[96:160, 96:160]
    grid = np.stack(np.meshgrid(np.arange(4, 252, 9.0), np.arange(4, 252, 9.0)), -1)
    grid = grid.reshape(-1, 2)
    vacuum = grid[~np.all((grid >= 88) & (grid < 168), axis=1)]
    flake = atoms[np.all((atoms >= 104) & (atoms < 152), axis=1)]
    check = check_atom_map(field, np.vstack([vacuum, flake]), radius=3.5)
    assert not check.ok
    # 94 % of the field is vacuum; within a window's reach of the flake's edge it shows
    assert check.featureless_field > 0.55
    assert check.featureless[: len(vacuum)].mean() > 0.6  # the vacuum's "atoms"
    assert not check.featureless[len(vacuum) :].any()  # the flake's atoms are kept
    text = " ".join(check.reasons)
    assert "% of the field shows nothing above its noise" in text
    assert f"of the {len(vacuum) + len(flake)} atoms sit where the image shows nothing" in text
    json.dumps(check.as_dict())


def test_the_structure_of_pure_noise_reads_one_and_a_constant_field_zero():
    rng = np.random.default_rng(1)
    ratio = structure_map(rng.normal(100.0, 10.0, (128, 128)), radius=2.0)
    assert 0.8 < np.median(ratio) < 1.2
    assert np.all(structure_map(np.full((64, 64), 7.0), radius=2.0) == 0.0)
    # a smooth ramp under the noise is no structure at the atoms' scale either
    ramp = np.add.outer(np.arange(128.0), np.arange(128.0)) * 0.05
    assert np.median(structure_map(ramp + rng.normal(0, 1.0, ramp.shape), 2.0)) < 1.4


def test_the_agent_flags_a_noise_frame_keeps_its_atoms_and_suggests_none(
    tiny_ensemble, make_images
):
    rng = np.random.default_rng(3)
    noise = rng.normal(100.0, 10.0, (64, 64)).astype(np.float32)
    agent = EnsembleAgent(tiny_ensemble, num_threads=1, device="cpu", contrast="bright")
    found = agent.observe(noise)
    report = agent.report()
    check = report["plausibility"]
    assert len(found.atoms) > 0  # the members see "atoms" in noise ...
    assert check["ok"] is False  # ... and the report says they are not plausible
    assert check["featureless_field"] > 0.9
    assert any("nothing above its noise" in r for r in check["reasons"])
    assert len(agent.atoms()["x"]) == len(found.atoms)  # never silently dropped
    assert all(agent.atoms()["featureless"])
    assert agent.suggest(3) == []  # no EELS on noise
    json.dumps(report)

    # a lattice: nothing flagged featureless, suggestions as before
    images, _ = make_images(1, seed=5, size=64)
    agent.observe(images[0])
    assert agent.plausibility.featureless_field < 0.05
    assert not any(agent.atoms()["featureless"])
    assert len(agent.suggest(3)) == 3


def test_abf_atom_intensity_is_the_images_own_value(tiny_ensemble, stem_abf_crop):
    """The real ABF image's atoms had intensities near -34,000 "counts" (read on the
    inverted copy); they are the image's own counts, and "brightest" still means the
    strongest (darkest) columns."""
    image = stem_abf_crop
    agent = EnsembleAgent(tiny_ensemble, num_threads=1, device="cpu", target="brightest")
    agent.observe(image, detector="ABF")
    assert agent.report()["contrast"]["contrast"] == "dark"
    intensity = np.asarray(agent.atoms()["intensity"])
    assert len(intensity) > 0
    assert np.all((intensity >= image.min()) & (intensity <= image.max()))
    np.testing.assert_allclose(agent.strength, -intensity)
    first = agent.suggest(1)[0]
    assert first["intensity"] == pytest.approx(intensity.min())  # the darkest column


@pytest.fixture(scope="module")
def stem_abf_crop(shared_data: Path):
    """A 96² crop of the real uint16 ABF image."""
    pytest.importorskip("rsciio")
    from rsciio.hspy import file_reader

    data = file_reader(str(shared_data / "stem_abf_data.hspy"))[0]["data"]
    return np.asarray(data)[100:196, 200:296]
