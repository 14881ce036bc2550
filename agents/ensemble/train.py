"""Training the ensemble: K U-Nets of one architecture from different seeds.

Each member is the same small U-Net trained from a different seed (initial weights, the
order and place of its random crops, its augmentation draws); optionally each member also
gets a different augmentation strength. Training data are arrays: images ``(N, H, W)`` (or a
list of 2-D images of any sizes) and, per image, atom positions ``(row, col)`` or a ready
target mask. The digital twin makes such data (``ophyd_stem.app.training_data``); so does a
labelled experiment. Retraining on unlabelled images (ELIT) is in :mod:`.elit`; training
one member (its settings, crops, augmentation and loss) in :mod:`.member_training`, whose
names are importable from here as before.

Members train where ``TrainingSettings.device`` says (a GPU when there is one, by default)
and, with ``compute=``, in parallel: one member per Dask worker (:mod:`agents.compute`).
A member's weights depend only on the data, the settings and its seed, so the ensemble is
the same trained one after the other or in parallel (given the same ``num_threads``).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..compute import fan_out, get_client
from ..device import describe, resolve_device
from ..metrics import match_atoms
from ._runtime import torch_threads
from .data import TrainingData, as_image_list, prepare_training_data
from .masks import as_atom_positions, nearest_neighbour_distance
from .member_training import TrainingSettings, train_member
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
