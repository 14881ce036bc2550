"""The members rewritten for float32 inference on a CPU: the same function, less work.

A member's own torch module (:class:`~agents.ensemble.unet.UNet`, even with its BatchNorm
folded, :func:`~agents.ensemble.unet.inference_copy`) does more than its function needs where
the decoder up-samples, measured per layer on this project's 2-core CPU (oneDNN, one thread).
Rewritten, 5 members on a 512² image (a 544² window with its mirrored border) take 194-200 ms
of CPU instead of 241-243 ms (both with freed memory kept, decision 0016; 345-374 ms as the
modules ran before):

* **up-sampling then convolving.** Each decoder level repeats every pixel 2x2 (nearest
  neighbour) and then runs a 3x3 convolution at the fine scale. Every fine output pixel
  reads only 2x2 *distinct* coarse pixels, so the same numbers come from one 2x2
  convolution at the coarse scale with four output phases (the 3x3 weights summed where
  they meet the same coarse pixel): 4/9 of the multiplications, and 4x the output channels
  per call (32 instead of 8 at full resolution, where oneDNN fills its 16-wide vectors only
  half). At full resolution that call went from ~6 ms to 1.5-1.8 ms; the phases are then
  interleaved straight into the buffer the skip connection is copied into (what
  ``torch.cat`` copied anyway), and the up-sampling pass is gone.
* **BatchNorm** is folded into the preceding convolution (as the module copies do).

The arithmetic is otherwise the module's: the same oneDNN convolutions on channels-last
tensors, in the same order, so logits differ from the module's by float rounding only
(~1e-7 relative; ``tests/agents/ensemble/test_ensemble_cpu_net.py`` holds both to 1e-5 in
probability on a trained 3-level ensemble, and to the same atoms on the twin and the real
image).

Measured and not kept (same machine, same shapes): all K = 5 members as one grouped
convolution (``groups=K``) was 4-77 % slower per layer than K separate calls (77 % on the
8-channel full-resolution layers); oneDNN's fused convolution + ReLU
(``mkldnn._convolution_pointwise``) saved nothing measurable (190.5 against 190.7 ms);
NNPACK's Winograd convolutions were 1.3-2.1x slower with 13-23x larger rounding errors; the
blocked ``to_mkldnn`` layout was 6-31 % slower than channels-last; one 1->40 first
convolution for 5 members took 27 ms against 11 ms for five 1->8 ones.

GroupNorm members (``norm="group"``) normalise over a whole tile and cannot be folded;
:func:`supports` says no and the predictor uses the members' modules for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .unet import UNet, inference_copy

__all__ = ["CPUNet", "cpu_nets", "supports"]

_CL = torch.channels_last
#: the coarse-pixel offsets of the four output phases (row phase a, column phase b): phase
#: (a, b) of the fine pixel (2i + a, 2j + b) is the 2x2 convolution's output at (i + a, j + b)
_PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))


@dataclass(frozen=True)
class _Conv:
    """A convolution (BatchNorm folded in), optionally followed by ReLU."""

    weight: torch.Tensor  # (out, in, k, k), channels-last
    bias: torch.Tensor
    padding: int
    relu: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, self.bias, padding=self.padding)
        return torch.relu_(y) if self.relu else y


@dataclass(frozen=True)
class _SubPixelUp:
    """Nearest-neighbour 2x up-sampling followed by a 3x3 convolution (padding 1), as one
    2x2 convolution at the coarse scale with the four output phases as channel blocks."""

    weight: torch.Tensor  # (4 out, in, 2, 2), channels-last, phases in _PHASES order
    bias: torch.Tensor  # (4 out,)
    channels: int  # out

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> _SubPixelUp:
        if conv.kernel_size != (3, 3) or conv.padding != (1, 1) or conv.stride != (1, 1):
            raise ValueError(f"expected a 3x3 convolution with padding 1, got {conv}")
        w = conv.weight.detach().float()
        bias = conv.bias.detach().float() if conv.bias is not None else w.new_zeros(len(w))

        # Fine row 2i + a reads fine rows 2i + a - 1 .. 2i + a + 1, i.e. coarse rows i - 1, i
        # (a = 0: taps 0 | 1 + 2) or i, i + 1 (a = 1: taps 0 + 1 | 2); the same for columns.
        def fold(t: torch.Tensor, phase: int, dim: int) -> torch.Tensor:
            t0, t1, t2 = t.unbind(dim)
            pair = (t0, t1 + t2) if phase == 0 else (t0 + t1, t2)
            return torch.stack(pair, dim)

        kernels = [fold(fold(w, a, 2), b, 3) for a, b in _PHASES]
        weight = torch.cat(kernels).contiguous(memory_format=_CL)
        return cls(weight, bias.repeat(len(_PHASES)).contiguous(), int(conv.out_channels))

    def joined(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``torch.cat([conv(upsample(x)), skip], dim=1)``, channels-last."""
        n, _, h, w = x.shape
        c = self.channels
        # padding 1 with a 2x2 kernel: (h + 1, w + 1) outputs; phase (a, b) at (i + a, j + b)
        y = F.conv2d(x, self.weight, self.bias, padding=1)
        out = torch.empty((n, c + skip.shape[1], 2 * h, 2 * w), dtype=y.dtype, memory_format=_CL)
        for g, (a, b) in enumerate(_PHASES):
            out[:, :c, a::2, b::2] = y[:, g * c : (g + 1) * c, a : a + h, b : b + w]
        out[:, c:] = skip
        return out


