"""LoGStarAgent: the operator's choice is recorded and applied; suggest() aims at the chosen
class in (x = column, y = row); report() is small and JSON-able; import stays torch-free."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial import cKDTree

from agents.base import Agent
from agents.logstar.lattice import graphene
from agents.logstar.scalespace import ImageScaleSpaces, prepare_image

from .conftest import render_lattice

PIXEL_NM = 0.01


@pytest.fixture(scope="module")
def images():
    first = render_lattice(
        graphene(),
        shape=(128, 128),
        dopant_fraction=0.06,
        dopant_amplitude=2.5,
        noise=0.12,
        seed=21,
    )
    second = render_lattice(
        graphene(),
        shape=(128, 128),
        dopant_fraction=0.06,
        dopant_amplitude=2.5,
        noise=0.12,
        seed=22,
        rotation_deg=-4.0,
    )
    return first, second


@pytest.fixture(scope="module")
def agent(images):
    from agents.logstar import LoGStarAgent

    a = LoGStarAgent("graphene", budget=14, n_initial=10, batch_size=4, seed=1)
    summary = a.observe(images[0][0], pixel_size_nm=PIXEL_NM)
    assert summary["optimised"] is True
    return a


def test_agent_is_an_agent_and_records_its_automatic_choice(agent):
    assert isinstance(agent, Agent)
    assert agent.optimisations == 1
    assert len(agent.front) >= 1
    first = agent.choices[0]
    assert (first["chooser"], first["method"]) == ("agent", "weight")
    assert first["weights"] == {"quality_count": 0.5, "error_rate": 0.5}
    assert agent.params == agent.front[agent.choice.index].params


def test_operator_choice_by_index_and_weight_is_recorded_and_applied(agent, images):
    n = len(agent.front)
    point = agent.select(index=n - 1, chooser="jane")
    assert agent.params == point.params
    assert np.array_equal(agent.atoms, point.atoms[0].astype(float))
    rep = agent.report()
    assert rep["chosen"]["index"] == n - 1
    assert (rep["chosen"]["chooser"], rep["chosen"]["method"]) == ("jane", "index")
    assert rep["chosen"]["params"] == point.params.as_dict()
    agent.select(weight=1.0, chooser="bob")
    rep = agent.report()
    assert (rep["chosen"]["chooser"], rep["chosen"]["method"]) == ("bob", "weight")
    assert rep["chosen"]["weights"]["quality_count"] == 1.0
    best_qc = min(range(n), key=lambda i: agent.front[i].rewards["quality_count"])
    assert rep["chosen"]["index"] == best_qc
    assert [c["chooser"] for c in rep["choices"]][-2:] == ["jane", "bob"]
    # small and JSON-able: no atom positions, no arrays
    text = json.dumps(rep)
    assert len(text) < 20_000
    assert json.loads(text)["front"][0]["n_atoms"] == [len(agent.front[0].atoms[0])]


def test_chosen_parameters_apply_to_the_next_image_without_optimising(agent, images):
    second = images[1][0]
    before = agent.optimisations
    found = agent.find_atoms(second)
    assert agent.optimisations == before
    assert agent.images_seen == 1
    expected = ImageScaleSpaces(prepare_image(second), agent.params.sigma_step).detect(agent.params)
    assert np.array_equal(found, expected)
    summary = agent.observe(second, pixel_size_nm=PIXEL_NM)
    assert summary == {
        "image": 2,
        "optimised": False,
        "n_atoms": len(expected),
        "clusters": agent.clusters.counts.tolist(),
    }
    assert np.array_equal(agent.atoms, expected)
    table = agent.atoms_table()
    assert set(table) == {"row", "col", "sigma", "cluster"}
    assert np.array_equal(table["col"], expected[:, 1])
    assert np.array_equal(table["cluster"], agent.clusters.labels)
    rewards = agent.rewards_of(second)
    assert set(rewards) == {"quality_count", "error_rate"}


def test_suggest_returns_the_brightest_class_as_x_column_y_row(agent, images):
    image, truth, kinds = images[1]
    agent.observe(image, pixel_size_nm=PIXEL_NM)
    bright = agent.clusters.brightest
    n_bright = int(np.sum(agent.clusters.labels == bright))
    assert n_bright >= 1
    suggestions = agent.suggest(n_bright + 3)
    assert len(suggestions) == n_bright  # the class runs out; no other atoms are offered
    dopants = truth[kinds == 1]  # (row, col)
    for s in suggestions:
        assert s["cluster"] == bright
        i = s["atom"]
        assert (s["x"], s["y"]) == (agent.atoms[i, 1], agent.atoms[i, 0])
        # each suggestion lies on a true dopant: compare (y, x) with (row, col)
        d, _ = cKDTree(dopants).query([s["y"], s["x"]])
        assert d < 3.0
    assert [s["intensity"] for s in suggestions] == sorted(
        (s["intensity"] for s in suggestions), reverse=True
    )
    assert agent.suggest(1) == []  # each atom once per image
    assert len(agent.suggest(2, target="all")) == 2
    assert agent.report()["suggested"] == n_bright + 2


def test_windows_mode_is_recorded(agent, images):
    image = images[0][0]
    wmap = agent.optimize_windows(image, window=96, stride=32, mode="local", budget=6)
    assert agent.window_mode == "local"
    assert len(wmap.windows) == 4
    rep = agent.report()
    assert rep["chosen"]["method"] == "windows:local"
    assert rep["windows"]["grid_shape"] == [2, 2]
    json.dumps(rep)
    assert len(agent.atoms) > 0
    # the figure names the windows' parameters, no front point is ringed
    fig = agent.plot_selection()
    assert fig.axes[1].get_title().startswith(f"chosen parameters: {len(agent.atoms)} atoms")


def test_figures_render(agent):
    from matplotlib.figure import Figure

    agent.select(index=0, chooser="jane")
    fig = agent.plot_selection()
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "chosen #0" in labels
    assert fig.axes[1].get_title().startswith(f"point #0: {len(agent.atoms)} atoms")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(agent.plot_clusters().axes) == 2 + 2 * agent.clusters.n_clusters


def test_errors_are_clear():
    from agents.logstar import LoGStarAgent

    a = LoGStarAgent("graphene")
    with pytest.raises(ValueError, match="observe"):
        a.suggest(1)
    with pytest.raises(ValueError, match="front"):
        a.select(index=0)
    with pytest.raises(ValueError, match="pixel_size_nm"):
        a.observe(np.zeros((32, 32)))
    with pytest.raises(ValueError, match="no parameters"):
        a.observe(np.zeros((32, 32)), pixel_size_nm=0.01, optimize=False)
    with pytest.raises(ValueError, match="target"):
        LoGStarAgent("graphene", target="dimmest")
    with pytest.raises(ValueError, match="budget"):
        LoGStarAgent("graphene", budget=0)
    with pytest.raises(ValueError, match="pixel_size_nm"):
        LoGStarAgent("graphene", pixel_size_nm=float("nan"))


def test_importing_the_package_does_not_import_torch():
    code = (
        "import sys, agents, agents.logstar, agents.logstar.pareto, agents.logstar.windows;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
