"""Lattice densities and spacings, and the QC/ER rewards on hand-built atom sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.logstar.lattice import Lattice, graphene, srtio3
from agents.logstar.library import get_lattice
from agents.logstar.rewards import (
    ErrorRate,
    QualityCount,
    RewardContext,
    default_rewards,
    evaluate_rewards,
    reward_name,
)

A_STO = 0.3905


def test_graphene_density_and_spacing():
    lat = graphene()
    # two atoms per hexagonal cell of area (sqrt(3)/2) a^2
    assert lat.density_per_nm2 == pytest.approx(2 / (math.sqrt(3) / 2 * 0.246**2), rel=1e-12)
    assert lat.density_per_nm2 == pytest.approx(38.17, abs=0.01)
    assert lat.nn_distance_nm == pytest.approx(0.246 / math.sqrt(3), rel=1e-12)
    # a 2 nm x 2 nm field (256 px of 0.0078125 nm) should show 152.7 atoms
    assert lat.expected_count((256, 256), 0.0078125) == pytest.approx(4.0 * 38.17, rel=1e-3)
    assert lat.nn_distance_px(0.01) == pytest.approx(14.20, abs=0.01)


@pytest.mark.parametrize(
    ("columns", "per_cell", "nn"),
    [
        (("Sr", "TiO"), 2, A_STO / math.sqrt(2)),  # HAADF: Sr and Ti-O columns
        (("Sr",), 1, A_STO),
        (("TiO",), 1, A_STO),
        (("Sr", "TiO", "O"), 4, A_STO / 2),  # every column, O included
        (("O",), 2, A_STO / math.sqrt(2)),
    ],
)
def test_srtio3_columns_the_user_counts(columns, per_cell, nn):
    lat = srtio3(columns)
    assert lat.density_per_nm2 == pytest.approx(per_cell / A_STO**2, rel=1e-12)
    assert lat.nn_distance_nm == pytest.approx(nn, rel=1e-12)
    assert set(lat.labels) == set(columns)


def test_user_unit_cell_and_round_trip():
    rect = Lattice.from_unit_cell("rect", (0.3, 0.5), 90.0, [(0, 0), (0.5, 0.5)], ["A", "B"])
    assert rect.density_per_nm2 == pytest.approx(2 / 0.15)
    assert rect.nn_distance_nm == pytest.approx(math.hypot(0.15, 0.25))  # centre to corner
    assert Lattice.from_dict(rect.as_dict()) == rect
    assert get_lattice(rect.as_dict()).nn_distance_nm == rect.nn_distance_nm
    assert get_lattice("SrTiO3:Sr,O").labels == ("Sr", "O", "O")
    assert get_lattice("graphene") == graphene()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: srtio3(("Ba",)), "columns"),
        (lambda: Lattice("x", ((1, 0), (2, 0)), ((0, 0),)), "parallel"),
        (lambda: Lattice("x", ((1, 0), (0, 1)), ((0, 0), (1, 1))), "same spot"),
        (lambda: Lattice.from_unit_cell("x", (0.3, -1), 90, [(0, 0)]), "lengths"),
        (lambda: graphene().expected_count((10, 10), 0.0), "pixel_size_nm"),
        (lambda: graphene().nn_distance_px("wide"), "number"),
        (lambda: get_lattice("diamond"), "unknown lattice"),
    ],
)
def test_bad_lattices_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.fixture
def square_context():
    # a square lattice of 1 nm, pixels of 0.1 nm, a 100 x 100 px image: 100 atoms expected,
    # neighbours 10 px apart, ER counts atoms closer than 6 px to another; the whole frame
    # is judged (border=0, the paper's definition)
    lat = Lattice.from_unit_cell("square", (1.0, 1.0), 90.0, [(0.0, 0.0)])
    return RewardContext.build(
        lat, pixel_size_nm=0.1, shape=(100, 100), min_separation=0.6, border=0.0
    )


def grid_atoms(n_side: int, spacing: float = 10.0) -> np.ndarray:
    r, c = np.meshgrid(np.arange(n_side) * spacing, np.arange(n_side) * spacing, indexing="ij")
    return np.column_stack([r.ravel(), c.ravel(), np.full(r.size, 2.0)])


def test_context_numbers(square_context):
    assert square_context.expected_count == pytest.approx(100.0)
    assert square_context.nn_distance_px == pytest.approx(10.0)
    assert square_context.min_separation_px == pytest.approx(6.0)
    assert square_context.match_distance_px == pytest.approx(5.0)


def test_quality_count_exact_values(square_context):
    qc = QualityCount()
    image = np.zeros((100, 100))
    assert qc(grid_atoms(10), image, square_context) == pytest.approx(0.0, abs=1e-12)
    assert qc(grid_atoms(9), image, square_context) == pytest.approx(0.19)  # 81 found
    assert qc(grid_atoms(11, 9.0), image, square_context) == pytest.approx(0.21)  # 121 found
    assert qc(np.empty((0, 3)), image, square_context) == 1.0


def test_error_rate_counts_atoms_too_close(square_context):
    er = ErrorRate()
    image = np.zeros((100, 100))
    atoms = grid_atoms(10)
    assert er(atoms, image, square_context) == 0.0
    # a duplicate 2 px from an atom: both atoms of the pair are too close
    dup = np.vstack([atoms, [[2.0, 0.0, 2.0]]])
    assert er(dup, image, square_context) == pytest.approx(2 / 100)
    # a spurious atom on a bond centre (5 px from two atoms): three atoms too close
    bond = np.vstack([atoms, [[45.0, 40.0, 2.0]]])
    assert er(bond, image, square_context) == pytest.approx(3 / 100)
    # 3.5 px from (50, 40) and 6.5 px from (40, 40): the second counts only at 0.7 * 10 px
    far = np.vstack([atoms, [[46.5, 40.0, 2.0]]])
    assert er(far, image, square_context) == pytest.approx(2 / 100)  # 3.5 px to (50, 40)
    assert ErrorRate(min_separation=0.7)(far, image, square_context) == pytest.approx(3 / 100)
    assert er(np.empty((0, 3)), image, square_context) == 0.0


def test_user_rewards_are_averaged_over_images(square_context):
    def mean_sigma(atoms, image, context):
        return float(atoms[:, 2].mean())

    rewards = [*default_rewards(), mean_sigma]
    assert [reward_name(r, i) for i, r in enumerate(rewards)] == [
        "quality_count",
        "error_rate",
        "mean_sigma",
    ]
    a, b = grid_atoms(10), grid_atoms(9)
    b[:, 2] = 4.0
    image = np.zeros((100, 100))
    values = evaluate_rewards(rewards, [a, b], [image, image], [square_context] * 2)
    assert values == pytest.approx([(0.0 + 0.19) / 2, 0.0, 3.0])


def test_a_reward_that_returns_garbage_is_named(square_context):
    def broken(atoms, image, context):
        return "many"

    with pytest.raises(ValueError, match="broken"):
        evaluate_rewards([broken], [grid_atoms(3)], [np.zeros((100, 100))], [square_context])
    with pytest.raises(ValueError, match="min_separation"):
        ErrorRate(min_separation=0.0)


def test_rewards_ignore_the_edge_band_by_default():
    lat = Lattice.from_unit_cell("square", (1.0, 1.0), 90.0, [(0.0, 0.0)])
    # default border: half the nearest-neighbour distance, 5 px: the interior is 90 x 90 px
    ctx = RewardContext.build(lat, pixel_size_nm=0.1, shape=(100, 100))
    assert ctx.border_px == pytest.approx(5.0)
    assert ctx.expected_count == pytest.approx(81.0)
    atoms = grid_atoms(10) + np.array([5.0, 5.0, 0.0])  # rows/cols 5, 15, ..., 95
    inside = ctx.interior(atoms)
    assert int(inside.sum()) == 81  # 95 lies in the band (>= 94.5)
    image = np.zeros((100, 100))
    assert QualityCount()(atoms, image, ctx) == pytest.approx(0.0, abs=1e-12)
    # a peak on the edge row from a column outside the frame changes neither reward...
    edge = np.vstack([atoms, [[0.0, 49.0, 2.0]], [[0.0, 51.0, 2.0]]])  # 6.4 px from atoms
    assert QualityCount()(edge, image, ctx) == pytest.approx(0.0, abs=1e-12)
    assert ErrorRate()(edge, image, ctx) == 0.0
    # ...but dropping an interior atom does
    assert QualityCount()(atoms[1:], image, ctx) == pytest.approx(1 / 81)
    # an interior atom crowded by an edge peak counts for ER (it is judged, its partner not)
    crowd = np.vstack([atoms, [[8.0, 5.0, 2.0]]])
    assert ErrorRate()(crowd, image, ctx) == pytest.approx(2 / 81)
    with pytest.raises(ValueError, match="border"):
        RewardContext.build(lat, 0.1, (100, 100), border=-1)