class CPUNet:
    """One ensemble member rewritten for float32 inference on a CPU.

    Computes what ``member.eval()(x)`` computes (atom logits), rounding aside: BatchNorm is
    folded into the convolutions, and every "up-sample, then 3x3 convolution" of the
    decoder runs as one 2x2 convolution at the coarse scale (see the module notes).
    Evaluation only: no gradients, dropout off.

    Args:
        member: a :class:`UNet` with ``norm="batch"`` or ``"none"``.

    Raises:
        ValueError: a GroupNorm member (check with :func:`supports`).

    Example (an untrained member: the rewrite computes the same logits):
        >>> import torch
        >>> from agents.ensemble import UNet, UNetConfig
        >>> from agents.ensemble.cpu_net import CPUNet
        >>> member = UNet(UNetConfig(levels=2, base_filters=4)).eval()
        >>> image_tensor = torch.rand(1, 1, 32, 32)       # (B, 1, H, W), sides multiples of 4
        >>> net = CPUNet(member)
        >>> with torch.inference_mode():
        ...     logits = net(image_tensor)
        ...     same = torch.allclose(logits, member(image_tensor), atol=1e-5)
        >>> logits.shape, same
        (torch.Size([1, 1, 32, 32]), True)
    """

    def __init__(self, member: UNet) -> None:
        if not supports(member):
            raise ValueError(
                f"CPUNet needs BatchNorm or no norm (foldable), got norm={member.config.norm!r}"
            )
        net = inference_copy(member, torch.device("cpu"))
        self.size_multiple = member.config.size_multiple
        self.encoders = [_double(block) for block in net.encoders]
        self.bottleneck = _double(net.bottleneck)
        self.ups = [_SubPixelUp.from_conv(conv) for conv in net.up_convs]
        self.decoders = [_double(block) for block in net.decoders]
        self.head = _conv(net.head, relu=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, H, W)`` of a channels-last ``(B, 1, H, W)`` float32 batch."""
        m = self.size_multiple
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected a (B, 1, H, W) tensor, got {tuple(x.shape)}")
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"image sides must be multiples of {m}, got {tuple(x.shape[-2:])}")
        skips = []
        for first, second in self.encoders:
            x = second(first(x))
            skips.append(x)
            x = F.max_pool2d(x, 2)
        first, second = self.bottleneck
        x = second(first(x))
        for up, (first, second), skip in zip(self.ups, self.decoders, reversed(skips)):
            x = second(first(up.joined(x, skip)))
        return self.head(x)


def supports(member: nn.Module) -> bool:
    """Whether :class:`CPUNet` can rewrite this member (a :class:`UNet` whose norm folds)."""
    return isinstance(member, UNet) and member.config.norm in ("batch", "none")


def cpu_nets(members: Sequence[UNet]) -> list[CPUNet] | None:
    """:class:`CPUNet` copies of all members, or None when one of them is not supported."""
    if not members or not all(supports(m) for m in members):
        return None
    return [CPUNet(m) for m in members]


def _conv(conv: nn.Module, relu: bool) -> _Conv:
    if not isinstance(conv, nn.Conv2d) or conv.stride != (1, 1) or conv.groups != 1:
        raise ValueError(f"expected a plain stride-1 convolution, got {conv}")
    weight = conv.weight.detach().float().contiguous(memory_format=_CL)
    bias = conv.bias.detach().float() if conv.bias is not None else weight.new_zeros(len(weight))
    return _Conv(weight, bias.contiguous(), int(conv.padding[0]), relu)


def _double(block: nn.Sequential) -> tuple[_Conv, _Conv]:
    """The two convolutions of a (folded) :class:`~agents.ensemble.unet._DoubleConv`."""
    layers = [m for m in block if not isinstance(m, nn.Identity)]
    kinds = [type(m) for m in layers]
    if kinds != [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU]:
        raise ValueError(f"expected conv, ReLU, conv, ReLU after folding, got {kinds}")
    return _conv(layers[0], relu=True), _conv(layers[2], relu=True)
