"""Calibrating the ensemble's atom uncertainty on images whose truth is known.

Each atom the ensemble finds comes with evidence (:mod:`.evidence`): how much the members
disagree, how much of an atom they see there, how plausibly it sits among its neighbours.
:func:`calibrate_uncertainty` predicts on labelled images (the digital twin's, across its
doses and samplings), marks every found atom that has no true atom within half the
nearest-neighbour distance as false, and fits a logistic model of "false" on the evidence.
From then on, the ensemble's ``uncertainty`` for an atom is that model's probability that the
atom is false.

On images like the calibration images the number is a probability (a fifth of the atoms at
0.2 are false); on images unlike them (a real microscope's) the false atoms still come out
on top of the ranking, but the numbers are too low: the twin makes fewer mistakes than a real
image provokes. The benchmark (``benchmarks/ensemble.py``) reports both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..metrics import match_atoms
from .data import as_image_list
from .evidence import EVIDENCE, AtomCalibration
from .masks import as_atom_positions, nearest_neighbour_distance
from .members import Ensemble
from .predict import predict

__all__ = ["calibrate_uncertainty", "false_atoms"]


def false_atoms(
    found: np.ndarray, truth: np.ndarray, max_distance: float | None = None
) -> np.ndarray:
    """Which found atoms are false: no true atom within ``max_distance`` (one-to-one
    matching, :func:`agents.metrics.match_atoms`); default half the median nearest-neighbour
    distance of the true atoms."""
    truth = as_atom_positions(truth)
    d = max_distance if max_distance is not None else 0.5 * nearest_neighbour_distance(truth)
    if not np.isfinite(d):
        raise ValueError("max_distance is needed for images with fewer than two true atoms")
    result = match_atoms(found, truth, d)
    false = np.ones(len(found), dtype=bool)
    if len(result.pairs):
        false[result.pairs[:, 0]] = False
    return false


def calibrate_uncertainty(
    ensemble: Ensemble,
    images: Any,
    atoms: Sequence[Any],
    *,
    features: Sequence[str] = EVIDENCE,
    description: dict[str, Any] | None = None,
    num_threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    **predict_kwargs: Any,
) -> AtomCalibration:
    """Fit the ensemble's atom uncertainty on labelled images and keep it in its metadata.

    Args:
        ensemble: the trained ensemble (its ``metadata["calibration"]`` is replaced).
        images: ``(N, H, W)`` images or a list of 2-D images the ensemble was not trained on.
        atoms: per image, the true atom positions ``(row, col)``, pixels.
        features: which evidence to use (default: all of :data:`.evidence.EVIDENCE`).
        description: what the images are (source, doses...), kept with the calibration.
        num_threads: torch threads for the predictions.
        progress: called after each image's prediction with ``(images done, images in
            all)``: predicting on 48 256² images takes seconds; a bar shows the wait. It
            changes nothing that is fitted.
        **predict_kwargs: passed to :func:`agents.ensemble.predict` (use the settings the
            ensemble will be used with).

    Returns:
        the fitted :class:`AtomCalibration`.

    Raises:
        ValueError: counts that do not match, or no false (or no true) atom found in the
            images: then there is nothing to calibrate on; add noisier images.

    Example (a tiny ensemble trained a second on a clean synthetic lattice, calibrated on
    noisy copies of it, where it finds false atoms; the real calibration images are the twin's,
    ``make_training_set(n_images=32, size=256, noise_levels=(0, 1), seed=7)``):
        >>> import numpy as np
        >>> yy, xx = np.mgrid[:64, :64]
        >>> atoms = [(r, c) for r in range(4, 64, 8) for c in range(4, 64, 8)]     # (row, col), px
        >>> image = sum(np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 4.0) for r, c in atoms)
        >>> from agents.ensemble import TrainingSettings, calibrate_uncertainty, train_ensemble
        >>> tiny = TrainingSettings(members=2, steps=40, levels=2, base_filters=4, crop_size=32)
        >>> ensemble = train_ensemble([image], [atoms], tiny)
        >>> rng = np.random.default_rng(1)
        >>> noisy = [image + rng.normal(0.0, s, image.shape) for s in (0.3, 0.6, 0.9)]
        >>> calibration = calibrate_uncertainty(ensemble, noisy, [atoms] * 3)
        >>> calibration.fitted_on["images"], calibration.fitted_on["false_atoms"] > 0
        (3, True)
        >>> ensemble.predict(noisy[2]).uncertainty_method   # P(false) for each atom from now on
        'calibrated'
    """
    imgs = as_image_list(images)
    atoms = list(atoms)
    if len(imgs) != len(atoms):
        raise ValueError(f"{len(imgs)} images but {len(atoms)} atom lists")
    if not imgs:
        raise ValueError("no calibration images")
    evidence: dict[str, list[np.ndarray]] = {f: [] for f in features}
    labels = []
    for done, (image, truth) in enumerate(zip(imgs, atoms), start=1):
        p = predict(ensemble, image, num_threads=num_threads, calibration=None, **predict_kwargs)
        if progress is not None:
            progress(done, len(imgs))
        if len(p.atoms) == 0:
            continue
        labels.append(false_atoms(p.atoms, truth))
        for f in features:
            evidence[f].append(p.evidence[f])
    if not labels:
        raise ValueError("the ensemble found no atoms in the calibration images")
    false = np.concatenate(labels)
    merged = {f: np.concatenate(v) for f, v in evidence.items()}
    facts = {
        "images": len(imgs),
        "atoms": len(false),
        "false_atoms": int(false.sum()),
        "predict": {k: v for k, v in predict_kwargs.items() if _jsonable(v)},
        **(description or {}),
    }
    calibration = AtomCalibration.fit(merged, false, features)
    # how well it ranks the false atoms it was fitted on (1: all above every true atom)
    facts["auroc"] = round(_auroc(calibration.probability_false(merged), false), 4)
    calibration = replace(calibration, fitted_on=facts)
    ensemble.metadata["calibration"] = calibration.to_dict()
    return calibration


def _auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None)))
