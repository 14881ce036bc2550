"""ELIT: retraining the ensemble on its own confident atoms in unlabelled images.

Ensemble Learning - Iterative Training (Ghosh et al., npj Comput. Mater. 7, 100, 2021):
after a first ensemble, predict on new *unlabelled* images, keep as labels only the atoms the
ensemble is sure of (mean probability high AND uncertainty low), ignore the uncertain places
in the loss, and retrain. The ensemble thereby adapts to a microscope's own
images without anyone labelling them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ._runtime import as_image, torch_threads
from .data import TrainingData, as_image_list, prepare_training_data
from .masks import Radius, atom_mask, auto_radius
from .members import Ensemble
from .predict import predict
from .prediction import Prediction
from .train import TrainingSettings, _now, _strengths, train_members

__all__ = ["iterative_training", "pseudo_labels"]

#: mean probability from which the members "see an atom" at a pixel (``find_atoms``' default)
FOREGROUND = 0.5


def pseudo_labels(
    prediction: Prediction,
    *,
    min_probability: float = 0.8,
    max_uncertainty: float = 0.01,
    max_variance: float | None = None,
    radius: Radius = "auto",
    exclusion: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ELIT's labels for an unlabelled image: the atoms the ensemble is sure of.

    An atom is kept when its probability is at least ``min_probability`` AND its
    uncertainty at most ``max_uncertainty``. The loss weight is 0 (ignore) at every pixel
    whose variance across members exceeds ``max_variance``, within ``exclusion`` disc radii
    of every rejected atom, and wherever the members saw an atom that was not reported (two
    implausibly close, or one cut by the image edge), so retraining neither learns those
    doubtful atoms nor learns them as background; it is 1 on the kept atoms' discs.

    Args:
        prediction: the ensemble's prediction on the unlabelled image.
        min_probability: lowest atom probability accepted as a label.
        max_uncertainty: highest atom uncertainty accepted (in the prediction's units: a
            probability of being false when calibrated, else a variance).
        max_variance: highest variance across members at a background pixel; default:
            ``max_uncertainty`` when the uncertainty is a variance, else the median
            footprint variance of the probable atoms.
        radius: target disc radius (pixels or ``"auto"`` from the kept atoms).
        exclusion: radius of the ignored zone around rejected atoms, in disc radii.

    Returns:
        ``(atoms (M, 2) as (row, col), mask (H, W), weight (H, W))``.
    """
    if not 0 < min_probability <= 1:
        raise ValueError(f"min_probability must be in (0, 1], got {min_probability}")
    if max_uncertainty < 0:
        raise ValueError(f"max_uncertainty must be >= 0, got {max_uncertainty}")
    if max_variance is None:
        max_variance = _variance_limit([prediction], min_probability, max_uncertainty)
    if max_variance < 0:
        raise ValueError(f"max_variance must be >= 0, got {max_variance}")
    keep = (prediction.probability >= min_probability) & (prediction.uncertainty <= max_uncertainty)
    kept, rejected = prediction.atoms[keep], prediction.atoms[~keep]
    shape = prediction.mean.shape
    r = (
        (auto_radius(kept) if len(kept) >= 2 else auto_radius(prediction.atoms))
        if (radius == "auto")
        else float(radius)
    )
    mask = atom_mask(kept, shape, radius=r)
    weight = (prediction.variance <= max_variance).astype(np.float32)
    if len(rejected):
        weight[atom_mask(rejected, shape, radius=exclusion * r) > 0] = 0.0
    # foreground far from every reported atom: an atom left out (implausible, cut by the edge)
    reported = atom_mask(prediction.atoms, shape, radius=exclusion * r) > 0
    weight[(prediction.mean >= FOREGROUND) & ~reported] = 0.0
    weight[mask > 0] = 1.0
    return kept, mask, weight


