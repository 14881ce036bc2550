"""Atom evidence, plausibility, the edge rule and the calibrated uncertainty."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from agents.ensemble import (
    EVIDENCE,
    AtomCalibration,
    Ensemble,
    calibrate_uncertainty,
    false_atoms,
    find_atoms,
    load_ensemble,
    member_variance,
    predict,
    save_ensemble,
)
from agents.ensemble.evidence import assess_atoms, plausible_atoms


def _disc(shape, centre, radius, value=1.0):
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    inside = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
    return np.where(inside, value, 0.0).astype(np.float32)


def _maps(atoms_per_member, shape=(40, 60), radius=3.0):
    """Member probability maps with one disc per listed atom."""
    out = np.zeros((len(atoms_per_member), *shape), np.float32)
    for k, atoms in enumerate(atoms_per_member):
        for centre, r in atoms:
            out[k] = np.maximum(out[k], _disc(shape, centre, r or radius))
    return out


def _assess(probs, **kwargs):
    mean, var = probs.mean(0), member_variance(probs)
    atoms, prob, fvar, area = find_atoms(mean, var, min_area=2)
    keep, evidence = assess_atoms(probs, atoms, prob, fvar, area, **kwargs)
    return atoms, keep, evidence


def test_evidence_tells_a_whole_agreed_atom_from_a_speck_and_a_disputed_one():
    whole, speck, disputed = ((10, 10), None), ((10, 30), 1.5), ((28, 45), None)
    probs = _maps([[whole, speck, disputed], [whole, speck, disputed], [whole, speck]])
    atoms, keep, ev = _assess(probs, min_spacing=None, exclude_edge=False)
    assert keep.all()
    assert len(atoms) == 3
    assert set(ev) == set(EVIDENCE)
    order = np.argsort(atoms[:, 1])  # whole, speck, disputed from left to right
    fraction, spread = ev["fraction"][order], ev["spread"][order]
    assert fraction[0] == pytest.approx(1.0)
    assert fraction[1] < 0.5  # a speck is a fraction of an atom
    assert spread[0] == 0.0
    assert spread[1] == 0.0
    assert spread[2] > 0.4  # one member of three sees no atom there
    assert ev["size"][order][0] > 2 * ev["size"][order][1]
    assert np.all(ev["spacing"] <= 1.0)


def test_members_that_place_an_atom_differently_scatter():
    probs = _maps([[((20, 20), None)], [((20, 22), None)], [((22, 20), None)]])
    _, _, ev = _assess(probs, min_spacing=None, exclude_edge=False)
    same = _maps([[((20, 20), None)]] * 3)
    _, _, ev_same = _assess(same, min_spacing=None, exclude_edge=False)
    assert ev_same["scatter"][0] == pytest.approx(0.0, abs=1e-9)
    assert ev["scatter"][0] > 0.1


def test_of_two_implausibly_close_atoms_the_weaker_goes():
    lattice = np.array([[r, c] for r in range(0, 100, 10) for c in range(0, 100, 10)], float)
    bridge = np.array([[45.0, 40.0]])  # half a spacing from two atoms
    atoms = np.vstack([lattice, bridge])
    score = np.ones(len(atoms))
    score[-1] = 0.4
    keep = plausible_atoms(atoms, score, 0.6)
    assert keep[:-1].all()
    assert not keep[-1]
    assert plausible_atoms(atoms, score, None).all()
    score[-1] = 2.0  # the bridge atom is the stronger: its two neighbours go instead
    keep = plausible_atoms(atoms, score, 0.6)
    assert keep[-1]
    assert (~keep).sum() == 2
    with pytest.raises(ValueError, match="min_spacing"):
        plausible_atoms(atoms, score, -1.0)


def test_atoms_cut_by_the_edge_are_not_reported():
    shape = (40, 60)
    inner, cut = ((20, 30), None), ((1, 30), None)
    probs = _maps([[inner, cut]] * 2, shape=shape)
    atoms, keep, ev = _assess(probs, min_spacing=None, exclude_edge=True)
    assert len(atoms) == 2
    assert keep.tolist() == (atoms[:, 0] > 10).tolist()
    assert len(ev["fraction"]) == 1
    _, keep_all, _ = _assess(probs, min_spacing=None, exclude_edge=False)
    assert keep_all.all()


def _separable_evidence(rng, n=400):
    false = rng.uniform(size=n) < 0.2
    ev = {name: rng.normal(size=n) for name in EVIDENCE}
    ev["fraction"] = np.where(false, 0.4, 0.9) + 0.1 * rng.normal(size=n)
    return ev, false


def test_calibration_ranks_false_atoms_first_and_round_trips():
    ev, false = _separable_evidence(np.random.default_rng(0))
    cal = AtomCalibration.fit(ev, false, fitted_on={"images": 3})
    p = cal.probability_false(ev)
    assert np.all((p > 0) & (p < 1))
    assert np.median(p[false]) > 10 * np.median(p[~false])
    assert p.mean() == pytest.approx(false.mean(), abs=0.02)  # calibrated on its own data
    again = AtomCalibration.from_dict(cal.to_dict())
    np.testing.assert_allclose(again.probability_false(ev), p)
    assert again.fitted_on["images"] == 3
    with pytest.raises(ValueError, match="both false and true"):
        AtomCalibration.fit(ev, np.zeros(len(false), bool))
    with pytest.raises(ValueError, match="not an atom calibration"):
        AtomCalibration.from_dict({"features": ["fraction"]})
    with pytest.raises(ValueError, match="unknown evidence"):
        AtomCalibration(("colour",), (0.0,), (1.0,), (1.0,), 0.0)


def test_false_atoms_are_those_without_a_true_atom_nearby():
    truth = np.array([[0.0, 0.0], [0.0, 10.0], [10.0, 0.0]])
    # one-to-one: of two atoms found on one true atom, the farther is false
    found = np.array([[0.5, 0.2], [5.0, 5.0], [0.3, 9.5], [0.2, 0.0]])
    assert false_atoms(found, truth).tolist() == [True, True, False, False]


def test_uncalibrated_ensemble_reports_the_footprint_variance(tiny_ensemble, tiny_data):
    p = predict(tiny_ensemble, tiny_data[0][0], num_threads=1)
    assert p.uncertainty_method == "variance"
    np.testing.assert_allclose(p.uncertainty, 10 ** p.evidence["variance"], rtol=1e-6)
    assert p.summary()["uncertainty_method"] == "variance"


def test_calibrated_ensemble_reports_the_probability_an_atom_is_false(
    tiny_ensemble, make_images, tmp_path, monkeypatch
):
    ensemble = Ensemble(copy.deepcopy(tiny_ensemble.members), dict(tiny_ensemble.metadata))
    # noisy images: the tiny ensemble makes mistakes there to learn from
    images, atoms = make_images(6, seed=11, size=48, noise=0.6)
    cal = calibrate_uncertainty(ensemble, images, atoms, num_threads=1, description={"n": 6})
    assert cal.fitted_on["false_atoms"] > 0
    assert cal.fitted_on["n"] == 6
    assert ensemble.calibration is not None
    noisiest = images[int(np.argmax([len(predict(ensemble, im).atoms) for im in images]))]
    p = predict(ensemble, noisiest, num_threads=1, max_false=None)
    assert p.uncertainty_method == "calibrated"
    assert np.all((p.uncertainty > 0) & (p.uncertainty < 1))
    np.testing.assert_allclose(p.uncertainty, cal.probability_false(p.evidence))
    plain = predict(ensemble, noisiest, num_threads=1, calibration=None)
    assert plain.uncertainty_method == "variance"
    np.testing.assert_array_equal(plain.atoms, p.atoms)
    # by default only the atoms more likely real than false are reported
    likely = predict(ensemble, noisiest, num_threads=1)
    assert len(likely.atoms) == int((p.uncertainty <= 0.5).sum())
    assert np.all(likely.uncertainty <= 0.5)
    with pytest.raises(ValueError, match="max_false"):
        predict(ensemble, noisiest, max_false=0.0)
    # the calibration travels with the saved ensemble
    monkeypatch.setenv("OPHYD_STEM_CACHE", str(tmp_path))
    save_ensemble(ensemble, "calibrated")
    loaded = predict(load_ensemble("calibrated"), noisiest, num_threads=1, max_false=None)
    np.testing.assert_allclose(loaded.uncertainty, p.uncertainty)
    with pytest.raises(ValueError, match="calibration must be"):
        predict(ensemble, images[0], calibration="twin")


def test_calibration_counts_its_images_and_fits_the_same_with_or_without_them(
    tiny_ensemble, make_images
):
    """The first `run dcnn` calibrates on 48 twin images (seconds): the wait shows counts
    (issue 17); counting changes nothing that is fitted."""
    images, atoms = make_images(6, seed=11, size=48, noise=0.6)
    calls = []
    fits = [
        calibrate_uncertainty(
            Ensemble(copy.deepcopy(tiny_ensemble.members), dict(tiny_ensemble.metadata)),
            images,
            atoms,
            num_threads=1,
            progress=progress,
        )
        for progress in (lambda done, total: calls.append((done, total)), None)
    ]
    assert calls == [(i, 6) for i in range(1, 7)]
    assert fits[0].to_dict() == fits[1].to_dict()
