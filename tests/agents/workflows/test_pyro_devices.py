"""The pyro agents (rVAE, latent-space agent, physics-informed GP) on a device: the request
validated and recorded in config(), where they computed in the report (agents.device)."""

import numpy as np
import pytest
import torch

from agents.device import NoDeviceError
from agents.latent import LatentAgent
from agents.physics import PhysicsGPAgent
from agents.rvae import RotationInvariantVAE

NO_CUDA = not torch.cuda.is_available()


def _disc(size=32):
    yy, xx = np.mgrid[:size, :size]
    return np.where(np.hypot(xx - size / 2, yy - size / 2) < 8, 10.0, 1.0)


def _measure(agent, n=8):
    values = lambda xy: 1.0 + 5.0 * (np.hypot(xy[:, 0] - 16, xy[:, 1] - 16) < 8)  # noqa: E731
    for _ in range(n // 2):
        xy = np.array([[s["x"], s["y"]] for s in agent.suggest(2)])
        agent.ingest(xy, values(xy))
    return agent


LATENT = dict(n_clusters=2, step=4, train_step=4, window=8, epochs=2, seed=0)
PHYSICS = dict(step=4, n_seed=4, seed=0, train_steps=30, finetune_steps=5, draws=4)


def test_the_request_is_recorded_and_the_report_says_where():
    latent = LatentAgent(_disc(), device="CPU", **LATENT)
    assert latent.config()["device"] == "cpu"
    assert latent.report()["device"] == {"type": "cpu", "index": None, "name": "cpu"}
    physics = _measure(PhysicsGPAgent(_disc(), **PHYSICS))
    assert physics.config()["device"] == "cpu"  # the CPU unless a GPU is asked for
    assert physics.report()["device"]["type"] == "cpu"
    # 'auto' is the GPU when there is one, else the CPU; the request is kept as asked
    auto = LatentAgent(_disc(), device="auto", **LATENT)
    assert auto.config()["device"] == "auto"
    assert auto.report()["device"]["type"] == ("cpu" if NO_CUDA else "cuda")


@pytest.mark.parametrize("make", [RotationInvariantVAE, lambda **kw: PhysicsGPAgent(_disc(), **kw)])
def test_a_malformed_device_is_refused_with_the_choices(make):
    with pytest.raises(ValueError, match="auto, cpu, cuda, cuda:N"):
        make(device="gpu")


@pytest.mark.skipif(not NO_CUDA, reason="checks a machine without CUDA")
def test_a_gpu_asked_for_by_name_is_a_clear_error_without_one():
    with pytest.raises(NoDeviceError, match="no CUDA device"):
        RotationInvariantVAE(device="cuda")
    with pytest.raises(NoDeviceError, match="no CUDA device"):
        PhysicsGPAgent(_disc(), device="cuda:0")


@pytest.mark.skipif(NO_CUDA, reason="no CUDA device: the GPU side of the pyro agents")
def test_on_a_gpu_the_agents_agree_with_the_cpu():
    cpu = LatentAgent(_disc(), device="cpu", **LATENT)
    gpu = LatentAgent(_disc(), device="cuda", **LATENT)
    assert gpu.report()["device"]["type"] == "cuda"
    # the same seeds; different rounding: the latent spaces agree up to the GPU's arithmetic
    np.testing.assert_allclose(gpu.z, cpu.z, atol=0.05)
    physics_cpu = _measure(PhysicsGPAgent(_disc(), device="cpu", **PHYSICS))
    physics_gpu = _measure(PhysicsGPAgent(_disc(), device="cuda", **PHYSICS))
    assert physics_gpu.report()["device"]["type"] == "cuda"
    for name in ("background", "step"):
        a = physics_cpu.posterior()[name]["mean"]
        b = physics_gpu.posterior()[name]["mean"]
        assert b == pytest.approx(a, rel=0.2, abs=0.2)