def _footprint_variance(p: Prediction) -> np.ndarray:
    """The members' variance over each atom's footprint (the evidence keeps its log10)."""
    if p.uncertainty_method == "variance" or "variance" not in p.evidence:
        return np.asarray(p.uncertainty, dtype=np.float64)
    return 10.0 ** np.asarray(p.evidence["variance"], dtype=np.float64)


def _variance_limit(
    preds: Sequence[Prediction], min_probability: float, max_uncertainty: float
) -> float:
    """Background pixels count up to this variance: the atom limit itself when the
    uncertainty is a variance, else the median footprint variance of the probable atoms."""
    if all(p.uncertainty_method == "variance" for p in preds):
        return float(max_uncertainty)
    probable = [_footprint_variance(p)[p.probability >= min_probability] for p in preds]
    values = np.concatenate(probable) if probable else np.empty(0)
    return float(np.median(values)) if len(values) else 0.0


def _uncertainty_limit(
    preds: Sequence[Prediction], min_probability: float, max_uncertainty: float | str
) -> float:
    if not isinstance(max_uncertainty, str):
        return float(max_uncertainty)
    if max_uncertainty != "auto":
        raise ValueError(f"max_uncertainty must be a number or 'auto', got {max_uncertainty!r}")
    probable = [p.uncertainty[p.probability >= min_probability] for p in preds]
    values = np.concatenate(probable) if probable else np.empty(0)
    return float(np.median(values)) if len(values) else 0.0


