"""Training one member of the ensemble: its settings, random crops, augmentation and loss.

:func:`train_member` trains one U-Net from a seed (or fine-tunes a trained one: ELIT's
retraining) on :class:`~agents.ensemble.data.TrainingData`, with the
:class:`TrainingSettings` the whole ensemble shares; :mod:`.train` trains K of them, here or
on a Dask cluster, and puts them together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ..device import is_cuda, resolve_device
from ._runtime import keep_freed_memory, torch_threads
from .data import TrainingData
from .masks import Radius
from .unet import UNet, UNetConfig

__all__ = ["TrainingSettings", "train_member"]


@dataclass(frozen=True)
class TrainingSettings:
    """How to train the ensemble.

    Attributes:
        members: number of U-Nets K.
        steps: optimiser steps per member.
        batch_size: crops per step.
        crop_size: side of the square training crops, pixels (rounded up to the
            architecture's size multiple).
        learning_rate: Adam's initial learning rate (cosine-annealed to 5 % of it).
        levels, base_filters, norm: the U-Net architecture (see ``UNetConfig``).
        mask_radius: target disc radius in pixels, or ``"auto"`` (a quarter of each image's
            nearest-neighbour distance, see ``masks.auto_radius``).
        augment: random 90° rotations and flips.
        intensity_jitter: relative contrast scaling and offset drawn per crop (0 = none).
        noise_jitter: std of extra Gaussian noise (in units of the image's std) drawn per
            crop from ``[0, noise_jitter]``.
        vary_augmentation: give member k a jitter scaled by ``0.5 + k / (K - 1)`` so the
            members also differ in what they were taught to ignore.
        seed: member k uses seed ``seed + k``.
        num_threads: torch threads while training (``None``: see ``default_num_threads``).
        device: where to train: ``"auto"`` (a GPU when there is one), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``.

    Example:
        >>> from agents.ensemble import TrainingSettings
        >>> TrainingSettings(members=5, steps=600)   # twice the default: ~2x the time
        TrainingSettings(members=5, steps=600, batch_size=8, crop_size=64,
                         learning_rate=0.003, levels=3, base_filters=8, norm='batch',
                         mask_radius='auto', augment=True, intensity_jitter=0.2,
                         noise_jitter=0.3, vary_augmentation=False, seed=0, num_threads=None,
                         device='auto')
        >>> TrainingSettings(members=0)
        Traceback (most recent call last):
        ...
        ValueError: members must be >= 1, got 0
    """

    members: int = 5
    steps: int = 300
    batch_size: int = 8
    crop_size: int = 64
    learning_rate: float = 3e-3
    levels: int = 3
    base_filters: int = 8
    norm: str = "batch"
    mask_radius: Radius = "auto"
    augment: bool = True
    intensity_jitter: float = 0.2
    noise_jitter: float = 0.3
    vary_augmentation: bool = False
    seed: int = 0
    num_threads: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("members", "steps", "batch_size", "crop_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.intensity_jitter < 0 or self.noise_jitter < 0:
            raise ValueError("intensity_jitter and noise_jitter must be >= 0")
        self.unet_config()  # validates the architecture
        from ..device import check_device

        object.__setattr__(self, "device", check_device(self.device))

    def unet_config(self) -> UNetConfig:
        return UNetConfig(levels=self.levels, base_filters=self.base_filters, norm=self.norm)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingSettings:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})


# ---------------------------------------------------------------------------- one member


def _sample_batch(
    data: TrainingData, rng: np.random.Generator, batch: int, crop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random crops (image, mask, weight), images picked in proportion to their area."""
    areas = np.array([im.size for im in data.images], dtype=np.float64)
    picks = rng.choice(len(data.images), size=batch, p=areas / areas.sum())
    out = np.empty((3, batch, crop, crop), dtype=np.float32)
    for j, i in enumerate(picks):
        arrays = (data.images[i], data.masks[i], data.weights[i])
        h, w = arrays[0].shape
        if h < crop or w < crop:  # small images: mirror them up to the crop size
            ph, pw = max(0, crop - h), max(0, crop - w)
            arrays = tuple(np.pad(a, ((0, ph), (0, pw)), mode="symmetric") for a in arrays)
            h, w = arrays[0].shape
        r = int(rng.integers(0, h - crop + 1))
        c = int(rng.integers(0, w - crop + 1))
        for k, a in enumerate(arrays):
            out[k, j] = a[r : r + crop, c : c + crop]
    return out[0], out[1], out[2]


def _augment(
    x: np.ndarray,
    y: np.ndarray,
    wt: np.ndarray,
    rng: np.random.Generator,
    settings: TrainingSettings,
    strength: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if settings.augment:
        for j in range(len(x)):
            k = int(rng.integers(4))
            flip = bool(rng.integers(2))
            for arr in (x, y, wt):
                a = np.rot90(arr[j], k)
                arr[j] = a[:, ::-1] if flip else a
    b = len(x)
    ij = settings.intensity_jitter * strength
    if ij > 0:
        scale = rng.uniform(1 - ij, 1 + ij, size=(b, 1, 1)).astype(np.float32)
        offset = rng.normal(0.0, ij, size=(b, 1, 1)).astype(np.float32)
        x = x * scale + offset
    nj = settings.noise_jitter * strength
    if nj > 0:
        sigma = rng.uniform(0, nj, size=(b, 1, 1)).astype(np.float32)
        x = x + sigma * rng.standard_normal(x.shape, dtype=np.float32)
    return x, y, wt


def _loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted binary cross-entropy plus soft Dice.

    Atoms cover a few per cent of the pixels; cross-entropy alone lets a network get away
    with faint, shrunken atoms, and the Dice term rewards getting the whole disc.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
    bce = bce / weight.sum().clamp_min(1.0)
    p = torch.sigmoid(logits) * weight
    t = target * weight
    dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    return bce + dice


def train_member(
    data: TrainingData,
    settings: TrainingSettings,
    seed: int,
    *,
    start: UNet | None = None,
    strength: float = 1.0,
    on_step: Callable[[], None] | None = None,
) -> tuple[UNet, list[float]]:
    """Train one U-Net (or continue training ``start``) and return it with its loss curve.

    Deterministic on a CPU: the same data, settings, seed and torch threads give the same
    weights (on a GPU, the same up to the GPU's own rounding). The global torch random state
    is left as it was. The network trains on ``settings.device`` and comes back on the CPU.

    Args:
        data: from :func:`prepare_training_data`.
        settings: steps, batch, crops, learning rate, augmentation.
        seed: seeds the initial weights, the crops and the augmentation draws.
        start: a trained member to fine-tune (ELIT's retraining) instead of a fresh one.
        strength: multiplies the augmentation jitters of ``settings``.
        on_step: called after every optimiser step (a progress bar).
    """
    config = settings.unet_config() if start is None else start.config
    crop = -(-int(settings.crop_size) // config.size_multiple) * config.size_multiple
    device = resolve_device(settings.device)
    if device.type == "cpu":
        keep_freed_memory()  # ~2,000 page faults and 13 % of a CPU training step without it
    rng = np.random.default_rng(seed)
    losses: list[torch.Tensor] = []
    with torch_threads(settings.num_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if start is None:
            net = UNet(config)
        else:
            net = UNet(config)
            net.load_state_dict(start.state_dict())
        # initial weights drawn on the CPU from the seed: the same on every device
        # channels-last: ~25 % less time per step on a CPU (measured at 1 thread under load),
        # the layout the GPU's convolutions prefer too
        net = net.to(device=device, memory_format=torch.channels_last)
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=settings.steps, eta_min=0.05 * settings.learning_rate
        )
        for _ in range(settings.steps):
            x, y, wt = _sample_batch(data, rng, settings.batch_size, crop)
            x, y, wt = _augment(x, y, wt, rng, settings, strength)
            # crops are drawn on the CPU (numpy's generator: the same draws everywhere)
            xt, yt, wtt = (_to(a, device) for a in (x, y, wt))
            loss = _loss(net(xt), yt, wtt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            # kept on the device: reading each loss would wait for the GPU at every step
            losses.append(loss.detach())
            if on_step is not None:
                on_step()
    net.eval()
    net = net.cpu().to(memory_format=torch.contiguous_format)  # saved and copied as usual
    return net, torch.stack(losses).cpu().tolist() if losses else []


def _to(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A ``(B, H, W)`` batch as a ``(B, 1, H, W)`` tensor on ``device``."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))[:, None]
    tensor = tensor.contiguous(memory_format=torch.channels_last)
    if is_cuda(device):
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor
