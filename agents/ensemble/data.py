"""Training data for the ensemble: standardised images, target masks and loss weights."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._runtime import as_image, normalize_image
from .masks import Radius, as_atom_positions, atom_mask

__all__ = ["TrainingData", "as_image_list", "prepare_training_data"]


@dataclass
class TrainingData:
    """Standardised images with their target masks and loss weights, ready to crop.

    Build it with :func:`prepare_training_data`. ``weights`` is 1 where the target is
    trusted and 0 where the loss must ignore the pixel (ELIT's uncertain places).
    """

    images: list[np.ndarray]
    masks: list[np.ndarray]
    weights: list[np.ndarray]
    atoms: int = 0
    description: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def extend(self, other: TrainingData) -> TrainingData:
        """The union of two training sets."""
        return TrainingData(
            self.images + other.images,
            self.masks + other.masks,
            self.weights + other.weights,
            self.atoms + other.atoms,
            {"parts": [self.description, other.description]},
        )


def prepare_training_data(
    images: Any,
    atoms: Sequence[Any] | None = None,
    *,
    masks: Sequence[Any] | None = None,
    weights: Sequence[Any] | None = None,
    radius: Radius = "auto",
    description: dict[str, Any] | None = None,
) -> TrainingData:
    """Turn images and atom positions (or masks) into :class:`TrainingData`.

    Args:
        images: ``(N, H, W)`` array or a sequence of 2-D images (sizes may differ).
        atoms: per image, ``(M_i, 2)`` atom positions ``(row, col)`` in pixels (extra
            columns ignored). Give either ``atoms`` or ``masks``.
        masks: per image, a target map in [0, 1] of the image's shape.
        weights: per image, a loss weight map in [0, 1] (default: all ones).
        radius: disc radius for masks made from ``atoms`` (pixels or ``"auto"``).
        description: what the data are (sample, doses...), stored in the metadata.

    Raises:
        ValueError: counts or shapes that do not match, or no images.
    """
    imgs = [as_image(im, f"images[{i}]") for i, im in enumerate(as_image_list(images))]
    if not imgs:
        raise ValueError("no training images")
    if (atoms is None) == (masks is None):
        raise ValueError("give atom positions or masks for the images (exactly one of them)")
    n_atoms = 0
    if atoms is not None:
        atoms = list(atoms)
        if len(atoms) != len(imgs):
            raise ValueError(f"{len(imgs)} images but {len(atoms)} atom lists")
        target = []
        for i, (im, pos) in enumerate(zip(imgs, atoms)):
            pts = as_atom_positions(pos, f"atoms[{i}]")
            n_atoms += len(pts)
            target.append(atom_mask(pts, im.shape, radius=radius))
    else:
        target = [np.asarray(m, dtype=np.float32) for m in masks]
        if len(target) != len(imgs):
            raise ValueError(f"{len(imgs)} images but {len(target)} masks")
    wts = (
        [np.ones_like(t) for t in target]
        if weights is None
        else [np.asarray(w, dtype=np.float32) for w in weights]
    )
    if len(wts) != len(imgs):
        raise ValueError(f"{len(imgs)} images but {len(wts)} weight maps")
    for i, (im, t, w) in enumerate(zip(imgs, target, wts)):
        if t.shape != im.shape or w.shape != im.shape:
            raise ValueError(f"image {i}: mask/weights shape differs from image {im.shape}")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(w))):
            raise ValueError(f"image {i}: mask or weights contain NaN or inf")
    desc = dict(description or {})
    desc.setdefault("images", len(imgs))
    desc.setdefault("shapes", sorted({f"{im.shape[0]}x{im.shape[1]}" for im in imgs}))
    desc.setdefault("atoms", n_atoms)
    return TrainingData(
        [normalize_image(im) for im in imgs],
        [np.clip(t, 0, 1) for t in target],
        [np.clip(w, 0, 1) for w in wts],
        n_atoms,
        desc,
    )


def as_image_list(images: Any) -> list[Any]:
    """A list of 2-D images from an ``(N, H, W)`` array, one image or a sequence."""
    if isinstance(images, np.ndarray):
        if images.ndim == 2:
            return [images]
        if images.ndim == 3:
            return list(images)
        raise ValueError(f"images must be (N, H, W) or a list of 2-D images, got {images.shape}")
    return list(images)