def iterative_training(
    ensemble: Ensemble,
    unlabelled: Any,
    *,
    labelled: TrainingData | None = None,
    rounds: int = 1,
    settings: TrainingSettings | None = None,
    min_probability: float = 0.8,
    max_uncertainty: float | str = "auto",
    from_scratch: bool = False,
    predict_kwargs: dict[str, Any] | None = None,
    device: str | None = None,
    compute: Any = None,
) -> Ensemble:
    """ELIT: retrain the ensemble on its own confident atoms in new, unlabelled images.

    Each round predicts on every unlabelled image, keeps the confident atoms as labels
    (:func:`pseudo_labels`), and retrains every member on them (plus ``labelled``, if given,
    so the ensemble does not forget its first teacher). By default a member continues from
    its current weights (fine-tuning, fast); ``from_scratch=True`` trains new members.

    Args:
        ensemble: the first ensemble (left unchanged; a new one is returned).
        unlabelled: ``(N, H, W)`` images or a list of 2-D images, e.g. from the microscope.
        labelled: the original training data (from :func:`prepare_training_data`).
        rounds: how many predict-label-retrain cycles.
        settings: training settings for the retraining (default: the ensemble's own; when
            fine-tuning, a third of its steps at a third of its learning rate).
        min_probability, max_uncertainty: what counts as confident (see
            :func:`pseudo_labels`). ``max_uncertainty="auto"`` (default) takes, each round,
            the median uncertainty of the probable atoms (probability >= min_probability)
            in all unlabelled images: the more certain half become labels (and background
            pixels count up to the median footprint variance of those atoms). The scale
            depends on the number of members and on how far the images are from the
            training data, so a fixed number keeps all atoms for one ensemble and none for
            another. The ensemble's uncertainty calibration is carried over unchanged (it
            was fitted for the first members; refit it with
            :func:`agents.ensemble.calibrate_uncertainty` on labelled images if needed).
        from_scratch: train new members instead of fine-tuning.
        predict_kwargs: passed to :func:`agents.ensemble.predict`.
        device: where to predict and retrain (``"auto"``, ``"cpu"``, ``"cuda[:N]"``);
            default: ``settings.device``, or ``"auto"`` with the ensemble's own settings
            (the machine it was trained on may have had a GPU this one lacks).
        compute: retrain the members in parallel, one per Dask worker (see
            :func:`agents.ensemble.train_ensemble`).

    Returns:
        the retrained :class:`Ensemble`; ``metadata["history"]`` gains one entry per round
        (pseudo-labelled atoms kept and rejected).

    Example (a tiny ensemble trained a second on a clean synthetic lattice, then fine-tuned
    on its own confident atoms in two noisy images of it; on a microscope's images with the
    default settings a round trains for minutes):
        >>> import numpy as np
        >>> yy, xx = np.mgrid[:64, :64]
        >>> atoms = [(r, c) for r in range(4, 64, 8) for c in range(4, 64, 8)]     # (row, col), px
        >>> image = sum(np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 4.0) for r, c in atoms)
        >>> from agents.ensemble import TrainingSettings, iterative_training, train_ensemble
        >>> tiny = TrainingSettings(members=1, steps=40, levels=2, base_filters=4, crop_size=32)
        >>> ensemble = train_ensemble([image], [atoms], tiny)
        >>> rng = np.random.default_rng(1)
        >>> microscope_images = [image + rng.normal(0.0, 0.3, image.shape) for _ in range(2)]
        >>> better = iterative_training(ensemble, microscope_images, rounds=1)
        >>> better is ensemble, len(better.metadata["history"])
        (False, 1)
        >>> better.metadata["history"][0]["pseudo_atoms_kept"] > 0
        True
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    imgs = [as_image(im, f"unlabelled[{i}]") for i, im in enumerate(as_image_list(unlabelled))]
    if not imgs:
        raise ValueError("no unlabelled images")
    if settings is None:
        base = TrainingSettings.from_dict(
            {**ensemble.metadata.get("training", {}), "device": "auto"}
        )
        if from_scratch:
            settings = replace(base, members=len(ensemble))
        else:  # fine-tuning: fewer steps, gentler steps (a fresh Adam at full rate undoes much)
            settings = replace(
                base,
                steps=max(1, base.steps // 3),
                learning_rate=base.learning_rate / 3,
                members=len(ensemble),
            )
    if device is not None:
        settings = replace(settings, device=device)
    predict_kwargs = {"device": settings.device, **(predict_kwargs or {})}
    current = ensemble.clone()
    for round_index in range(rounds):
        masks, weights, kept_total, rejected_total = [], [], 0, 0
        preds = [predict(current, im, **predict_kwargs) for im in imgs]
        limit = _uncertainty_limit(preds, min_probability, max_uncertainty)
        pixel_limit = _variance_limit(preds, min_probability, limit)
        for pred in preds:
            kept, mask, weight = pseudo_labels(
                pred,
                min_probability=min_probability,
                max_uncertainty=limit,
                max_variance=pixel_limit,
                radius=settings.mask_radius,
            )
            masks.append(mask)
            weights.append(weight)
            kept_total += len(kept)
            rejected_total += len(pred.atoms) - len(kept)
        pseudo = prepare_training_data(
            imgs,
            masks=masks,
            weights=weights,
            description={"pseudo_labelled_images": len(imgs), "atoms": kept_total},
        )
        data = pseudo if labelled is None else labelled.extend(pseudo)
        seeds = [int(settings.seed) + 1000 * (round_index + 1) + k for k in range(len(current))]
        strengths = _strengths(len(current), settings.vary_augmentation)
        t0 = time.perf_counter()
        with torch_threads(settings.num_threads):
            members, _, devices = train_members(
                data,
                settings,
                seeds,
                strengths,
                starts=None if from_scratch else current.members,
                compute=compute,
            )
        current = Ensemble(members, current.metadata, current.name)
        current.metadata["history"] = [
            *current.metadata.get("history", []),
            {
                "round": len(current.metadata.get("history", [])) + 1,
                "date": _now(),
                "unlabelled_images": len(imgs),
                "pseudo_atoms_kept": kept_total,
                "pseudo_atoms_rejected": rejected_total,
                "min_probability": min_probability,
                "max_uncertainty": limit,
                "max_variance": pixel_limit,
                "uncertainty_method": preds[0].uncertainty_method if preds else None,
                "steps": settings.steps,
                "from_scratch": from_scratch,
                "seeds": seeds,
                "trained_on": devices,
                "train_seconds": round(time.perf_counter() - t0, 2),
            },
        ]
    return current
