"""Device strings: validated without torch, resolved with it, described for the records."""

from __future__ import annotations

import pytest
import torch

from agents.device import NoDeviceError, check_device, describe, resolve_device

NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize(
    ("given", "expected"),
    [("auto", "auto"), (None, "auto"), ("CPU", "cpu"), (" cuda ", "cuda"), ("cuda:3", "cuda:3")],
)
def test_device_strings_are_normalised(given, expected):
    assert check_device(given) == expected


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cpu:0", "auto:1", "cuda:-1", "mps", 3])
def test_malformed_devices_are_refused_with_the_choices(bad):
    with pytest.raises(ValueError, match="auto, cpu, cuda, cuda:N"):
        check_device(bad)


def test_cpu_resolves_and_describes_itself():
    dev = resolve_device("cpu")
    assert dev == torch.device("cpu")
    assert describe(dev) == {"type": "cpu", "index": None, "name": "cpu"}
    assert resolve_device(dev) is dev


@pytest.mark.skipif(not NO_CUDA, reason="checks the fallback of a machine without CUDA")
def test_auto_is_the_cpu_without_a_gpu_and_cuda_is_refused_clearly():
    assert resolve_device("auto") == torch.device("cpu")
    for asked in ("cuda", "cuda:1"):
        with pytest.raises(NoDeviceError, match=r"sees no CUDA device.*use device='auto' or 'cpu'"):
            resolve_device(asked)


@pytest.mark.skipif(NO_CUDA, reason="no CUDA device: the GPU side of resolve_device")
def test_auto_takes_the_gpu_and_names_it():
    dev = resolve_device("auto")
    assert dev.type == "cuda"
    info = describe(dev)
    assert info["type"] == "cuda"
    assert info["name"] == torch.cuda.get_device_name(info["index"])
    with pytest.raises(NoDeviceError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
