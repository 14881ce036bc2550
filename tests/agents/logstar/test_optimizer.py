"""The BO loop: a correct, recorded front; the same optimisation with plain blob_log per trial
walks the same path; the chosen parameters find the real graphene atoms."""

from __future__ import annotations

import numpy as np
import pytest

from agents.logstar.lattice import graphene
from agents.logstar.optimizer import LoGStarOptimizer, optimize_log
from agents.logstar.params import LoGParameters, SearchSpace
from agents.logstar.pareto import non_dominated, select_point
from agents.logstar.rewards import RewardContext
from agents.metrics import match_atoms

from .conftest import render_lattice


@pytest.fixture(scope="module")
def noisy_graphene():
    return render_lattice(graphene(), noise=0.3, seed=5)


@pytest.fixture(scope="module")
def runs(noisy_graphene):
    image = noisy_graphene[0]
    out = {}
    for detector in ("scale_space", "blob_log"):
        opt = LoGStarOptimizer([image], "graphene", 0.01, detector=detector)
        out[detector] = opt.run(budget=14, n_initial=8, batch_size=3, seed=3)
    return out


def test_front_is_exactly_the_non_dominated_trials(runs):
    result = runs["scale_space"]
    values = result.values
    assert len(result.trials) == 14
    assert {t.stage for t in result.trials} == {"sobol", "bo"}
    mask = non_dominated(values)
    front_trials = {p.trial for p in result.front}
    # every front point is non-dominated, and every non-dominated trial value is on it once
    assert all(mask[i] for i in front_trials)
    assert {tuple(values[i]) for i in np.flatnonzero(mask)} == {
        tuple(values[i]) for i in front_trials
    }
    assert len({tuple(values[i]) for i in front_trials}) == len(result.front)
    assert sum(1 + p.ties for p in result.front) == int(mask.sum())
    # each point carries its parameters, rewards and atoms (as detected with those params)
    for point in result.front:
        trial = result.trials[point.trial]
        assert point.params == trial.params
        assert point.rewards == dict(zip(result.reward_names, trial.values))
        assert np.array_equal(point.atoms[0], trial.atoms[0])
    summary = result.summary()
    assert summary["n_trials"] == 14
    assert len(summary["front"]) == len(result.front)


def test_plain_blob_log_trials_walk_the_same_path(runs):
    ours, baseline = runs["scale_space"], runs["blob_log"]
    assert baseline.detector == "blob_log"
    assert [t.params for t in ours.trials] == [t.params for t in baseline.trials]
    assert np.array_equal(ours.values, baseline.values)
    for a, b in zip(ours.trials, baseline.trials):
        assert np.array_equal(a.atoms[0], b.atoms[0])
    assert ours.timings["fit"] > 0
    assert ours.timings["acquisition"] > 0


def test_rewards_are_evaluated_jointly_over_images(noisy_graphene):
    image = noisy_graphene[0]
    half = image[:, :64]
    opt = LoGStarOptimizer([image, half], "graphene", 0.01)
    p = LoGParameters(2.5, 3.5, 0.05, 0.5, sigma_step=opt.space.sigma_step)
    trial = opt.evaluate(p)
    single = [LoGStarOptimizer([im], "graphene", 0.01).evaluate(p).values for im in (image, half)]
    assert trial.values == pytest.approx(np.mean(single, axis=0))
    assert [len(a) for a in trial.atoms] == [
        len(LoGStarOptimizer([im], "graphene", 0.01).evaluate(p).atoms[0]) for im in (image, half)
    ]
    assert opt.evaluate(p) is not trial
    assert np.array_equal(opt.evaluate(p).values, trial.values)


