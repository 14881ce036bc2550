"""Ensemble prediction: mean atom probability, variance across members, atoms with uncertainty.

The ensemble answers twice for every pixel: the *mean* probability over its K members (where
the atoms are) and the *variance* across members (how much the members disagree). Members
that saw the same training data from different starting points agree on images like their
training data and disagree on images unlike it (new sampling, dose, probe, a defect they
never saw), so the variance flags where the ensemble is out of its depth. Atoms are found on
the mean map; each then gets its evidence from all the members' maps and, from that, its
uncertainty (:mod:`.evidence`: on real images the members often agree on their mistakes, so
the variance alone is not enough).

Large images are cut into tiles that overlap by the network's receptive radius (at most 48
px by default), so tiled and whole-image prediction give the same numbers, up to ~3e-4 for
3-level members (BatchNorm; GroupNorm normalises over the whole tile, so its tiles differ).
The image edge is mirrored by a few pixels, the same way in both.

On a GPU (``device="auto"`` finds one, or ``"cuda"``/``"cuda:N"``) tiles are large (whole
images up to 2048² in one piece, several tiles per batch), the members run in bfloat16
autocast, and the mean and variance are reduced on the GPU; the members' maps come back to
the host too, for the atoms' evidence. On a CPU: float32, tiles of 512², one at a time.
``precision="bfloat16"`` asks for the autocast on a CPU too (2.5x faster on CPUs with
AVX512-BF16; probabilities differ from float32 by up to ~1e-2).

Positions are ``(row, col)`` pixels, ``(0, 0)`` the centre of the top-left pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from ..device import is_cuda, resolve_device
from ._runtime import as_image, normalize_image, torch_threads
from .evidence import CONFIDENT, DEFAULT_MIN_SPACING, AtomCalibration, assess_atoms
from .prediction import Prediction
from .unet import UNet, inference_copy

__all__ = ["Prediction", "find_atoms", "member_variance", "predict", "predict_members"]

#: an :class:`agents.ensemble.Ensemble` (anything with ``members``, ``config`` and
#: ``inference_members(device)``; typed loosely so this module need not import the one that
#: defines it) or a sequence of :class:`UNet` members
Members = Union[Any, Sequence[nn.Module]]

#: with a calibration, atoms more likely false than this are not reported (the Bayes
#: decision: report what is more likely real than not)
DEFAULT_MAX_FALSE = 0.5
#: default core size of one tile on a CPU, pixels (images up to this size are predicted whole)
DEFAULT_TILE = 512
#: default core size of one tile on a GPU: whole images up to 2048², bigger ones in tiles
GPU_TILE = 2048
#: default tiles per forward pass on a GPU (a CPU: 1, see ``predict_members``)
GPU_BATCH = 8
#: ``precision`` values: "auto" is bfloat16 on a GPU and float32 on a CPU
PRECISIONS = ("auto", "float32", "bfloat16")
#: the most context (pixels) a tile sees by default: beyond ~48 px a pixel's influence on a
#: 3-level member's output was below 3e-4 in probability, and every extra pixel of context
#: costs time on all four sides
MAX_DEFAULT_CONTEXT = 48
#: mirrored pixels around the image edge by default
DEFAULT_BORDER = 16
#: with ``min_area="auto"``: drop footprints smaller than this fraction of a typical
#: confident atom's
AUTO_AREA_FRACTION = 0.3


def _inference_modules(models: Members, device: torch.device) -> tuple[list[nn.Module], int, int]:
    """Evaluation copies of the members on ``device``, the size multiple and the receptive
    radius."""
    if hasattr(models, "inference_members"):  # an Ensemble: its cached copies
        return (
            models.inference_members(device),
            models.config.size_multiple,
            _radius(models.members),
        )
    models = list(models)
    if not models:
        raise ValueError("no ensemble members to predict with")
    if all(isinstance(m, UNet) for m in models):
        configs = {m.config for m in models}
        if len(configs) != 1:
            raise ValueError(f"all members must share one architecture, got {configs}")
        copies = [inference_copy(m, device) for m in models]
        return copies, models[0].config.size_multiple, _radius(models)
    raise TypeError("members must be an Ensemble or a sequence of agents.ensemble.UNet")


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting; None = plain float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bfloat16" or (precision == "auto" and is_cuda(device)):
        return torch.bfloat16
    return None


def _tiling(tile_size: int | str | None, batch_size: int | str, device: torch.device):
    """Resolve ``"auto"`` tile and batch sizes for the device."""
    gpu = is_cuda(device)
    if tile_size == "auto":
        tile_size = GPU_TILE if gpu else DEFAULT_TILE
    if batch_size == "auto":
        batch_size = GPU_BATCH if gpu else 1
    if isinstance(tile_size, str) or isinstance(batch_size, str):
        raise ValueError(
            f"tile_size and batch_size must be numbers or 'auto': {tile_size!r}, {batch_size!r}"
        )
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if tile_size is not None and int(tile_size) < 1:
        raise ValueError(f"tile_size must be >= 1 or None, got {tile_size}")
    return (None if tile_size is None else int(tile_size)), int(batch_size)


def _radius(members: Sequence[UNet]) -> int:
    return max(m.receptive_radius for m in members)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _tile_starts(length: int, core: int) -> list[int]:
    """Starts of cores of size ``core`` covering ``[0, length)``; the last one flush right."""
    if length <= core:
        return [0]
    starts = list(range(0, length - core, core))
    starts.append(length - core)
    return starts


def _windows(length: int, core: int, ctx: int, pad: int) -> tuple[int, int, list[tuple[int, int]]]:
    """Tiling along one axis: ``(core, window, [(core start in the image, window start in
    the padded image), ...])``.

    Windows have size ``core + 2 ctx`` and stay inside the padded image (length
    ``length + 2 pad``), so a window at the image edge sees exactly what the whole-image
    prediction sees there. When one window would cover everything, there is one tile.
    """
    total = length + 2 * pad
    window = core + 2 * ctx
    if core >= length or window >= total:
        return length, total, [(0, 0)]
    starts = [(c, min(max(c + pad - ctx, 0), total - window)) for c in _tile_starts(length, core)]
    return core, window, starts


def predict_members(
    models: Members,
    image: Any,
    *,
    tile_size: int | str | None = "auto",
    context: int | None = None,
    border: int = DEFAULT_BORDER,
    batch_size: int | str = "auto",
    num_threads: int | None = None,
    normalize: bool = True,
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> np.ndarray:
    """Every member's atom probability map for one image.

    Args:
        models: an :class:`Ensemble` or a sequence of :class:`UNet` members.
        image: ``(H, W)`` survey image, any units (standardised here when ``normalize``).
        tile_size: core size of a tile in pixels (rounded up to the network's size
            multiple); ``None`` predicts the image in one piece; ``"auto"``: 512 on a CPU,
            2048 on a GPU.
        context: pixels of neighbouring image a tile sees beyond its core where it meets
            another tile (rounded up to the size multiple). Default: the members' receptive
            radius, at most 48 px. With the full receptive radius (1-2 levels) tiled
            prediction equals whole-image prediction; with 3 levels the default's
            differences stay below ~3e-4 in probability.
        border: pixels of mirrored image added around the image edge (the same for tiled
            and whole-image prediction), so atoms cut by the edge still look like atoms.
        batch_size: tiles pushed through a member at once; ``"auto"``: 1 on a CPU (tiles
            are already large, and one at a time kept the activations in cache), 8 on a GPU.
        num_threads: torch threads for this call (``None``: see ``default_num_threads``).
        normalize: standardise the image first (as in training); turn off only for images
            already standardised.
        device: ``"auto"`` (a GPU when there is one), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        precision: ``"auto"`` (bfloat16 autocast on a GPU, float32 on a CPU),
            ``"float32"`` or ``"bfloat16"``.

    Returns:
        float32 ``(K, H, W)`` probabilities, one map per member.

    Example:
        >>> probs = predict_members(ensemble, image, tile_size=256)
        >>> probs.mean(0), probs.var(0)
    """
    with torch_threads(num_threads):
        probs = _member_maps(
            models,
            image,
            tile_size=tile_size,
            context=context,
            border=border,
            batch_size=batch_size,
            normalize=normalize,
            device=resolve_device(device),
            precision=precision,
        )
        return probs.cpu().numpy()


def _member_maps(
    models: Members,
    image: Any,
    *,
    tile_size: int | str | None,
    context: int | None,
    border: int,
    batch_size: int | str,
    normalize: bool,
    device: torch.device,
    precision: str,
) -> torch.Tensor:
    """:func:`predict_members`' work: a float32 ``(K, H, W)`` tensor left on ``device``."""
    img = as_image(image)
    if normalize:
        img = normalize_image(img)
    autocast = _autocast_dtype(precision, device)
    tile_size, batch_size = _tiling(tile_size, batch_size, device)
    modules, multiple, radius = _inference_modules(models, device)
    if context is None:
        context = min(radius, MAX_DEFAULT_CONTEXT)
    ctx = _round_up(max(0, int(context)), multiple)
    pad = _round_up(max(0, int(border)), multiple)
    h, w = img.shape
    # mirrored border on all sides, plus bottom/right up to the size multiple
    hp, wp = _round_up(h, multiple), _round_up(w, multiple)
    padded = np.pad(img, ((pad, pad + hp - h), (pad, pad + wp - w)), mode="symmetric")
    core = hp + wp if tile_size is None else _round_up(int(tile_size), multiple)
    core_h, win_h, rows = _windows(hp, core, ctx, pad)
    core_w, win_w, cols = _windows(wp, core, ctx, pad)
    tiles_at = [(r, c) for r in rows for c in cols]
    tensor = torch.from_numpy(np.ascontiguousarray(padded))
    if is_cuda(device):
        # one copy of the image to the GPU, from page-locked memory
        tensor = tensor.pin_memory().to(device, non_blocking=True)
    out = torch.empty((len(modules), hp, wp), dtype=torch.float32, device=device)
    with torch.inference_mode(), torch.autocast(
        device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None
    ):
        for b in range(0, len(tiles_at), batch_size):
            batch = tiles_at[b : b + batch_size]
            tiles = torch.stack(
                [tensor[wr : wr + win_h, wc : wc + win_w] for (_, wr), (_, wc) in batch]
            )
            tiles = tiles[:, None].contiguous(memory_format=torch.channels_last)
            for k, module in enumerate(modules):
                probs = torch.sigmoid(module(tiles).float())[:, 0]
                for ((r, wr), (c, wc)), p in zip(batch, probs):
                    dr, dc = r + pad - wr, c + pad - wc
                    out[k, r : r + core_h, c : c + core_w] = p[dr : dr + core_h, dc : dc + core_w]
    return out[:, :h, :w]


