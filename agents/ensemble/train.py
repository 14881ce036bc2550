"""Training the ensemble: K U-Nets of one architecture from different seeds.

Each member is the same small U-Net trained from a different seed (initial weights, the
order and place of its random crops, its augmentation draws); optionally each member also
gets a different augmentation strength. Training data are arrays: images ``(N, H, W)`` (or a
list of 2-D images of any sizes) and, per image, atom positions ``(row, col)`` or a ready
target mask. The digital twin makes such data (``ophyd_stem.app.training_data``); so does a
labelled experiment. Retraining on unlabelled images (ELIT) is in :mod:`.elit`.

Members train where ``TrainingSettings.device`` says (a GPU when there is one, by default)
and, with ``compute=``, in parallel: one member per Dask worker (:mod:`agents.compute`).
A member's weights depend only on the data, the settings and its seed, so the ensemble is
the same trained one after the other or in parallel (given the same ``num_threads``).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from ..compute import fan_out, get_client
from ..device import describe, is_cuda, resolve_device
from ..metrics import match_atoms
from ._runtime import keep_freed_memory, torch_threads
from .data import TrainingData, as_image_list, prepare_training_data
from .masks import Radius, as_atom_positions, nearest_neighbour_distance
from .members import Ensemble
from .predict import predict
from .unet import UNet, UNetConfig

__all__ = [
    "METADATA_FORMAT",
    "TrainingSettings",
    "evaluate",
    "train_ensemble",
    "train_member",
]

#: format of the metadata written with an ensemble
METADATA_FORMAT = 1


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


def _member_job(
    job: tuple[int, float, dict[str, Any] | None],
    *,
    data: TrainingData,
    settings: TrainingSettings,
    config: dict[str, Any],
    on_step: Callable[[], None] | None = None,
) -> tuple[dict[str, torch.Tensor], list[float], dict[str, Any]]:
    """Train one member (a job for :func:`agents.compute.fan_out`, here or on a worker).

    ``job`` is ``(seed, augmentation strength, weights to start from or None)``. Returns the
    weights, the loss curve and where the member trained.
    """
    seed, strength, start_state = job
    start = None
    if start_state is not None:
        start = UNet(UNetConfig.from_dict(config))
        start.load_state_dict(start_state)
    with torch_threads(settings.num_threads):
        net, losses = train_member(
            data, settings, seed, start=start, strength=strength, on_step=on_step
        )
    return net.state_dict(), losses, describe(resolve_device(settings.device))


def train_members(
    data: TrainingData,
    settings: TrainingSettings,
    seeds: Sequence[int],
    strengths: Sequence[float],
    *,
    starts: Sequence[UNet] | None = None,
    compute: Any = None,
    progress: Any = None,
) -> tuple[list[UNet], list[list[float]], list[dict[str, Any]]]:
    """Train one member per seed, one after the other or in parallel (``compute``).

    Args:
        data, settings: as for :func:`train_member`.
        seeds, strengths: per member.
        starts: per member, weights to continue from (ELIT's fine-tuning).
        compute: ``None`` (here), ``"local"``, an address or a Client (:mod:`agents.compute`).
        progress: a tqdm bar: advanced per step here, per member on a cluster.

    Returns:
        ``(members, loss curves, where each trained)``, in seed order.
    """
    config = (starts[0].config if starts else settings.unet_config()).to_dict()
    states = [m.state_dict() for m in starts] if starts else [None] * len(seeds)
    jobs = list(zip((int(s) for s in seeds), (float(s) for s in strengths), states))
    client = get_client(compute)
    shared: dict[str, Any] = {"data": data, "settings": settings, "config": config}
    on_done = None
    if progress is not None:
        if client is None:
            shared["on_step"] = progress.update
        else:

            def on_done(_: int) -> None:
                progress.update(settings.steps)

    results = fan_out(_member_job, jobs, compute=client, shared=shared, on_done=on_done)
    members = []
    for state, _, _ in results:
        net = UNet(UNetConfig.from_dict(config))
        net.load_state_dict(state)
        members.append(net.eval())
    return members, [r[1] for r in results], [r[2] for r in results]


# ---------------------------------------------------------------------------- the ensemble


def _strengths(k: int, vary: bool) -> list[float]:
    if not vary or k == 1:
        return [1.0] * k
    return [0.5 + i / (k - 1) for i in range(k)]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    from importlib import metadata

    try:
        package = metadata.version("ophyd-stem")
    except metadata.PackageNotFoundError:  # running from a source tree
        package = "unknown"
    return {"ophyd_stem": package, "torch": torch.__version__.split("+")[0]}


def train_ensemble(
    images: Any,
    atoms: Sequence[Any] | None = None,
    settings: TrainingSettings | None = None,
    *,
    masks: Sequence[Any] | None = None,
    data: TrainingData | None = None,
    validation: tuple[Any, Sequence[Any]] | None = None,
    description: dict[str, Any] | None = None,
    progress: bool = False,
    compute: Any = None,
) -> Ensemble:
    """Train K U-Nets from different seeds on the same labelled images.

    Args:
        images: ``(N, H, W)`` images or a list of 2-D images (ignored if ``data`` is given).
        atoms: per image, atom positions ``(row, col)`` in pixels.
        settings: see :class:`TrainingSettings` (default: 5 members, 300 steps).
        masks: per image, target masks instead of ``atoms``.
        data: ready :class:`TrainingData` (e.g. labelled plus pseudo-labelled).
        validation: ``(images, atoms)`` held out to score the ensemble (F1 etc. go into
            ``metadata["metrics"]``).
        description: what the training images are (samples, doses...), for the metadata.
        progress: show a progress bar (stderr).
        compute: train the members in parallel, one per Dask worker: ``"local"``,
            ``"local:N"``, a scheduler address or a ``distributed.Client``; ``None`` trains
            them here one after the other (see :mod:`agents.compute`).

    Returns:
        the trained :class:`Ensemble`, its metadata filled in.

    Example (a tiny ensemble on a synthetic 64 x 64 lattice: one member of 2 levels, 40
    steps, trained in a second):
        >>> import numpy as np
        >>> yy, xx = np.mgrid[:64, :64]
        >>> atoms = [(r, c) for r in range(4, 64, 8) for c in range(4, 64, 8)]     # (row, col), px
        >>> image = sum(np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / 4.0) for r, c in atoms)
        >>> from agents.ensemble import TrainingSettings, train_ensemble
        >>> tiny = TrainingSettings(members=1, steps=40, levels=2, base_filters=4, crop_size=32)
        >>> ensemble = train_ensemble([image], [atoms], tiny)
        >>> ensemble
        <Ensemble: 1 U-Nets, 2 levels, 4 filters, batch norm>
        >>> ensemble.metadata["training"]["steps"], len(ensemble.predict(image).atoms)
        (40, 64)

    The real one, 5 members of 300 steps on 64 twin images, trains for minutes (not run
    here):

        >>> from ophyd_stem.app.training_data import make_training_set
        >>> images, atoms = make_training_set(n_images=64, size=256)   # doctest: +SKIP
        >>> ensemble = train_ensemble(images, atoms, TrainingSettings(members=5))  # doctest: +SKIP
    """
    settings = settings or TrainingSettings()
    if data is None:
        data = prepare_training_data(
            images, atoms, masks=masks, radius=settings.mask_radius, description=description
        )
    seeds = [int(settings.seed) + k for k in range(settings.members)]
    strengths = _strengths(settings.members, settings.vary_augmentation)
    t0 = time.perf_counter()
    bar = tqdm(
        total=settings.members * settings.steps,
        desc=f"training {settings.members} U-Nets",
        unit="step",
        leave=False,
        disable=not progress,
    )
    with torch_threads(settings.num_threads) as threads, bar:
        members, curves, devices = train_members(
            data, settings, seeds, strengths, compute=compute, progress=bar
        )
    final_losses = [float(np.mean(losses[-20:])) for losses in curves]
    seconds = time.perf_counter() - t0
    metadata = {
        "format": METADATA_FORMAT,
        "created": _now(),
        "versions": _versions(),
        "architecture": settings.unet_config().to_dict(),
        "training": settings.to_dict(),
        "seeds": seeds,
        "data": data.description,
        "train_seconds": round(seconds, 2),
        "threads": threads,
        "trained_on": devices,
        "compute": _compute_name(compute),
        "final_loss": final_losses,
        "history": [],
    }
    ensemble = Ensemble(members, metadata)
    if validation is not None:
        ensemble.metadata["metrics"] = evaluate(ensemble, *validation)
    return ensemble


def _compute_name(compute: Any) -> str | None:
    """What ran the jobs, for the metadata: None (here), ``local:N``, an address."""
    from ..compute import check_compute

    spec = check_compute(compute)
    if spec is None or isinstance(spec, str):
        return spec
    try:
        return str(spec.scheduler.address)
    except AttributeError:
        return "a dask client"


def evaluate(
    ensemble: Ensemble,
    images: Any,
    atoms: Sequence[Any],
    *,
    max_distance: float | None = None,
    **predict_kwargs: Any,
) -> dict[str, float]:
    """Score the ensemble's atoms against known atoms with :func:`agents.metrics.match_atoms`.

    Args:
        ensemble: the ensemble to score.
        images: images to predict on.
        atoms: true positions ``(row, col)`` per image.
        max_distance: matching distance in pixels; default half the median
            nearest-neighbour distance of each image's true atoms (a detection can then be
            near one true atom only).
        **predict_kwargs: passed to :func:`agents.ensemble.predict`.

    Returns:
        summed ``tp``, ``fp``, ``fn`` and the resulting ``precision``, ``recall``, ``f1``.
    """
    imgs = as_image_list(images)
    atoms = list(atoms)
    if len(imgs) != len(atoms):
        raise ValueError(f"{len(imgs)} images but {len(atoms)} atom lists")
    tp = fp = fn = 0
    for im, truth in zip(imgs, atoms):
        truth = as_atom_positions(truth)
        found = predict(ensemble, im, **predict_kwargs).atoms
        d = max_distance if max_distance is not None else 0.5 * nearest_neighbour_distance(truth)
        if not np.isfinite(d):
            raise ValueError("max_distance is needed for images with fewer than two atoms")
        r = match_atoms(found, truth, d)
        tp, fp, fn = tp + r.tp, fp + r.fp, fn + r.fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 1.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}
