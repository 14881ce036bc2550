"""The default atom-finding ensemble: how ``ophyd-stem train-ensemble`` (and the first
``ophyd-stem run dcnn``) make it from the digital twin.

Three steps, all on twin images whose truth is known:

1. **training images**: 160 labelled 128² images of graphene and SrTiO3 across dose (twin
   noise 0-0.8, where atoms are still visible: docs/decisions/0007-twin-noise-scale.md),
   sampling, rotation, probe size and contamination (``training_data.make_training_set``);
2. **training**: 5 U-Nets x 600 steps (twice the first default: on the real G-Si-2nm image
   300 steps left the members seeing atoms in noise; benchmarks/ensemble.py);
3. **calibration**: 48 other 256² twin images across the whole noise range 0-1, where the
   ensemble makes mistakes to learn from; the atoms it finds there, matched against the
   truth, fit the model that turns each atom's evidence into the probability that it is
   false (:func:`agents.ensemble.calibrate_uncertainty`). That probability is the
   ensemble's reported uncertainty.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "CALIBRATION_IMAGES",
    "CALIBRATION_NOISE",
    "CALIBRATION_SIZE",
    "DEFAULT_MEMBERS",
    "DEFAULT_STEPS",
    "TRAINING_NOISE",
    "calibration_set",
    "train_default_ensemble",
]

#: twin noise levels of the training images: up to 0.8, where atoms are still visible
#: (docs/decisions/0007-twin-noise-scale.md); noisier labels only teach noise
TRAINING_NOISE = (0.0, 0.8)
#: members and steps per member of the default ensemble
DEFAULT_MEMBERS = 5
DEFAULT_STEPS = 600
#: calibration images: how many, their side (px) and twin noise range (the whole scale: the
#: ensemble must meet its mistakes to learn what they look like)
CALIBRATION_IMAGES = 48
CALIBRATION_SIZE = 256
CALIBRATION_NOISE = (0.0, 1.0)
#: the calibration images' seed is the training seed plus this (other twins, other images)
CALIBRATION_SEED_OFFSET = 4242


def calibration_set(
    n_images: int = CALIBRATION_IMAGES,
    size: int = CALIBRATION_SIZE,
    seed: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, list[np.ndarray], dict[str, Any]]:
    """Twin images (graphene and SrTiO3) with their true atoms, for calibrating the
    uncertainty, and a description of them for the metadata.

    Args:
        n_images: number of images.
        size: image side, pixels.
        seed: the *training* seed; the images come from seed ``seed + 4242``.
        progress: count the images on stderr as they are made.

    Returns:
        ``(images (n, size, size), atoms per image (row, col), description)``.
    """
    from .training_data import make_training_set

    images, atoms = make_training_set(
        n_images=n_images,
        size=size,
        noise_levels=CALIBRATION_NOISE,
        margin=0,  # the truth is what lies in the field, like the atoms reported
        seed=seed + CALIBRATION_SEED_OFFSET,
        progress=progress,
    )
    description = {
        "source": "ophyd-stem digital twin",
        "samples": ["graphene", "SrTiO3"],
        "size": size,
        "noise_levels": list(CALIBRATION_NOISE),
        "seed": seed + CALIBRATION_SEED_OFFSET,
    }
    return images, atoms, description


def train_default_ensemble(
    name: str = "default",
    members: int = DEFAULT_MEMBERS,
    steps: int = DEFAULT_STEPS,
    images: int = 160,
    size: int = 128,
    seed: int = 0,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    device: str = "auto",
    compute: Any = None,
    calibration_images: int = CALIBRATION_IMAGES,
    progress: bool = True,
) -> Any:
    """Train an ensemble of U-Nets on twin images, calibrate its uncertainty, save it.

    The images span the out-of-distribution shifts the papers name (dose, sampling, rotation,
    probe size) for graphene and SrTiO3 (``ophyd_stem.app.training_data``). ``device`` and
    ``compute`` say where the members train (see :func:`agents.ensemble.train_ensemble`).

    Args:
        name: saved under this name (``OPHYD_STEM_CACHE``/ensembles/<name>).
        members, steps: ensemble size and optimiser steps per member.
        images, size: number and side (px) of the training images.
        seed: seeds the images and the members.
        overwrite: replace an ensemble already saved under ``name``.
        log: where progress lines go.
        device, compute: where to train (see :func:`agents.ensemble.train_ensemble`).
        calibration_images: 256² twin images to calibrate the uncertainty on (0: none;
            the uncertainty is then the members' variance).
        progress: show progress bars (stderr) while the images are made, the members
            train and the calibration predicts.

    Returns:
        the saved :class:`agents.ensemble.Ensemble`.
    """
    from agents.ensemble import (
        TrainingSettings,
        calibrate_uncertainty,
        save_ensemble,
        train_ensemble,
    )

    from .training_data import make_training_set
    from .waits import counting_bar

    started = time.monotonic()
    log(f"making {images} labelled twin images ({size}x{size}, graphene and SrTiO3)...")
    data, atoms = make_training_set(
        n_images=images, size=size, noise_levels=TRAINING_NOISE, seed=seed, progress=progress
    )
    log(f"training {members} U-Nets x {steps} steps (a few minutes on 2 cores)...")
    ensemble = train_ensemble(
        data,
        atoms,
        TrainingSettings(members=members, steps=steps, seed=seed, device=device),
        progress=progress,
        compute=compute,
        description={
            "source": "ophyd-stem digital twin",
            "samples": ["graphene", "SrTiO3"],
            "images": images,
            "size": size,
            "noise_levels": list(TRAINING_NOISE),
            "seed": seed,
        },
    )
    if calibration_images:
        log(f"calibrating the uncertainty on {calibration_images} other twin images...")
        t0 = time.monotonic()
        cal_images, cal_atoms, description = calibration_set(
            calibration_images, seed=seed, progress=progress
        )
        try:
            # predicting on the 48 images takes seconds: the bar counts them
            with counting_bar("calibrating", unit="img", enabled=progress) as counted:
                calibration = calibrate_uncertainty(
                    ensemble, cal_images, cal_atoms, description=description, device=device,
                    progress=counted,
                )  # fmt: skip
        except ValueError as exc:  # e.g. a barely trained ensemble finds no atom at all
            log(f"  not calibrated ({exc}): the atom uncertainty stays the members' variance")
        else:
            facts = calibration.fitted_on
            log(
                f"  {facts['false_atoms']} of {facts['atoms']} atoms found there were false; "
                f"the uncertainty ranks them first with AUROC {facts['auroc']:.2f} "
                f"({time.monotonic() - t0:.0f} s)"
            )
    path = save_ensemble(ensemble, name, overwrite=overwrite)
    log(f"saved ensemble {name!r} to {path} in {time.monotonic() - started:.0f} s")
    return ensemble
