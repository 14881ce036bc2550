"""Fixtures of the twin tests: small samples (fast to build), seeded."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from dm_bridge.backends.twin import TwinBackend

#: small sample areas: building a 20 nm graphene sheet costs ~0.5 s, a 6 nm one ~0.05 s
SMALL = {
    "graphene": {"size": 6.0},
    "srtio3": {"size": 6.0},
    "nanowire": {},
    "nanoparticles": {"size": 400.0, "n_gold": 10, "n_silver": 3},
}


@pytest.fixture
def make_twin() -> Callable[..., TwinBackend]:
    """``make_twin(sample, seed=0, **options)``: a twin on a small sample area."""

    def make(
        sample: str, seed: int = 0, sample_parameters: Any = None, **options: Any
    ) -> TwinBackend:
        params = dict(SMALL[sample])
        params.update(sample_parameters or {})
        return TwinBackend(sample, seed=seed, sample_parameters=params, **options)

    return make
