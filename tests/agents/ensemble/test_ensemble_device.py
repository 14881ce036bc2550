"""Devices and Dask for the ensemble: the GPU's code paths exercised on the CPU, the CPU's
numbers unchanged, members trained in parallel on a real LocalCluster equal to serial."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.ensemble import (
    EnsembleAgent,
    TrainingSettings,
    iterative_training,
    member_variance,
    predict,
    predict_members,
    train_ensemble,
)
from agents.ensemble.maps import _tiling
from agents.ensemble.predict import _mean_and_variance_on_device

NO_CUDA = not torch.cuda.is_available()
GPU_SKIP = "no CUDA device: the GPU path (bfloat16 autocast, large tile batches, reduction on "
GPU_SKIP += "the device) is exercised on the CPU by the tests above"
#: what bfloat16 autocast may change in a probability (8 bits of mantissa through ~20 layers)
BF16_TOLERANCE = 0.05


def _same_weights(a, b) -> bool:
    return all(
        all(torch.equal(x, y) for x, y in zip(m.state_dict().values(), n.state_dict().values()))
        for m, n in zip(a.members, b.members)
    )


def test_cpu_explicit_auto_and_default_give_the_same_numbers(tiny_ensemble, make_images):
    image = make_images(1, seed=5, size=40)[0][0]
    default = predict_members(tiny_ensemble, image, num_threads=1)
    for device in ("cpu", "auto", torch.device("cpu")):
        assert np.array_equal(
            predict_members(tiny_ensemble, image, num_threads=1, device=device), default
        )
    p = predict(tiny_ensemble, image, num_threads=1, device="cpu")
    assert np.array_equal(p.mean, default.mean(axis=0))
    assert np.array_equal(p.variance, member_variance(default))


def test_bfloat16_autocast_runs_on_the_cpu_within_tolerance(tiny_ensemble, make_images):
    image = make_images(1, seed=6, size=40)[0][0]
    fp32 = predict_members(tiny_ensemble, image, num_threads=1, precision="float32")
    bf16 = predict_members(tiny_ensemble, image, num_threads=1, precision="bfloat16")
    difference = np.abs(fp32 - bf16).max()
    assert 0 < difference < BF16_TOLERANCE  # autocast really ran, and stayed close
    assert bf16.dtype == np.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        predict_members(tiny_ensemble, image, precision="half")


def test_gpu_tiling_and_batches_give_the_cpu_numbers(tiny_ensemble, make_images):
    # what a GPU does by default (big tiles, several per forward pass), on the CPU
    assert _tiling("auto", "auto", torch.device("cuda")) == (2048, 8)
    assert _tiling("auto", "auto", torch.device("cpu")) == (512, 1)
    image = make_images(1, seed=7, size=48)[0][0]
    one_by_one = predict_members(tiny_ensemble, image, num_threads=1, tile_size=16, batch_size=1)
    batched = predict_members(tiny_ensemble, image, num_threads=1, tile_size=16, batch_size=8)
    assert np.allclose(batched, one_by_one, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        predict_members(tiny_ensemble, image, batch_size=0)


def test_reduction_on_the_device_matches_the_host_one():
    rng = np.random.default_rng(0)
    probs = rng.random((5, 20, 30)).astype(np.float32)
    mean, variance = _mean_and_variance_on_device(torch.from_numpy(probs))
    assert np.allclose(mean, probs.mean(axis=0), atol=1e-7)
    assert np.allclose(variance, member_variance(probs), atol=1e-6)
    same = np.repeat(probs[:1], 4, axis=0)  # identical members: exactly no variance
    assert not _mean_and_variance_on_device(torch.from_numpy(same))[1].any()


def test_training_device_is_validated_recorded_and_the_cpu_gives_the_default(tiny_data):
    images, atoms = tiny_data
    settings = TrainingSettings(members=1, steps=5, levels=1, crop_size=16, num_threads=1)
    assert settings.device == "auto"
    with pytest.raises(ValueError, match="device must be one of"):
        TrainingSettings(device="gpu")
    default = train_ensemble(images, atoms, settings)
    on_cpu = train_ensemble(
        images, atoms, TrainingSettings(**{**settings.to_dict(), "device": "CPU"})
    )
    assert _same_weights(default, on_cpu)
    assert on_cpu.metadata["trained_on"] == [{"type": "cpu", "index": None, "name": "cpu"}]
    assert on_cpu.metadata["training"]["device"] == "cpu"
    assert on_cpu.metadata["compute"] is None


def test_members_trained_on_a_local_cluster_equal_those_trained_here(tiny_data, dask_client):
    images, atoms = tiny_data
    settings = TrainingSettings(members=2, steps=8, levels=1, crop_size=16, num_threads=1)
    here = train_ensemble(images, atoms, settings)
    there = train_ensemble(images, atoms, settings, compute=dask_client)
    assert _same_weights(here, there)
    assert there.metadata["final_loss"] == here.metadata["final_loss"]
    assert there.metadata["compute"].startswith("tcp://")
    # ELIT's retraining fans out the same way
    again_here = iterative_training(here, images[:2], settings=settings, device="cpu")
    again_there = iterative_training(here, images[:2], settings=settings, compute=dask_client)
    assert _same_weights(again_here, again_there)


def test_agent_records_the_device_asked_and_the_device_used(tiny_ensemble, make_images):
    agent = EnsembleAgent(tiny_ensemble, num_threads=1, device="cpu")
    agent.observe(make_images(1, seed=8, size=40)[0][0])
    assert agent.config()["device"] == "cpu"
    assert agent.report()["device"] == {"type": "cpu", "index": None, "name": "cpu"}
    assert EnsembleAgent(tiny_ensemble).config()["device"] == "auto"
    with pytest.raises(ValueError, match="device must be one of"):
        EnsembleAgent(tiny_ensemble, device="gpu0")


@pytest.mark.skipif(NO_CUDA, reason=GPU_SKIP)
def test_gpu_prediction_and_training_match_the_cpu_within_tolerance(
    tiny_ensemble, tiny_data, make_images
):
    image = make_images(1, seed=9, size=64)[0][0]
    cpu = predict(tiny_ensemble, image, num_threads=1, device="cpu")
    gpu = predict(tiny_ensemble, image, device="cuda")
    assert np.abs(gpu.mean - cpu.mean).max() < BF16_TOLERANCE
    assert np.abs(gpu.variance - cpu.variance).max() < BF16_TOLERANCE**2
    fp32 = predict(tiny_ensemble, image, device="cuda", precision="float32")
    assert np.abs(fp32.mean - cpu.mean).max() < 1e-4
    images, atoms = tiny_data
    settings = TrainingSettings(members=1, steps=5, levels=1, crop_size=16, device="cuda")
    trained = train_ensemble(images, atoms, settings)
    assert trained.metadata["trained_on"][0]["type"] == "cuda"
    assert next(trained.members[0].parameters()).device.type == "cpu"
