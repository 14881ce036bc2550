"""THE LIVE-FIGURE TEST: each live figure rendered from replayed documents, checked drawn.

The view is the same callback live and in replay; here it is fed the documents of real runs
read back from the catalog (``run.documents()``), saves its PNG headless, and the test
checks the image is not blank and that the figure holds the expected number of points.
"""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np

from agents.runs import unpack_run
from ophyd_stem.app.analysis.replay import replay
from ophyd_stem.app.views import LiveView, scalarizer_bands
from ophyd_stem.app.views.decor import figure_problems
from plans import OperatorControl, adaptive_eels

from .conftest import (
    dkl_factory,
    run_until_idle_or_paused,
    stored,
    uid_of,
)


def artist(view, gid):
    """The figure's artists with this gid (scatter: its points)."""
    found = [a for ax in view.figure.axes for a in ax.get_children() if a.get_gid() == gid]
    return found


def points(view, gid) -> int:
    return sum(len(a.get_offsets()) for a in artist(view, gid))


def assert_drawn(png, view=None):
    if view is not None:  # scale bars, colour bars with units, no empty panel
        assert figure_problems(view.figure) == []
    image = mpimg.imread(png)
    assert image.ndim == 3
    assert image.shape[0] > 300
    assert np.std(image[..., :3]) > 0.05  # not a blank canvas


def test_adaptive_figure_from_a_replayed_dkl_run(dkl_run, tmp_path):
    view = LiveView(out_dir=tmp_path, show=False)
    replay(dkl_run.run, [view])
    assert view.last_png is not None
    assert_drawn(view.last_png, view)
    data = unpack_run(dkl_run.run)
    assert points(view, "measured") == len(data.values) == 6
    assert points(view, "next") == 1  # where the agent's acquisition peaks
    assert view.drawn["mean"] == view.drawn["std"] == view.drawn["acquisition"] == 1
    # the spectra of the lowest and highest value and the latest, the band shaded; the
    # learning curve over every measurement
    shown = [a.get_ydata() for a in artist(view, "spectrum")]
    for i in {int(np.argmin(data.values)), int(np.argmax(data.values)), len(data.values) - 1}:
        assert any(np.allclose(y, data.spectra[i]) for y in shown)
    curve = artist(view, "best")[0]
    np.testing.assert_allclose(curve.get_ydata(), np.maximum.accumulate(data.values))
    assert scalarizer_bands("band:20:30") == [(20.0, 30.0)]


def test_adaptive_figure_follows_the_operator_live_and_in_replay(
    RE, nanoparticles, tmp_path, catalog_env
):
    from agents.scalarizers import get_scalarizer

    live = LiveView(out_dir=tmp_path / "live", show=False)
    RE.subscribe(live)
    control = OperatorControl(mode="approve", operator="jane", notify=None)
    plan = adaptive_eels(
        nanoparticles.scan,
        nanoparticles.eels_points,
        dkl_factory([]),
        get_scalarizer("band:20:30"),
        steps=4,
        maps_every=2,
        control=control,
    )
    run_until_idle_or_paused(RE, plan)
    for _ in range(4):
        # while paused, the live figure shows the pending point as the next one
        assert live.drawn.get("next") == len(control.pending) == 1
        if len(live.drawn) and live.drawn.get("measured", 0) == 1:
            control.add(20.0, 20.0)
        control.approve()
        run_until_idle_or_paused(RE.resume)
    assert RE.state == "idle"
    assert_drawn(live.last_png, live)
    assert points(live, "measured") + points(live, "operator") == 5
    assert points(live, "operator") == 1
    # the spectra were aligned on their zero-loss peak (low-loss): that figure too, live
    assert live.last_zero_loss_png.exists()
    assert figure_problems(live.zero_loss_figure) == []

    replayed = LiveView(out_dir=tmp_path / "replayed", show=False)
    replay(stored(catalog_env, uid_of(RE.documents)), [replayed])
    assert_drawn(replayed.last_png, replayed)
    assert replayed.drawn == live.drawn


def test_edge_figure_from_a_replayed_run(edge_run, tmp_path):
    view = LiveView(out_dir=tmp_path, show=False)
    replay(edge_run.run, [view])
    assert_drawn(view.last_png, view)
    data = unpack_run(edge_run.run)
    assert points(view, "measured") == len(data.edge_points) > 0
    assert view.drawn["edge_map"] == 1
    assert view.drawn["spectrum"] >= 2  # the extremes of the contrast along the edges
    assert "mean" not in view.drawn  # no empty model panels for an edge run


def test_logstar_figure_from_a_replayed_run(logstar_run, tmp_path):
    data = unpack_run(logstar_run.run)
    view = LiveView(out_dir=tmp_path, show=False)
    replay(logstar_run.run, [view])
    assert_drawn(view.last_png, view)
    front = [p for p in data.front if p["image"] == 0]
    assert points(view, "chosen") == 1
    assert len(artist(view, "front")[0].get_xdata()) == len(front) == logstar_run.front_size
    assert points(view, "atoms") == len(data.atoms["x"]) > 0
    assert points(view, "eels") == 2


def test_dcnn_figure_from_recorded_documents(RE, catalog_env, tmp_path):
    """The ensemble workflow's figure, from a run with its streams (survey, maps, atoms with
    uncertainty, EELS); the values come from a stand-in for the trained ensemble."""
    import bluesky.preprocessors as bpp

    from ophyd_stem import Record, Table
    from plans.stubs import acquire_spectra_at_points, read_survey_image, record, record_table

    from .conftest import microscope_for

    microscope = microscope_for(RE, "graphene", catalog_env.settings.assets_dir, seed=1)
    rng = np.random.default_rng(0)
    xy = rng.uniform(5, 58, size=(25, 2))

    @bpp.stage_decorator([microscope.scan])
    @bpp.run_decorator(md={"plan_name": "dcnn", "plan_args": {"signal": "HAADF"}})
    def plan():
        yield from read_survey_image(microscope.scan)
        yield from record(
            Record("dcnn_maps"),
            "dcnn_maps",
            image=0,
            mean=rng.random((64, 64)).astype(np.float32),
            variance=rng.random((64, 64)).astype(np.float32),
        )
        yield from record_table(
            Table("atoms"),
            image=np.zeros(25, int),
            x=xy[:, 0],
            y=xy[:, 1],
            uncertainty=rng.random(25),
        )
        yield from acquire_spectra_at_points(microscope.eels_points, xy[:3])

    try:
        RE(plan())
    finally:
        microscope.sim_bridge.close()
    view = LiveView(out_dir=tmp_path, show=False)
    replay(stored(catalog_env, uid_of(RE.documents)), [view])
    assert_drawn(view.last_png, view)
    assert points(view, "atoms") == 25
    assert points(view, "eels") == 3
    assert view.drawn["mean"] == view.drawn["variance"] == 1
