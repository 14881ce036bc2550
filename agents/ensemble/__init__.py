"""Atom finding with an ensemble of U-Nets, with uncertainty (ELIT-style).

K small U-Nets trained from different seeds vote on every pixel: the mean of their atom
probabilities finds the atoms; what the members see at each atom (how much they disagree, how
much of an atom they see, how plausibly it sits among its neighbours) gives its uncertainty,
calibrated on twin images as the probability that the atom is false.
ELIT's iterative training retrains the ensemble on the atoms it is sure of in new,
unlabelled images. See docs/ensemble.md.

Importing this package imports torch; ``import agents`` does not (it exports these names
lazily).

Example (the workflow on a synthetic 64 x 64 lattice of columns, one of them brighter: a
dopant; a tiny ensemble, one member of 2 levels trained 40 steps, trains in a second):
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64]
    >>> atoms = [(r, c) for r in range(4, 64, 8) for c in range(4, 64, 8)]     # (row, col), px
    >>> image = sum(np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 4.0) for r, c in atoms)
    >>> image += 0.5 * np.exp(-((yy - 28) ** 2 + (xx - 36) ** 2) / 4.0)    # the dopant
    >>> from agents.ensemble import EnsembleAgent, TrainingSettings, train_ensemble
    >>> tiny = TrainingSettings(members=1, steps=40, levels=2, base_filters=4, crop_size=32)
    >>> ensemble = train_ensemble([image], [atoms], tiny)
    >>> agent = EnsembleAgent(ensemble, target="brightest")
    >>> len(agent.observe(image).atoms)
    64
    >>> s = agent.suggest(1)[0]
    >>> s["target"], round(s["x"]), round(s["y"])     # beam x = column, y = row: the dopant
    ('brightest', 36, 28)

The real thing (not run here: it trains for minutes): 5 members of 300 steps on the twin's
labelled images, saved under a name in the cache folder, where the agent finds it:

    >>> from agents.ensemble import save_ensemble
    >>> from ophyd_stem.app.training_data import make_training_set
    >>> images, atoms = make_training_set(n_images=64, size=256)      # doctest: +SKIP
    >>> ensemble = train_ensemble(images, atoms, TrainingSettings(members=5))  # doctest: +SKIP
    >>> save_ensemble(ensemble, "default")                            # doctest: +SKIP
    >>> agent = EnsembleAgent("default", target="uncertain")          # doctest: +SKIP
"""

from .agent import TARGETS, EnsembleAgent
from .calibration import calibrate_uncertainty, false_atoms
from .data import TrainingData, prepare_training_data
from .elit import iterative_training, pseudo_labels
from .evidence import EVIDENCE, AtomCalibration
from .maps import predict_members
from .masks import atom_mask, auto_radius, nearest_neighbour_distance
from .members import Ensemble
from .predict import find_atoms, member_variance, predict
from .prediction import Prediction
from .store import (
    CACHE_ENV,
    EnsembleNotFoundError,
    cache_dir,
    ensemble_path,
    list_ensembles,
    load_ensemble,
    save_ensemble,
)
from .train import TrainingSettings, evaluate, train_ensemble, train_member
from .unet import UNet, UNetConfig

__all__ = [
    "CACHE_ENV",
    "EVIDENCE",
    "TARGETS",
    "AtomCalibration",
    "Ensemble",
    "EnsembleAgent",
    "EnsembleNotFoundError",
    "Prediction",
    "TrainingData",
    "TrainingSettings",
    "UNet",
    "UNetConfig",
    "atom_mask",
    "auto_radius",
    "cache_dir",
    "calibrate_uncertainty",
    "ensemble_path",
    "evaluate",
    "false_atoms",
    "find_atoms",
    "iterative_training",
    "list_ensembles",
    "load_ensemble",
    "member_variance",
    "nearest_neighbour_distance",
    "predict",
    "predict_members",
    "prepare_training_data",
    "pseudo_labels",
    "save_ensemble",
    "train_ensemble",
    "train_member",
]