def member_variance(probs: np.ndarray) -> np.ndarray:
    """Variance across members (axis 0), exactly 0 where all members agree.

    Computed on differences to the first member: identical members then give exact zeros
    (a plain ``var`` can leave ~1e-16 rounding residue), and the shift keeps it accurate.
    """
    probs = np.asarray(probs, dtype=np.float64)
    d = probs - probs[:1]
    var = (d * d).mean(axis=0) - d.mean(axis=0) ** 2
    return np.maximum(var, 0.0).astype(np.float32)


def _mean_and_variance_on_device(probs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """:func:`member_variance` and the mean, computed where the maps are (a GPU): only
    two maps cross to the host instead of K. Float32 on differences to the first member,
    so identical members still give exact zeros."""
    d = probs - probs[:1]
    var = ((d * d).mean(dim=0) - d.mean(dim=0) ** 2).clamp_min(0.0)
    return probs.mean(dim=0).cpu().numpy(), var.cpu().numpy()


def find_atoms(
    mean: np.ndarray,
    variance: np.ndarray,
    *,
    threshold: float = 0.5,
    min_area: float | str = "auto",
    method: str = "components",
    min_distance: int = 2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Atoms on a mean probability map, each with its probability and uncertainty.

    Args:
        mean: ``(H, W)`` mean atom probability.
        variance: ``(H, W)`` variance across members.
        threshold: mean probability above which a pixel belongs to an atom.
        min_area: smallest footprint, in pixels, that counts as an atom; ``"auto"``: 30 %
            of the median footprint of the confident atoms (probability >= 0.9), at least
            2. On very noisy images the members light up small specks of noise here and
            there; real atoms come out as whole discs of the size they were trained on.
        method: ``"components"`` (one atom per connected region above ``threshold``: fast,
            right when the atoms' discs are separate) or ``"peaks"`` (one atom per local
            maximum at least ``min_distance`` apart: splits touching atoms).
        min_distance: for ``"peaks"``, the smallest allowed distance between atoms, pixels.

    Returns:
        ``(atoms (N, 2) as (row, col), probability (N,), uncertainty (N,), area (N,))``.
    """
    mean = np.asarray(mean, dtype=np.float32)
    variance = np.asarray(variance, dtype=np.float32)
    if mean.shape != variance.shape or mean.ndim != 2:
        raise ValueError("mean and variance must be 2-D maps of the same shape")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if method not in ("components", "peaks"):
        raise ValueError(f"method must be 'components' or 'peaks', got {method!r}")
    foreground = mean >= threshold
    labels, n = ndimage.label(foreground)
    if method == "peaks" and n:
        labels, n = _split_by_peaks(mean, labels, int(min_distance))
    empty = np.empty(0, dtype=np.float64)
    if n == 0:
        return np.empty((0, 2)), empty, empty, empty
    index = np.arange(1, n + 1)
    area = ndimage.sum_labels(np.ones_like(mean), labels, index)
    probability = np.asarray(ndimage.maximum(mean, labels, index), dtype=np.float64)
    keep = area >= _min_area(min_area, area, probability)
    if not keep.any():
        return np.empty((0, 2)), empty, empty, empty
    index, area, probability = index[keep], area[keep], probability[keep]
    atoms = np.array(ndimage.center_of_mass(mean, labels, index), dtype=np.float64).reshape(-1, 2)
    uncertainty = np.asarray(ndimage.mean(variance, labels, index), dtype=np.float64)
    return atoms, probability, uncertainty, area.astype(np.float64)


def _min_area(min_area: float | str, area: np.ndarray, probability: np.ndarray) -> float:
    if isinstance(min_area, str):
        if min_area != "auto":
            raise ValueError(f"min_area must be a number of pixels or 'auto', got {min_area!r}")
        confident = area[probability >= CONFIDENT]
        if len(confident) == 0:
            return 2.0
        return max(2.0, AUTO_AREA_FRACTION * float(np.median(confident)))
    if not min_area >= 0:
        raise ValueError(f"min_area must be >= 0 pixels, got {min_area}")
    return float(min_area)


def _split_by_peaks(
    mean: np.ndarray, labels: np.ndarray, min_distance: int
) -> tuple[np.ndarray, int]:
    """Split the foreground into one region per local maximum (watershed on the mean).

    Maxima are searched on a lightly smoothed copy: a flat-topped atom would otherwise
    count one peak per pixel of its plateau.
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    smooth = ndimage.gaussian_filter(mean, sigma=1.0)
    peaks = peak_local_max(
        smooth,
        min_distance=max(1, min_distance),
        labels=labels,
        exclude_border=False,
    )
    markers = np.zeros(labels.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    split = watershed(-smooth, markers, mask=labels > 0)
    return split, len(peaks)


def predict(
    models: Members,
    image: Any,
    *,
    threshold: float = 0.5,
    min_area: float | str = "auto",
    method: str = "components",
    min_distance: int = 2,
    min_spacing: float | None = DEFAULT_MIN_SPACING,
    exclude_edge: bool = True,
    calibration: AtomCalibration | str | None = "auto",
    max_false: float | None = DEFAULT_MAX_FALSE,
    tile_size: int | str | None = "auto",
    context: int | None = None,
    border: int = DEFAULT_BORDER,
    batch_size: int | str = "auto",
    num_threads: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "auto",
) -> Prediction:
    """Find the atoms in a survey image, each with the ensemble's uncertainty.

    Atoms are found on the members' mean map (:func:`find_atoms`); of two closer than
    ``min_spacing`` times the image's median neighbour distance only the one the members see
    more of is kept, atoms cut by the image edge are dropped, and every atom gets its
    evidence and uncertainty (:mod:`agents.ensemble.evidence`).

    Args:
        models: an :class:`Ensemble` or a sequence of :class:`UNet` members.
        image: ``(H, W)`` survey image (HAADF: atoms bright).
        threshold, min_area, method, min_distance: see :func:`find_atoms`.
        min_spacing: fraction of the median nearest-neighbour distance below which two
            atoms are implausibly close (0.6; ``None`` keeps both).
        exclude_edge: drop atoms whose centre lies within one atom radius of the image
            edge (their position is not known: part of the atom is outside the field).
        calibration: what turns evidence into an atom's ``uncertainty``: ``"auto"`` (the
            ensemble's own calibration, when it has one), an :class:`AtomCalibration`, or
            ``None`` (the members' variance over the footprint, as before calibration).
        max_false: with a calibration, atoms whose probability of being false exceeds this
            are not reported (0.5: the ensemble reports the atoms it finds more likely real
            than false); ``None`` reports them all. Without a calibration it does nothing.
        tile_size, context, border, batch_size, num_threads, device, precision: see
            :func:`predict_members`.

    Returns:
        a :class:`Prediction` (mean and variance maps, atoms with probability, evidence
        and uncertainty).

    Example:
        >>> p = predict(load_ensemble("default"), survey_image)
        >>> p.atoms[np.argsort(p.uncertainty)[-5:]]    # the five least certain atoms
    """
    if max_false is not None and not 0.0 < max_false <= 1.0:
        raise ValueError(f"max_false must be in (0, 1] or None, got {max_false}")
    if calibration == "auto":
        calibration = getattr(models, "calibration", None)
    elif calibration is not None and not isinstance(calibration, AtomCalibration):
        raise ValueError(
            f"calibration must be 'auto', None or an AtomCalibration, got {calibration!r}"
        )
    dev = resolve_device(device)
    with torch_threads(num_threads):
        maps = _member_maps(
            models,
            image,
            tile_size=tile_size,
            context=context,
            border=border,
            batch_size=batch_size,
            normalize=True,
            device=dev,
            precision=precision,
        )
        n_members = int(maps.shape[0])
        if is_cuda(dev):
            mean, variance = _mean_and_variance_on_device(maps)
        else:  # the CPU's numbers as they always were
            mean = maps.numpy().mean(axis=0)
            variance = member_variance(maps.numpy())
        # the evidence reads every member's map around each atom, so they come to the host
        probs = maps.cpu().numpy()
    atoms, probability, footprint_variance, area = find_atoms(
        mean,
        variance,
        threshold=threshold,
        min_area=min_area,
        method=method,
        min_distance=min_distance,
    )
    keep, evidence = assess_atoms(
        probs,
        atoms,
        probability,
        footprint_variance,
        area,
        min_spacing=min_spacing,
        exclude_edge=exclude_edge,
    )
    if calibration is not None:
        uncertainty, how = calibration.probability_false(evidence), "calibrated"
        if max_false is not None:
            likely = uncertainty <= max_false
            keep[keep] = likely
            uncertainty = uncertainty[likely]
            evidence = {name: values[likely] for name, values in evidence.items()}
    else:
        uncertainty, how = footprint_variance[keep], "variance"
    return Prediction(
        mean,
        variance,
        atoms[keep],
        probability[keep],
        uncertainty,
        area[keep],
        n_members,
        evidence,
        how,
    )
