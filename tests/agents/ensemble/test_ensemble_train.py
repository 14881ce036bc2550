"""Training: seeds, members, the data it accepts, and ELIT's pseudo-labels."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from agents.ensemble import (
    Ensemble,
    Prediction,
    TrainingSettings,
    iterative_training,
    predict,
    prepare_training_data,
    pseudo_labels,
    train_member,
)


@pytest.fixture
def short(tiny_settings):
    """The tiny settings with only 5 steps."""
    return replace(tiny_settings, steps=5)


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_seed_same_member_different_seed_different_member(tiny_data, short):
    data = prepare_training_data(*tiny_data)
    rng_state = torch.get_rng_state()
    a, losses_a = train_member(data, short, seed=3)
    b, losses_b = train_member(data, short, seed=3)
    c, _ = train_member(data, short, seed=4)
    assert _same_weights(a, b)
    assert losses_a == losses_b
    assert not _same_weights(a, c)
    assert len(losses_a) == short.steps
    assert torch.equal(torch.get_rng_state(), rng_state)  # the caller's RNG is untouched


def test_trained_ensemble_has_members_and_metadata(tiny_ensemble, tiny_settings):
    assert len(tiny_ensemble) == tiny_settings.members == 2
    meta = tiny_ensemble.metadata
    assert meta["seeds"] == [0, 1]
    assert meta["training"]["steps"] == tiny_settings.steps
    assert meta["architecture"]["levels"] == tiny_settings.levels
    assert meta["data"]["tiny"] is True
    assert meta["data"]["images"] == 6
    assert meta["data"]["atoms"] > 0
    json.dumps(meta)  # the metadata file must be writable as JSON
    assert all(not m.training for m in tiny_ensemble.members)


def test_training_accepts_masks_and_images_of_different_sizes(tiny_data, make_images, short):
    images, atoms = tiny_data
    big, big_atoms = make_images(1, seed=5, size=48)
    data = prepare_training_data([*images[:2], big[0]], [*atoms[:2], big_atoms[0]])
    assert [im.shape for im in data.images] == [(32, 32), (32, 32), (48, 48)]
    # images are standardised, masks binary
    assert abs(float(data.images[2].mean())) < 1e-5
    assert set(np.unique(data.masks[2])) == {0.0, 1.0}
    from_masks = prepare_training_data(images[:2], masks=data.masks[:2])
    assert np.array_equal(from_masks.masks[1], data.masks[1])
    # a crop larger than a small image is mirrored up to size
    net, _ = train_member(data, replace(short, crop_size=64), seed=0)
    assert net.config.levels == short.levels


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((np.zeros((2, 16, 16)), [[], []]), {"masks": [np.zeros((16, 16))] * 2}, "exactly one"),
        ((np.zeros((2, 16, 16)),), {}, "exactly one"),
        ((np.zeros((2, 16, 16)), [[]]), {}, "2 images but 1 atom lists"),
        ((np.zeros((1, 16, 16)),), {"masks": [np.zeros((8, 8))]}, "shape differs"),
        ((np.full((1, 16, 16), np.nan), [[]]), {}, "NaN"),
        ((np.zeros((0, 16, 16)), []), {}, "no training images"),
        ((np.zeros(16), [[]]), {}, "2-D"),
    ],
)
def test_bad_training_data_gets_a_clear_error(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        prepare_training_data(*args, **kwargs)


def test_settings_validate():
    with pytest.raises(ValueError, match="members"):
        TrainingSettings(members=0)
    with pytest.raises(ValueError, match="norm"):
        TrainingSettings(norm="layer")
    assert TrainingSettings.from_dict({"steps": 7, "unknown": 1}).steps == 7


def _prediction(probability, uncertainty) -> Prediction:
    """Four atoms on a 40x40 map, with given probabilities and uncertainties."""
    atoms = np.array([[8.0, 8.0], [8.0, 30.0], [30.0, 8.0], [30.0, 30.0]])
    mean = np.zeros((40, 40), np.float32)
    variance = np.full((40, 40), 1e-4, np.float32)
    for (r, c), p, u in zip(atoms.astype(int), probability, uncertainty):
        mean[r - 1 : r + 2, c - 1 : c + 2] = p
        variance[r - 1 : r + 2, c - 1 : c + 2] = u
    variance[0, 39] = 0.2  # one doubtful background pixel
    return Prediction(
        mean,
        variance,
        atoms,
        np.asarray(probability, float),
        np.asarray(uncertainty, float),
        np.full(4, 9.0),
        members=5,
    )


def test_pseudo_labels_keep_only_confident_atoms_and_ignore_doubtful_places():
    # atom 0: confident; 1: probable but members disagree; 2: members agree it is weak;
    # 3: confident
    pred = _prediction([0.95, 0.9, 0.55, 0.99], [0.001, 0.05, 0.002, 0.0])
    kept, mask, weight = pseudo_labels(pred, min_probability=0.8, max_uncertainty=0.01, radius=2)
    assert kept.tolist() == [[8.0, 8.0], [30.0, 30.0]]
    assert mask[8, 8] == 1
    assert mask[30, 30] == 1
    assert mask[8, 30] == 0
    assert mask[30, 8] == 0
    assert weight[8, 30] == 0
    assert weight[30, 8] == 0
    assert weight[8, 33] == 0  # the ignored zone extends around a rejected atom
    assert weight[0, 39] == 0  # an uncertain background pixel is ignored
    assert weight[8, 8] == 1
    assert weight[20, 20] == 1


def test_pseudo_labels_of_a_calibrated_prediction_limit_pixels_by_variance():
    # uncertainties are probabilities of being false: far above any pixel variance
    pred = _prediction([0.95, 0.9, 0.95, 0.99], [0.02, 0.6, 0.03, 0.01])
    pred.uncertainty_method = "calibrated"
    pred.evidence = {"variance": np.log10([1e-3, 5e-2, 2e-3, 1e-4])}
    pred.mean[20:23, 18:21] = 0.9  # the members saw an atom here that was not reported
    kept, _, weight = pseudo_labels(pred, min_probability=0.8, max_uncertainty=0.1, radius=2)
    assert kept.tolist() == [[8.0, 8.0], [30.0, 8.0], [30.0, 30.0]]
    # background up to the median footprint variance of the probable atoms (1.5e-3)
    assert weight[15, 15] == 1  # variance 1e-4
    assert weight[0, 39] == 0  # variance 0.2, not compared with the 0.1 atom limit
    assert weight[21, 19] == 0  # an unreported atom is not learned as background
    _, _, explicit = pseudo_labels(
        pred, min_probability=0.8, max_uncertainty=0.1, max_variance=0.25, radius=2
    )
    assert explicit[0, 39] == 1


def test_pseudo_labels_tighter_thresholds_keep_fewer_atoms():
    pred = _prediction([0.95, 0.9, 0.85, 0.99], [0.001, 0.004, 0.002, 0.0])
    loose, _, _ = pseudo_labels(pred, min_probability=0.8, max_uncertainty=0.01)
    strict, _, _ = pseudo_labels(pred, min_probability=0.9, max_uncertainty=0.0015)
    assert len(loose) == 4
    assert strict.tolist() == [[8.0, 8.0], [30.0, 30.0]]


def test_iterative_training_retrains_on_confident_atoms(tiny_ensemble, tiny_settings, make_images):
    unlabelled, _ = make_images(2, seed=9, size=32)
    before = [m.state_dict() for m in tiny_ensemble.members]
    expected_kept = sum(
        len(pseudo_labels(predict(tiny_ensemble, im), max_uncertainty=0.02)[0]) for im in unlabelled
    )
    settings = replace(tiny_settings, steps=3)
    new = iterative_training(
        tiny_ensemble, unlabelled, settings=settings, max_uncertainty=0.02, rounds=1
    )
    assert isinstance(new, Ensemble)
    assert len(new) == len(tiny_ensemble)
    (entry,) = new.metadata["history"]
    assert entry["pseudo_atoms_kept"] == expected_kept > 0
    assert entry["unlabelled_images"] == 2
    assert entry["steps"] == 3
    assert not _same_weights(new.members[0], tiny_ensemble.members[0])
    # the first ensemble is left as it was
    assert all(
        torch.equal(before[0][k], v) for k, v in tiny_ensemble.members[0].state_dict().items()
    )
    assert tiny_ensemble.metadata["history"] == []


def test_iterative_training_auto_threshold_keeps_the_more_certain_half(tiny_ensemble, make_images):
    unlabelled, _ = make_images(1, seed=10, size=32)
    pred = predict(tiny_ensemble, unlabelled[0])
    probable = pred.uncertainty[pred.probability >= 0.8]
    new = iterative_training(
        tiny_ensemble, unlabelled, settings=replace(tiny_ensemble_settings(tiny_ensemble), steps=1)
    )
    (entry,) = new.metadata["history"]
    assert entry["max_uncertainty"] == pytest.approx(float(np.median(probable)))
    assert entry["pseudo_atoms_kept"] == int((probable <= np.median(probable)).sum())


def tiny_ensemble_settings(ensemble):
    return TrainingSettings.from_dict(ensemble.metadata["training"])
