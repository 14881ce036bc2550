"""Feature-space discovery as a forward plan: the latent map in its own stream, EELS at the
cluster representatives, forensics and counterfactuals, the figure, and Figure 4d for any run."""

import numpy as np
import pytest

from agents.runs import unpack_run
from ophyd_stem.app.views.decor import figure_problems
from ophyd_stem.sim import twin_microscope
from plans import adaptive_eels, latent_eels

FAST = {"n_clusters": 3, "epochs": 3, "seed": 1}


@pytest.fixture
def nanoparticles(RE, tmp_path):
    microscope = twin_microscope("nanoparticles", mode="local", assets_dir=tmp_path, seed=1)
    yield microscope
    microscope.sim_bridge.close()


def test_latent_plan_records_its_map_replays_and_draws(RE, nanoparticles):
    import io

    from matplotlib.figure import Figure

    from ophyd_stem.app.analysis.counterfactual import counterfactual
    from ophyd_stem.app.analysis.forensics import forensics
    from ophyd_stem.app.analysis.latent import recorded_latent_map
    from ophyd_stem.app.progress import RunProgress
    from ophyd_stem.app.views import draw

    bar = io.StringIO()
    RE.subscribe(RunProgress(file=bar))
    RE(latent_eels(nanoparticles.scan, nanoparticles.eels_points, agent_kwargs=FAST, n_eels=5,
                   scalarizer="band:20:30"))  # fmt: skip
    # the progress bar counts the spectra, not the latent map's event: 5 of 5, never 6
    drawn = bar.getvalue().replace("\n", "\r").strip("\r").split("\r")
    assert "5/5" in drawn[-1]
    data = unpack_run(RE.documents)
    latent = recorded_latent_map(data)
    rows, cols, dim = latent["z"].shape
    assert dim == 2
    assert latent["cluster"].shape == (rows, cols)
    assert set(np.unique(latent["cluster"])) == {0, 1, 2}
    assert latent["report"]["config"]["n_clusters"] == 3
    # one representative per cluster first, then novelty; the value of each spectrum recorded
    assert list(data.decisions["source"]) == ["representative"] * 3 + ["novelty"] * 2
    assert sorted(data.decisions["cluster"][:3]) == [0, 1, 2]
    assert np.all(np.isfinite(data.values))
    np.testing.assert_allclose(np.column_stack([data.decisions["x"], data.decisions["y"]]),
                               data.positions)  # fmt: skip
    report = forensics(data)
    assert report.ok, report.text()
    assert [c.what for c in report.checks][:2] == ["latent_map", "points"]
    other = counterfactual(data, "latent:n_clusters=2", out_dir=None)
    assert other.summary["clusters reached (recorded)"] == 3
    assert counterfactual(data, "random", out_dir=None).chosen.shape == (5, 2)
    fig = Figure(figsize=(19, 4.6))
    drawn = draw(fig, data)
    assert drawn["eels"] == 5
    assert drawn["clusters"] == 3
    assert figure_problems(fig) == []


def test_any_runs_trajectory_in_the_latent_space_of_its_survey(RE, nanoparticles, tmp_path):
    import matplotlib.image as mpimg

    from ophyd_stem.app.analysis.latent import latent_space, trajectory_figure

    RE(adaptive_eels(nanoparticles.scan, nanoparticles.eels_points, "bandit", "band:20:30",
                     agent_kwargs={"n_arms": 3, "seed": 0}, steps=4))  # fmt: skip
    data = unpack_run(RE.documents)
    space = latent_space(data, **FAST)
    assert not space["recorded"]
    assert space["trajectory"].shape == (4, 2)
    assert len(space["z"]) == len(space["cluster"]) > 100
    png = trajectory_figure(data, tmp_path, **FAST)
    assert np.std(mpimg.imread(png)[..., :3]) > 0.05
