"""A compact U-Net in plain torch: survey image in, atom logits out.

Small on purpose: three resolution levels with 8 filters at full resolution (16, 32, 64
below) see ±54 pixels of context, enough to tell a faint atom from noise by its neighbours,
train in well under a minute per member on a CPU and predict a 512² image in tens of
milliseconds. (Measured on the twin and the real graphene image: 3 levels × 8 filters beat
2 × 8, 2 × 16 and 4 × 8 for the same training time.) No torchvision: there is no CPU build
of it to depend on.

The network returns *logits*; the atom probability is ``torch.sigmoid(logits)``. Training
uses the logits directly (``binary_cross_entropy_with_logits`` is the numerically stable
form), prediction applies the sigmoid (see :meth:`UNet.probability`).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["UNet", "UNetConfig", "inference_copy"]

_NORMS = ("batch", "group", "none")


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of one ensemble member.

    Attributes:
        levels: number of down-sampling steps (1-4); input sides are padded to a multiple of
            ``2**levels`` by the predictor.
        base_filters: filters of the first level; each level down doubles them.
        norm: ``"batch"`` (BatchNorm, fastest), ``"group"`` (GroupNorm, independent of batch
            size) or ``"none"``.
        dropout: dropout probability at the bottleneck (0 disables it).

    Example:
        >>> from agents.ensemble import UNet, UNetConfig
        >>> config = UNetConfig(levels=2, base_filters=16)
        >>> config
        UNetConfig(levels=2, base_filters=16, norm='batch', dropout=0.0)
        >>> config.size_multiple                  # image sides padded to a multiple of this
        4
        >>> net = UNet(config)                    # one member, untrained
    """

    levels: int = 3
    base_filters: int = 8
    norm: str = "batch"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= int(self.levels) <= 4:
            raise ValueError(f"levels must be 1-4, got {self.levels}")
        if not 1 <= int(self.base_filters) <= 256:
            raise ValueError(f"base_filters must be 1-256, got {self.base_filters}")
        if self.norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {self.norm!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        known = {k: d[k] for k in ("levels", "base_filters", "norm", "dropout") if k in d}
        return cls(**known)

    @property
    def size_multiple(self) -> int:
        """Image sides must be a multiple of this (one factor of 2 per level)."""
        return 2**self.levels


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        # 4 channels per group: stable statistics even for the 16-filter first level
        return nn.GroupNorm(max(1, channels // 4), channels)
    return nn.Identity()


class _DoubleConv(nn.Sequential):
    """conv3x3 -> norm -> ReLU, twice: the building block of every level."""

    def __init__(self, c_in: int, c_out: int, norm: str) -> None:
        bias = norm == "none"  # a norm layer right after makes the conv bias redundant
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias),
            _norm(norm, c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=bias),
            _norm(norm, c_out),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """U-Net for atom segmentation: ``(B, 1, H, W)`` image -> ``(B, 1, H, W)`` logits.

    ``H`` and ``W`` must be multiples of ``config.size_multiple``. Up-sampling is
    nearest-neighbour followed by a 3x3 convolution (cheaper than transposed convolutions
    and free of their checkerboard artefacts).

    Args:
        config: the architecture; defaults to 3 levels and 8 filters.

    Example:
        >>> net = UNet(UNetConfig(levels=2, base_filters=16))
        >>> net(torch.zeros(1, 1, 64, 64)).shape
        torch.Size([1, 1, 64, 64])
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        c = self.config
        widths = [c.base_filters * 2**i for i in range(c.levels + 1)]
        self.encoders = nn.ModuleList()
        c_in = 1
        for w in widths[:-1]:
            self.encoders.append(_DoubleConv(c_in, w, c.norm))
            c_in = w
        self.bottleneck = _DoubleConv(widths[-2], widths[-1], c.norm)
        self.dropout = nn.Dropout2d(c.dropout) if c.dropout > 0 else nn.Identity()
        self.up_convs = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for w_low, w in zip(reversed(widths[1:]), reversed(widths[:-1])):
            self.up_convs.append(nn.Conv2d(w_low, w, 3, padding=1))
            self.decoders.append(_DoubleConv(2 * w, w, c.norm))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.config.size_multiple
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected a (B, 1, H, W) tensor, got {tuple(x.shape)}")
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"image sides must be multiples of {m}, got {tuple(x.shape[-2:])}")
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.dropout(self.bottleneck(x))
        for up, dec, skip in zip(self.up_convs, self.decoders, reversed(skips)):
            x = up(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            x = dec(torch.cat([x, skip], dim=1))
        return self.head(x)

    @torch.inference_mode()
    def probability(self, x: torch.Tensor) -> torch.Tensor:
        """Atom probability in [0, 1] (evaluation mode, no gradients)."""
        return torch.sigmoid(self(x))

    @property
    def receptive_radius(self) -> int:
        """Pixels of context on each side that influence one output pixel.

        Tiled prediction keeps at least this much overlap so that tiles match the whole
        image exactly (see :func:`agents.ensemble.predict.predict_members`).
        """
        # An upper bound, counting every operation's full footprint at its own scale s:
        # encoder level = two 3x3 convs (2s) + 2x2 max-pool (s); bottleneck = two convs at
        # the coarsest scale; decoder level = nearest up-sampling (2s) + up-conv (s) + two
        # convs (2s). Summed over levels: 8 (2**L - 1) + 2**(L + 1).
        levels = self.config.levels
        return 8 * (2**levels - 1) + 2 ** (levels + 1)

    def count_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def inference_copy(member: UNet, device: torch.device) -> nn.Module:
    """An evaluation-only copy on ``device``: BatchNorm folded into the preceding
    convolution, channels-last.

    Both are exact rewrites of the same function (differences ~1e-7) and together made a
    2-level, 16-filter member ~2-3x faster on a CPU.
    """
    net = copy.deepcopy(member).cpu().eval()
    for module in net.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, norm = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                module._modules[a] = fuse_conv_bn_eval(conv, norm)
                module._modules[b] = nn.Identity()
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(device=device, memory_format=torch.channels_last)
