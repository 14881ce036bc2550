"""Independent LoG* optimisations on a real Dask LocalCluster: the same fronts as here."""

from __future__ import annotations

import numpy as np

from agents.logstar import optimize_each, optimize_windows
from agents.logstar.lattice import graphene

from .conftest import render_lattice


def _fronts(results):
    return [
        [(p.params, tuple(sorted(p.rewards.items()))) for p in result.front] for result in results
    ]


def test_each_image_optimised_on_the_cluster_gives_the_fronts_made_here(dask_client):
    images = [
        render_lattice(graphene(), shape=(80, 80), noise=n, seed=s)[0]
        for s, n in ((1, 0.02), (2, 0.2))
    ]
    # a Sobol start and one round of Bayesian optimisation (GP fit, EHVI) per image
    options = dict(budget=10, n_initial=6, batch_size=4, seed=3)
    here = optimize_each(images, "graphene", 0.01, **options)
    there = optimize_each(images, "graphene", 0.01, compute=dask_client, **options)
    assert len(there) == 2
    assert _fronts(there) == _fronts(here)
    for a, b in zip(here, there):
        assert [t.stage for t in a.trials].count("bo") == 4
        assert np.array_equal(a.values, b.values)


def test_sliding_windows_on_the_cluster_map_the_same_optima(dask_client):
    image, _, _ = render_lattice(graphene(), shape=(128, 128), noise=0.05, seed=4)
    options = dict(window=64, stride=64, budget=8, n_initial=8, seed=0)
    here = optimize_windows(image, "graphene", 0.01, **options)
    there = optimize_windows(image, "graphene", 0.01, compute=dask_client, **options)
    assert len(there.windows) == 4
    assert there.params == here.params
    assert there.rewards == here.rewards
