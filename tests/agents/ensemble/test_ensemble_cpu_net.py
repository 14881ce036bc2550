"""The CPU rewrite of the members (agents.ensemble.cpu_net) against the members' own modules.

The rewrite is the default CPU path; ``engine="modules"`` is the straightforward reference
(each member's own torch module, one after the other). Tolerance, stated here and in
docs/ensemble.md: probabilities within PROBABILITY_TOLERANCE, the same atoms at the same
places (within POSITION_TOLERANCE px), on a twin image and on the real G-Si-2nm image.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.ensemble import (
    TrainingSettings,
    UNet,
    UNetConfig,
    _runtime,
    evidence,
    member_variance,
    predict,
    predict_members,
    train_ensemble,
)
from agents.ensemble.cpu_net import CPUNet, supports

#: largest difference in any member's probability between the rewrite and the modules
#: (measured: <= 2e-6 on the 5-member default ensemble, twin and real image)
PROBABILITY_TOLERANCE = 1e-5
#: largest shift of an atom, pixels (measured: <= 2e-7)
POSITION_TOLERANCE = 1e-4
REAL_IMAGE = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "G-Si-2nm.npy"


@pytest.fixture(scope="module")
def three_level():
    """Two members of the default architecture (3 levels, 8 filters, BatchNorm), trained
    150 steps on twin graphene: enough to find the atoms of the real image."""
    from ophyd_stem.app.training_data import twin_image

    pairs = [
        twin_image("graphene", size=128, noise_level=0.2, pixel_size=2.0 / 256, seed=s)
        for s in range(4)
    ]
    images, atoms = np.stack([p[0] for p in pairs]), [p[1] for p in pairs]
    settings = TrainingSettings(members=2, steps=150, crop_size=64, batch_size=4, num_threads=1)
    return train_ensemble(images, atoms, settings)


def _images():
    from ophyd_stem.app.training_data import twin_image

    out = {"twin": twin_image("graphene", size=256, noise_level=0.3, pixel_size=2 / 256, seed=9)[0]}
    if REAL_IMAGE.is_file():
        out["real G-Si-2nm"] = np.load(REAL_IMAGE)
    return out


def test_default_cpu_path_is_the_rewrite_and_matches_the_modules(three_level, monkeypatch):
    calls = []
    rewritten = CPUNet.__call__
    monkeypatch.setattr(CPUNet, "__call__", lambda self, x: calls.append(1) or rewritten(self, x))
    images = _images()
    if "real G-Si-2nm" not in images:
        pytest.skip(f"G-Si-2nm.npy is not in {REAL_IMAGE.parent}")
    for name, image in images.items():
        calls.clear()
        fast = predict(three_level, image, num_threads=1, device="cpu")
        assert calls, "the default CPU path did not run the rewrite"
        calls.clear()
        reference = predict(three_level, image, num_threads=1, device="cpu", engine="modules")
        assert not calls
        maps = predict_members(three_level, image, num_threads=1)
        reference_maps = predict_members(three_level, image, num_threads=1, engine="modules")
        assert np.abs(maps - reference_maps).max() <= PROBABILITY_TOLERANCE, name
        assert np.abs(fast.mean - reference.mean).max() <= PROBABILITY_TOLERANCE, name
        assert np.abs(fast.variance - reference.variance).max() <= PROBABILITY_TOLERANCE, name
        assert len(reference.atoms) > 50, f"{name}: too few atoms for a meaningful check"
        assert len(fast.atoms) == len(reference.atoms), name
        assert np.abs(fast.atoms - reference.atoms).max() <= POSITION_TOLERANCE, name
        np.testing.assert_allclose(fast.uncertainty, reference.uncertainty, atol=1e-5)
        np.testing.assert_array_equal(fast.area, reference.area)


def _randomised(config: UNetConfig, seed: int) -> UNet:
    """An untrained member whose BatchNorm statistics and affine parameters are far from
    the identity, so that folding them into the convolutions is really tested."""
    torch.manual_seed(seed)
    net = UNet(config)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return net.eval()


@pytest.mark.parametrize(
    "config",
    [
        UNetConfig(),
        UNetConfig(levels=1, base_filters=4),
        UNetConfig(levels=2, base_filters=16, norm="none"),
        UNetConfig(levels=4, base_filters=8, dropout=0.2),
    ],
    ids=["default", "1-level", "2-level-no-norm", "4-level-dropout"],
)
def test_rewrite_computes_the_member_function(config):
    net = _randomised(config, seed=1)
    x = torch.randn(2, 1, 48, 80)  # a batch of two, not square
    with torch.inference_mode():
        expected = net(x)
        got = CPUNet(net)(x.contiguous(memory_format=torch.channels_last))
    assert got.shape == expected.shape
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) <= 1e-5 * max(scale, 1.0)


def test_rewrite_refuses_what_it_cannot_fold_and_bad_input():
    group = UNet(UNetConfig(levels=1, norm="group"))
    assert not supports(group)
    with pytest.raises(ValueError, match="BatchNorm or no norm"):
        CPUNet(group)
    net = CPUNet(UNet(UNetConfig(levels=2)).eval())
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.zeros(1, 1, 10, 12))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        net(torch.zeros(1, 2, 8, 8))


def test_group_norm_members_run_on_their_modules(make_images):
    torch.manual_seed(0)
    members = [UNet(UNetConfig(levels=1, norm="group")).eval() for _ in range(2)]
    image = make_images(1, seed=2, size=24)[0][0]
    auto = predict_members(members, image, num_threads=1)
    np.testing.assert_array_equal(auto, predict_members(members, image, engine="modules"))
    with pytest.raises(ValueError, match="engine must be one of"):
        predict_members(members, image, engine="fast")


def test_members_on_two_threads_give_the_same_numbers(three_level, make_images):
    image = make_images(1, seed=7, size=72)[0][0]
    threads = torch.get_num_threads()
    one = predict_members(three_level, image, num_threads=1)
    two = predict_members(three_level, image, num_threads=2)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(predict_members(three_level, image), one)  # the default
    assert torch.get_num_threads() == threads  # the caller's setting is back
    # a forked child must not wait for the parent's threads: the handler forgets the pools
    assert _runtime._pools
    _runtime._forget_pools()
    assert not _runtime._pools
    np.testing.assert_array_equal(predict_members(three_level, image, num_threads=2), one)


def test_cached_rewrite_follows_the_weights(three_level, make_images):
    ensemble = three_level.clone()
    image = make_images(1, seed=8, size=40)[0][0]
    before = predict_members(ensemble, image, num_threads=1)
    assert ensemble.cpu_nets() is ensemble.cpu_nets()  # cached
    with torch.no_grad():
        ensemble.members[0].head.bias.add_(1.0)
    ensemble.invalidate()
    after = predict_members(ensemble, image, num_threads=1)
    reference = predict_members(ensemble, image, num_threads=1, engine="modules")
    assert np.abs(after[0] - before[0]).max() > 0.01
    assert np.abs(after - reference).max() <= PROBABILITY_TOLERANCE


def test_member_variance_keeps_its_numbers():
    rng = np.random.default_rng(3)
    probs = rng.uniform(size=(5, 33, 47)).astype(np.float32)
    p = probs.astype(np.float64)  # the formula as it was, over the whole stack
    d = p - p[:1]
    old = np.maximum((d * d).mean(axis=0) - d.mean(axis=0) ** 2, 0.0).astype(np.float32)
    np.testing.assert_array_equal(member_variance(probs), old)
    with pytest.raises(ValueError, match="at least one member"):
        member_variance(np.zeros((0, 4, 4), np.float32))


def test_atom_evidence_reads_discs_in_chunks_with_the_same_numbers(monkeypatch):
    rng = np.random.default_rng(4)
    probs = rng.uniform(size=(3, 40, 50)).astype(np.float32)
    atoms = rng.uniform(-0.4, 39.4, size=(17, 2))
    area, probability = rng.uniform(8, 20, 17), rng.uniform(0.9, 1.0, 17)
    whole = evidence.atom_evidence(probs, atoms, area, probability, np.full(17, 1e-3))
    monkeypatch.setattr(evidence, "_WINDOW_VALUES", 1)  # one atom at a time
    one_by_one = evidence.atom_evidence(probs, atoms, area, probability, np.full(17, 1e-3))
    for name in whole:
        np.testing.assert_array_equal(whole[name], one_by_one[name])


def test_keep_freed_memory_leaves_a_tuned_malloc_alone(monkeypatch):
    for name in _runtime._MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert _runtime._set_malloc() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert _runtime._set_malloc() is True
    assert isinstance(_runtime.keep_freed_memory(), bool)


def test_member_threads_default_and_checks():
    assert _runtime.member_threads(None) == _runtime.default_num_threads() == 1
    assert _runtime.member_threads(3) == 3
    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        _runtime.member_threads(0)