def test_initial_params_are_tried_first_and_a_user_reward_is_minimised(noisy_graphene):
    image = noisy_graphene[0]
    start = LoGParameters(2.0, 3.0, 0.04, 0.5, sigma_step=0.5)

    def many_atoms(atoms, image, context):
        return 1.0 / (1.0 + len(atoms))

    result = optimize_log(
        [image],
        "graphene",
        0.01,
        budget=6,
        n_initial=6,
        rewards=[many_atoms],
        initial_params=[start],
        num_threads=None,
    )
    assert result.trials[0].params == start
    assert result.trials[0].stage == "initial"
    assert result.reward_names == ["many_atoms"]
    assert len(result.front) == 1
    best = min(result.trials, key=lambda t: t.values[0])
    assert result.front[0].params == best.params


def test_bad_arguments_are_refused(noisy_graphene):
    image = noisy_graphene[0]
    with pytest.raises(ValueError, match="at least one"):
        LoGStarOptimizer([], "graphene", 0.01)
    with pytest.raises(ValueError, match="detector"):
        LoGStarOptimizer([image], "graphene", 0.01, detector="fast")
    with pytest.raises(ValueError, match="callable"):
        LoGStarOptimizer([image], "graphene", 0.01, rewards=[3])
    with pytest.raises(ValueError, match="pixel_size_nm"):
        LoGStarOptimizer([image], "graphene", -1.0)
    opt = LoGStarOptimizer([image], "graphene", 0.01)
    with pytest.raises(ValueError, match="budget"):
        opt.run(budget=0)
    with pytest.raises(ValueError, match="sigma_step"):
        opt.evaluate(LoGParameters(1.0, 2.0, 0.1, sigma_step=0.125))


def test_search_space_scales_with_the_lattice_and_round_trips():
    small = SearchSpace.for_spacing(5.0)
    large = SearchSpace.for_spacing(20.0)
    assert small.sigma_step < large.sigma_step
    assert small.min_sigma[1] < large.min_sigma[1]
    with_filter = SearchSpace.for_spacing(14.0, prefilter="median")
    assert with_filter.names[-1] == "prefilter_size"
    p = with_filter.to_parameters([2.1, 1.0, -1.3, 0.4, 2.2])
    assert p.prefilter == "median"
    assert p.prefilter_size == 3.0
    assert with_filter.to_parameters(with_filter.to_point(p)) == p
    with pytest.raises(ValueError, match="expected 5"):
        with_filter.to_parameters([1.0, 2.0])


def test_short_optimisation_finds_most_real_graphene_atoms(real_graphene):
    image, reference, pixel_nm = real_graphene
    result = optimize_log([image], "graphene", pixel_nm, budget=16, n_initial=12, seed=0)
    choice = select_point(result.front, weight=0.5)
    atoms = result.front[choice.index].atoms[0]
    ctx = RewardContext.build(graphene(), pixel_nm, image.shape)
    score = match_atoms(atoms[:, :2], reference, ctx.match_distance_px)
    # the reference omits atoms cut by the image edge, which LoG finds: F1 stays below 1
    assert score.f1 > 0.85, score.as_dict()
    assert score.recall > 0.9, score.as_dict()


def test_bo_rounds_never_compile_botorchs_cpp_kernel(tmp_path):
    """A LoG* run must not JIT-compile botorch's fused kernel: that stalled experiments for
    minutes and, with a stale lock file, hung every later process. Run in a fresh process
    whose torch extension cache is empty; it must stay empty."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    cache = tmp_path / "torch_extensions"
    code = (
        "import numpy as np\n"
        "from agents.logstar.optimizer import LoGStarOptimizer\n"
        "rng = np.random.default_rng(0)\n"
        "image = rng.random((48, 48))\n"
        "r = LoGStarOptimizer([image], 'graphene', 0.01).run(budget=8, n_initial=4,"
        " batch_size=2, seed=0)\n"
        "assert any(t.stage == 'bo' for t in r.trials)\n"
        "import botorch.acquisition.multi_objective.logei as L\n"
        "print('fused', L._C is not None)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPHYD_STEM_FUSED_LOGEHVI"}
    env["TORCH_EXTENSIONS_DIR"] = str(cache)
    root = Path(__file__).resolve().parents[3]
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "fused False" in out.stdout
    assert not cache.exists() or not any(cache.iterdir())
