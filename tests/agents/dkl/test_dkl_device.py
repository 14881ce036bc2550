"""DKL on a device, and its predictive variance without a candidate x candidate matrix."""

from __future__ import annotations

import gpytorch
import numpy as np
import pytest
import torch

from agents.device import NoDeviceError
from agents.dkl import CPU_MAX_TRAIN_POINTS, DKLAgent
from agents.dkl_model import predict_exact

NO_CUDA = not torch.cuda.is_available()


def _trained(scene, fast_dkl, n=12, **options):
    image, truth = scene
    agent = DKLAgent(image, **{**fast_dkl, "n_seed": 0, **options})
    rng = np.random.default_rng(3)
    xy = rng.uniform(4, image.shape[0] - 5, size=(n, 2))
    agent.ingest(xy, truth[np.rint(xy[:, 1]).astype(int), np.rint(xy[:, 0]).astype(int)])
    agent.fit()
    return agent


def _gpytorch_exact(model, x):
    """gpytorch's own posterior: the full joint covariance, read on its diagonal."""
    with torch.no_grad(), gpytorch.settings.fast_pred_var(False):
        latent = model(x)
        return latent.mean, latent.variance


def test_blockwise_prediction_equals_gpytorchs_exact_posterior(scene, fast_dkl):
    agent = _trained(scene, fast_dkl)
    model = agent._model.double()  # float64: the comparison is about the maths, not rounding
    x = agent._candidate_x.double()
    mean, variance = predict_exact(model, x)
    exact_mean, exact_variance = _gpytorch_exact(model, x)
    assert torch.allclose(mean, exact_mean, rtol=0, atol=1e-9)
    assert torch.allclose(variance, exact_variance, rtol=0, atol=1e-9)
    # any block size gives the same numbers: memory is bounded by the block, not by M
    small_blocks = predict_exact(model, x, block_elements=7 * len(model.train_targets))
    assert torch.allclose(small_blocks[1], variance, rtol=0, atol=1e-12)


def test_the_agents_float32_variances_match_the_exact_ones(scene, fast_dkl):
    agent = _trained(scene, fast_dkl, n=20)
    maps = agent.predict_maps()
    model = agent._model.double()
    exact_mean, exact_variance = _gpytorch_exact(model, agent._candidate_x.double())
    std = exact_variance.clamp_min(0).sqrt().numpy() * agent._y_std
    mean = exact_mean.numpy() * agent._y_std + agent._y_mean
    # float32 against float64, relative to the data's spread
    assert np.abs(maps["std"].ravel() - std).max() < 1e-3 * agent._y_std
    assert np.abs(maps["mean"].ravel() - mean).max() < 1e-3 * agent._y_std


def test_device_and_training_cap_are_recorded(scene, fast_dkl):
    image, _ = scene
    agent = DKLAgent(image, **fast_dkl)
    assert agent.config()["device"] == "auto"
    assert agent.config()["max_train_points"] == "auto"
    explicit = _trained(scene, fast_dkl, device="CPU")
    assert explicit.config()["device"] == "cpu"
    report = explicit.report()
    assert report["device"] == {"type": "cpu", "index": None, "name": "cpu"}
    if NO_CUDA:  # auto = the CPU here, where the cap keeps fits small
        assert agent.max_train_points == CPU_MAX_TRAIN_POINTS
        assert report["model"]["max_train_points"] == CPU_MAX_TRAIN_POINTS


def test_explicit_and_auto_cpu_make_the_same_decisions(scene, fast_dkl):
    if not NO_CUDA:
        pytest.skip("auto is the GPU here")
    a, b = (_trained(scene, fast_dkl, device=d) for d in ("auto", "cpu"))
    assert a.suggest(3) == b.suggest(3)


def test_no_cap_trains_on_every_measurement(scene, fast_dkl):
    agent = _trained(scene, fast_dkl, n=12, max_train_points=None)
    assert agent._model.train_inputs[0].shape[0] == 12
    capped = _trained(scene, fast_dkl, n=12, max_train_points=5)
    assert capped._model.train_inputs[0].shape[0] == 5
    with pytest.raises(ValueError, match="'auto' or None"):
        DKLAgent(scene[0], max_train_points="all")


@pytest.mark.skipif(not NO_CUDA, reason="checks a machine without CUDA")
def test_asking_for_a_gpu_that_is_not_there_fails_clearly(scene):
    with pytest.raises(NoDeviceError, match="no CUDA device"):
        DKLAgent(scene[0], device="cuda")


@pytest.mark.skipif(
    NO_CUDA,
    reason="no CUDA device: DKL on the GPU (no training cap, blockwise exact variance on the "
    "device) is checked against the CPU here only where one is present",
)
def test_gpu_matches_the_cpu_within_tolerance(scene, fast_dkl):
    cpu = _trained(scene, fast_dkl, n=20, device="cpu").predict_maps()
    gpu_agent = _trained(scene, fast_dkl, n=20, device="cuda")
    assert gpu_agent.max_train_points is None
    assert gpu_agent.report()["device"]["type"] == "cuda"
    gpu = gpu_agent.predict_maps()
    scale = float(np.abs(cpu["mean"]).max())
    assert np.abs(gpu["mean"] - cpu["mean"]).max() < 1e-2 * scale
    assert np.abs(gpu["std"] - cpu["std"]).max() < 1e-2 * scale
