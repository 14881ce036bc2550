"""Atom finding with an ensemble of U-Nets, with uncertainty (ELIT-style).

K small U-Nets trained from different seeds vote on every pixel: the mean of their atom
probabilities finds the atoms; what the members see at each atom (how much they disagree, how
much of an atom they see, how plausibly it sits among its neighbours) gives its uncertainty,
calibrated on twin images as the probability that the atom is false.
ELIT's iterative training retrains the ensemble on the atoms it is sure of in new,
unlabelled images. See docs/ensemble.md.

Importing this package imports torch; ``import agents`` does not (it exports these names
lazily).

Example:
    >>> from agents.ensemble import TrainingSettings, train_ensemble, save_ensemble
    >>> ensemble = train_ensemble(images, atoms, TrainingSettings(members=5))
    >>> save_ensemble(ensemble, "default")
    >>> agent = EnsembleAgent("default", target="uncertain")
    >>> agent.observe(survey_image)
    >>> agent.suggest(3)
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
