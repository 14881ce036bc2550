"""Where an agent computes: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

Agents take ``device`` as a plain string (JSON-able, so it travels through queueserver and
into a run's records). ``"auto"`` takes a GPU when torch sees one and the CPU otherwise.
The *requested* string goes into an agent's :meth:`~agents.base.Agent.config` (a replay asks
for the same); :func:`describe` says where the work actually ran (recorded in the agent's
report, so forensics knows whether a decision was computed on a GPU or a CPU).

``check_device`` validates the string without importing torch (the command and the
console check ``--device`` before anything heavy loads); :func:`resolve_device` needs torch.

Example:
    >>> check_device("cuda:1")
    'cuda:1'
    >>> resolve_device("auto")          # on a machine without a GPU
    device(type='cpu')
    >>> describe(resolve_device("auto"))
    {'type': 'cpu', 'index': None, 'name': 'cpu'}
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["DEVICES", "NoDeviceError", "check_device", "describe", "is_cuda", "resolve_device"]

#: the device strings agents accept (``cuda:N`` with any index N >= 0)
DEVICES = ("auto", "cpu", "cuda", "cuda:N")

_SPEC = re.compile(r"^(auto|cpu|cuda)(:(\d+))?$")


class NoDeviceError(RuntimeError):
    """The requested GPU is not there (no CUDA device, or fewer than its index needs)."""


def check_device(device: Any) -> str:
    """Validate a device string and return it normalised (lower case, no spaces).

    Raises:
        ValueError: not one of ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
    """
    if device is None:
        return "auto"
    text = str(device).strip().lower()
    match = _SPEC.match(text)
    if match is None or (match.group(1) != "cuda" and match.group(2)):
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    return text


def resolve_device(device: Any = "auto") -> torch.device:
    """The ``torch.device`` for a device string (or a ``torch.device``, returned as is).

    ``"auto"`` is the first GPU when torch sees one, else the CPU; ``"cuda"`` is the
    current GPU.

    Raises:
        ValueError: a malformed string.
        NoDeviceError: ``cuda``/``cuda:N`` asked on a machine where torch sees no such GPU.
    """
    import torch

    if isinstance(device, torch.device):
        return device
    text = check_device(device)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise NoDeviceError(
            f"device {text!r} asked, but torch sees no CUDA device here (torch "
            f"{torch.__version__}); use device='auto' or 'cpu'"
        )
    dev = torch.device(text)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise NoDeviceError(
            f"device {text!r} asked, but this machine has {torch.cuda.device_count()} CUDA "
            "device(s)"
        )
    return dev


def is_cuda(device: torch.device) -> bool:
    """True for a CUDA device."""
    return device.type == "cuda"


def describe(device: torch.device) -> dict[str, Any]:
    """Where work ran, JSON-able: ``{"type", "index", "name"}`` (the GPU's model name).

    Example:
        >>> describe(torch.device("cuda:0"))                       # doctest: +SKIP
        {'type': 'cuda', 'index': 0, 'name': 'NVIDIA H200'}
    """
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {"type": "cuda", "index": index, "name": torch.cuda.get_device_name(index)}
    return {"type": device.type, "index": device.index, "name": device.type}
