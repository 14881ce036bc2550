"""Every member's atom probability map for one image: tiles, devices, the CPU rewrite.

Large images are cut into tiles that overlap by the network's receptive radius (at most 48
px by default), so tiled and whole-image prediction give the same numbers, up to ~3e-4 for
3-level members (BatchNorm; GroupNorm normalises over the whole tile, so its tiles differ).
The image edge is mirrored by a few pixels, the same way in both. A 512² image is one tile
on a CPU (544² with its mirrored border): nothing is computed twice.

On a CPU in float32 the members run rewritten for a CPU (:mod:`.cpu_net`: the same function
with less work, probabilities within ~2e-6 of the members' own modules), one member after the
other on one torch thread by default; with ``num_threads=N`` N members run at once, each on
one thread, so the numbers do not depend on N. ``engine="modules"`` runs the members' own
torch modules instead (the reference; how every prediction ran before the rewrite).

On a GPU (``device="auto"`` finds one, or ``"cuda"``/``"cuda:N"``) tiles are large (whole
images up to 2048² in one piece, several tiles per batch) and the members run in bfloat16
autocast. ``precision="bfloat16"`` asks for the autocast on a CPU too (2.5x faster on CPUs
with AVX512-BF16; probabilities differ from float32 by up to ~1e-2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from ..device import is_cuda, resolve_device
from ._runtime import (
    as_image,
    each_member,
    keep_freed_memory,
    member_threads,
    normalize_image,
    torch_threads,
)
from .cpu_net import CPUNet, cpu_nets
from .unet import UNet, inference_copy

__all__ = ["ENGINES", "PRECISIONS", "predict_members"]

#: an :class:`agents.ensemble.Ensemble` (anything with ``members``, ``config`` and
#: ``inference_members(device)``; typed loosely so this module need not import the one that
#: defines it) or a sequence of :class:`UNet` members
Members = Union[Any, Sequence[nn.Module]]

#: default core size of one tile on a CPU, pixels (images up to this size are predicted whole)
DEFAULT_TILE = 512
#: default core size of one tile on a GPU: whole images up to 2048², bigger ones in tiles
GPU_TILE = 2048
#: default tiles per forward pass on a GPU (a CPU: 1, see ``predict_members``)
GPU_BATCH = 8
#: ``precision`` values: "auto" is bfloat16 on a GPU and float32 on a CPU
PRECISIONS = ("auto", "float32", "bfloat16")
#: ``engine`` values: "auto" runs float32 CPU predictions on the members rewritten for a CPU
#: (:mod:`.cpu_net`) and everything else on the members' own modules; "modules" always uses
#: the members' own modules, one after the other (the reference the rewrite is tested against)
ENGINES = ("auto", "modules")
#: the most context (pixels) a tile sees by default: beyond ~48 px a pixel's influence on a
#: 3-level member's output was below 3e-4 in probability, and every extra pixel of context
#: costs time on all four sides
MAX_DEFAULT_CONTEXT = 48
#: mirrored pixels around the image edge by default
DEFAULT_BORDER = 16


def _inference_modules(
    models: Members, device: torch.device, need_modules: bool = True
) -> tuple[list[nn.Module], int, int]:
    """Evaluation copies of the members on ``device`` (an empty list when not
    ``need_modules``), the size multiple and the receptive radius."""
    if hasattr(models, "inference_members"):  # an Ensemble: its cached copies
        return (
            models.inference_members(device) if need_modules else [],
            models.config.size_multiple,
            _radius(models.members),
        )
    models = _unet_list(models)
    copies = [inference_copy(m, device) for m in models] if need_modules else []
    return copies, models[0].config.size_multiple, _radius(models)


def _unet_list(models: Sequence[nn.Module]) -> list[UNet]:
    models = list(models)
    if not models:
        raise ValueError("no ensemble members to predict with")
    if all(isinstance(m, UNet) for m in models):
        configs = {m.config for m in models}
        if len(configs) != 1:
            raise ValueError(f"all members must share one architecture, got {configs}")
        return models
    raise TypeError("members must be an Ensemble or a sequence of agents.ensemble.UNet")


def _cpu_nets(models: Members) -> list[CPUNet] | None:
    """The members rewritten for a CPU (:mod:`.cpu_net`), or None where they cannot be."""
    if hasattr(models, "cpu_nets"):  # an Ensemble: its cached copies
        return models.cpu_nets()
    return cpu_nets(_unet_list(models))


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
    engine: str = "auto",
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
        num_threads: threads for this call (``None``: one, decision 0010). On a CPU in
            float32 (the rewrite) that many members run at once, each on one torch thread,
            and the numbers do not depend on it (decision 0016); otherwise torch's threads
            within each operation (their rounding can differ from one thread's by ~1e-7).
        normalize: standardise the image first (as in training); turn off only for images
            already standardised.
        device: ``"auto"`` (a GPU when there is one), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        precision: ``"auto"`` (bfloat16 autocast on a GPU, float32 on a CPU),
            ``"float32"`` or ``"bfloat16"``.
        engine: ``"auto"``: float32 on a CPU runs on the members rewritten for a CPU
            (:class:`~agents.ensemble.cpu_net.CPUNet`: the same function with less work,
            probabilities within ~1e-6 of the modules'), everything else on the members'
            own modules; ``"modules"``: always the members' own modules, one after the
            other (the straightforward reference, slower on a CPU).

    Returns:
        float32 ``(K, H, W)`` probabilities, one map per member.

    Example (three untrained members, to show the shapes; tiles of 32 px over a 64 x 64
    image):
        >>> import numpy as np
        >>> from agents.ensemble import Ensemble, UNet, UNetConfig, predict_members
        >>> ensemble = Ensemble([UNet(UNetConfig(levels=1, base_filters=4)) for _ in range(3)])
        >>> image = np.random.default_rng(0).random((64, 64))
        >>> probs = predict_members(ensemble, image, tile_size=32)
        >>> probs.shape, probs.dtype                # one map per member
        ((3, 64, 64), dtype('float32'))
        >>> mean, spread = probs.mean(0), probs.var(0)   # what the members agree on, and not
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
            engine=engine,
            members_at_once=member_threads(num_threads),
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
    engine: str = "auto",
    members_at_once: int = 1,
) -> torch.Tensor:
    """:func:`predict_members`' work: a float32 ``(K, H, W)`` tensor left on ``device``."""
    img = as_image(image)
    if normalize:
        img = normalize_image(img)
    autocast = _autocast_dtype(precision, device)
    tile_size, batch_size = _tiling(tile_size, batch_size, device)
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    nets = None
    if engine == "auto" and device.type == "cpu" and autocast is None:
        nets = _cpu_nets(models)  # None for members it cannot rewrite (GroupNorm)
    modules, multiple, radius = _inference_modules(models, device, need_modules=nets is None)
    if nets is not None:
        modules = nets
        keep_freed_memory()  # a third of the CPU time went to page faults without it
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
    batches = [tiles_at[b : b + batch_size] for b in range(0, len(tiles_at), batch_size)]
    tensor = torch.from_numpy(np.ascontiguousarray(padded))
    if is_cuda(device):
        # one copy of the image to the GPU, from page-locked memory
        tensor = tensor.pin_memory().to(device, non_blocking=True)
    out = torch.empty((len(modules), hp, wp), dtype=torch.float32, device=device)

    def one_member(k: int) -> None:
        """Member ``k``'s map of the whole image, tile batch by tile batch, into out[k]."""
        with torch.inference_mode(), torch.autocast(
            device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None
        ):
            for batch in batches:
                tiles = torch.stack(
                    [tensor[wr : wr + win_h, wc : wc + win_w] for (_, wr), (_, wc) in batch]
                )
                tiles = tiles[:, None].contiguous(memory_format=torch.channels_last)
                probs = torch.sigmoid(modules[k](tiles).float())[:, 0]
                for ((r, wr), (c, wc)), p in zip(batch, probs):
                    dr, dc = r + pad - wr, c + pad - wc
                    out[k, r : r + core_h, c : c + core_w] = p[dr : dr + core_h, dc : dc + core_w]

    each_member(one_member, len(modules), members_at_once if nets is not None else 1)
    return out[:, :h, :w]
