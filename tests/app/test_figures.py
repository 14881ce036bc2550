"""The rules every figure keeps, on runs made up to the point (fast, no catalog):
a scale bar in nm on every image, a colour bar with units beside every map, no empty panel,
example spectra at the extremes of the contrast (not at fixed indices).

The figures of real runs (replayed from the catalog) are held to the same rules in
tests/replay_hitl/test_views.py and tests/app/test_command.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.figure import Figure

from agents.runs import RunData, StreamData
from ophyd_stem.app.views import draw
from ophyd_stem.app.views.decor import figure_problems, nice_length
from ophyd_stem.app.views.overview import overview
from ophyd_stem.app.views.spectra import example_indices, relative_thickness

ENERGY = np.linspace(-5, 60, 651)


def spectrum(thickness: float, peak: float = 16.0) -> np.ndarray:
    """A zero-loss peak and a plasmon whose share grows with t/λ (Poisson statistics)."""
    zlp = np.exp(-0.5 * (ENERGY / 0.4) ** 2)
    plasmon = np.exp(-0.5 * ((ENERGY - peak) / 3.0) ** 2) * (ENERGY > 1)
    plasmon *= zlp.sum() / plasmon.sum() * (np.exp(thickness) - 1)
    return 1e4 * (zlp + plasmon)


def run(plan: str, **fields) -> RunData:
    data = RunData(
        uid="0123456789abcdef", start={"plan_name": plan, "scan_id": 7}, stop={}, streams={}
    )
    image = np.random.default_rng(0).random((64, 64))
    data.survey_image, data.survey_images, data.pixel_size = image, [image], 1.5625
    for key, value in fields.items():
        setattr(data, key, value)
    return data


def grid_run() -> tuple[RunData, np.ndarray]:
    ys, xs = np.mgrid[2:64:4, 2:64:4]
    positions = np.column_stack([xs.ravel(), ys.ravel()]).astype(float)
    # vacuum on the left, a support in the middle, a thick particle on the right
    thickness = np.select([positions[:, 0] < 20, positions[:, 0] < 44], [0.0, 0.35], 0.8)
    spectra = np.array([spectrum(t) for t in thickness])
    return run(
        "spectrum_image", positions=positions, spectra=spectra, energy_axis=ENERGY
    ), thickness


def problems_of(draw_on, data) -> tuple[list[str], Figure]:
    fig = Figure()
    draw_on(fig, data)
    fig.canvas.draw()  # layout and colour bars as saved
    return figure_problems(fig), fig


def test_scale_bar_lengths_are_round_and_about_a_fifth_of_the_field():
    assert nice_length(200.0) == 20.0  # the nanowire's 200 nm field
    assert nice_length(2.0) == 0.2  # graphene's 2 nm: a 2 Å bar
    assert nice_length(300.0) == 50.0
    for field in (0.7, 3.3, 45.0, 1000.0):
        assert 0.1 * field <= nice_length(field) <= 0.2 * field


def test_relative_thickness_recovers_t_over_lambda():
    spectra = np.array([spectrum(t) for t in (0.0, 0.35, 0.8)])
    np.testing.assert_allclose(relative_thickness(ENERGY, spectra), [0.0, 0.35, 0.8], atol=0.02)
    assert relative_thickness(np.linspace(80, 600, 651), spectra) is None  # no zero loss


def test_relative_thickness_of_a_jittered_walking_zero_loss_peak():
    """0.05 eV channels, the peak moved by the spectrometer's jitter and walk (as `run zlp`):
    vacuum reads t/λ 0 and a particle its thickness, not the window's edge (the window
    ended at the mean's raw maximum, where the smoothed mean still rose: vacuum read 3.8)."""
    energy = np.arange(-5, 60, 0.05)
    rng = np.random.default_rng(4)
    spectra = []
    for t in (0.0, 0.0, 0.0, 0.5):
        for shift in rng.normal(0, 0.1, 8) + np.linspace(0, 0.15, 8):
            zlp = np.exp(-0.5 * ((energy - shift) / 0.15) ** 2)
            plasmon = np.exp(-0.5 * ((energy - 16) / 3.0) ** 2) * (energy > 1)
            plasmon *= zlp.sum() / plasmon.sum() * (np.exp(t) - 1)
            spectra.append(1e4 * (zlp + plasmon))
    thickness = relative_thickness(energy, np.array(spectra))
    np.testing.assert_allclose(thickness[:24], 0.0, atol=0.02)
    np.testing.assert_allclose(thickness[24:], 0.5, atol=0.03)


def test_examples_span_the_contrast_one_per_level():
    values = np.r_[np.zeros(700), np.full(200, 0.35), np.full(124, 0.8)]
    values += np.random.default_rng(1).normal(0, 0.01, len(values))
    chosen = values[example_indices(values, k=3)]
    assert chosen[0] == values.min()
    assert chosen[-1] == values.max()
    assert abs(chosen[1] - 0.35) < 0.05  # the support, not a second vacuum spectrum


def test_grid_overview_keeps_every_rule_and_shows_the_extremes():
    data, _thickness = grid_run()
    problems, fig = problems_of(lambda fig, d: overview(fig, d, (16, 16)), data)
    assert problems == []
    titles = [ax.get_title() for ax in fig.axes]
    assert any("16 x 16" in t for t in titles)  # the map of the grid
    spectra_ax = next(ax for ax in fig.axes if ax.get_title().startswith("EELS"))
    lines = [line for line in spectra_ax.lines if line.get_gid() == "spectrum"]
    shown = sorted(
        float(relative_thickness(ENERGY, line.get_ydata()[None, :])[0]) for line in lines
    )
    np.testing.assert_allclose(shown, [0.0, 0.35, 0.8], atol=0.02)
    # 256 positions: the grid is drawn as its outline, not as 256 markers over the specimen
    survey = next(ax for ax in fig.axes if "survey" in ax.get_title())
    assert not [c for c in survey.collections if c.get_gid() == "measured"]
    assert [p for p in survey.patches if p.get_gid() == "grid"]


def test_the_example_circles_stand_out_from_the_measured_positions():
    """The measured positions had the colour of the third example (orange): a DKL run's
    best spectrum, measured among a crowd of points, had its circle hidden in them."""
    from matplotlib.colors import same_color

    from ophyd_stem.app.views.spectra import EXAMPLE_COLOURS

    data, _ = grid_run()
    keep = np.arange(0, 256, 9)  # few enough to be drawn as points
    data.start["plan_name"] = "adaptive_eels"
    data.positions, data.spectra = data.positions[keep], data.spectra[keep]
    problems, fig = problems_of(lambda fig, d: overview(fig, d, None), data)
    assert problems == []
    survey = next(ax for ax in fig.axes if "survey" in ax.get_title())
    (measured,) = [c for c in survey.collections if c.get_gid() == "measured"]
    circles = [c for c in survey.collections if c.get_gid() == "example"]
    assert len(circles) == 3
    for colour in EXAMPLE_COLOURS:
        assert not same_color(measured.get_facecolor()[0], colour), colour
    assert all(c.get_zorder() > measured.get_zorder() for c in circles)


def test_a_survey_alone_is_one_panel_with_its_scale_bar():
    problems, fig = problems_of(lambda fig, d: overview(fig, d), run("survey"))
    assert problems == []
    assert len(fig.axes) == 1
    # the HTML page's caption says what the figure holds: no spectra, no talk of them
    from ophyd_stem.app.analysis.report import overview_caption

    data = run("survey")
    assert overview_caption(data).startswith("Survey: the image as acquired")
    assert "spectra" in overview_caption(grid_run()[0])


def test_edge_figure_has_no_empty_panels():
    data, _ = grid_run()
    keep = np.arange(0, 256, 9)
    data.start["plan_name"] = "edge_eels"
    data.positions, data.spectra = data.positions[keep], data.spectra[keep]
    data.edge_points = data.positions
    data.edge_map = np.zeros((64, 64))
    data.edge_map[30:34] = 1
    problems, fig = problems_of(draw, data)
    assert problems == []
    titles = [ax.get_title() for ax in fig.axes if not hasattr(ax, "_colorbar")]
    assert len(titles) == 3  # survey, edge map, spectra: no "no model yet" panels
    assert not any("no model" in t for t in titles)
    data.edge_report = {"method": "canny"}
    _, fig = problems_of(draw, data)
    assert "edge map (Canny)" in [ax.get_title() for ax in fig.axes]


def dkl_run(steps: int, with_maps: bool) -> RunData:
    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 63, (steps, 2))
    values = rng.random(steps) * 100
    decisions = {
        "step": np.arange(1, steps + 1),
        "x": xy[:, 0],
        "y": xy[:, 1],
        "value": values,
        "source": ["agent"] * steps,
    }
    grid = np.mgrid[0:64:8, 0:64:8].astype(float)
    maps = (
        [{"step": steps, "mean": rng.random((8, 8)), "std": rng.random((8, 8)),
          "acquisition": rng.random((8, 8)), "x": grid[1] + 4, "y": grid[0] + 4}]
        if with_maps
        else []
    )  # fmt: skip
    data = run(
        "adaptive_eels",
        positions=xy,
        spectra=np.array([spectrum(v / 100) for v in values]),
        energy_axis=ENERGY,
        decisions=decisions,
        maps=maps,
    )
    data.start["plan_args"] = {"scalarizer": "band:20:30", "acquisition": "ei"}
    return data


@pytest.mark.parametrize(
    ("steps", "with_maps", "panels"), [(1, False, 2), (3, False, 3), (9, True, 6)]
)
def test_dkl_figure_shows_panels_only_when_they_hold_something(steps, with_maps, panels):
    problems, fig = problems_of(draw, dkl_run(steps, with_maps))
    assert problems == []
    assert len([ax for ax in fig.axes if not hasattr(ax, "_colorbar")]) == panels
    labels = [ax._colorbar.ax.get_ylabel() for ax in fig.axes if hasattr(ax, "_colorbar")]
    assert "intensity 20-30 eV (counts·eV)" in labels  # the scalarizer, with its unit
    if with_maps:  # the acquisition map is in the value's unit too, said with it
        assert "expected improvement of intensity 20-30 eV (counts·eV)" in labels


def test_the_overviews_example_spectra_carry_their_value_with_its_unit():
    fig = Figure()
    overview(fig, dkl_run(9, False), None)
    legends = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts]
    values = [t for t in legends if t.endswith(" counts·eV")]
    assert len(values) >= 2, legends  # lowest and highest, each with the band's unit


def test_bandit_and_physics_figures_name_their_acquisition():
    data = dkl_run(9, True)
    del data.start["plan_args"]["acquisition"]  # the bandit records a policy, no acquisition
    data.decisions["reports"] = [{"agent": "bandit", "config": {"policy": "thompson"}}] * 9
    problems, fig = problems_of(draw, data)
    assert problems == []
    titles = [ax.get_title() for ax in fig.axes]
    assert "acquisition: thompson, step 9" in titles
    labels = [ax._colorbar.ax.get_ylabel() for ax in fig.axes if hasattr(ax, "_colorbar")]
    assert "Thompson draw of intensity 20-30 eV (counts·eV)" in labels
    # the physics-informed agents record theirs in their configuration
    data.decisions["reports"] = [{"agent": "hypotheses", "config": {"acquisition": "ucb"}}] * 9
    problems, fig = problems_of(draw, data)
    assert "acquisition: ucb, step 9" in [ax.get_title() for ax in fig.axes]


def test_forward_workflow_figures_keep_the_rules():
    rng = np.random.default_rng(3)
    xy = rng.uniform(2, 62, (30, 2))
    atoms = {
        "image": np.zeros(30),
        "x": xy[:, 0],
        "y": xy[:, 1],
        "cluster": (xy[:, 0] > 50).astype(int),
    }
    front = [
        {"image": 0, "point": i, "chosen": i == 1, "parameters": {},
         "quality_count": -i, "error_rate": -2 + i}
        for i in range(3)
    ]  # fmt: skip
    eels = {
        "positions": xy[:2],
        "spectra": np.array([spectrum(0.1), spectrum(0.2)]),
        "energy_axis": ENERGY,
    }
    problems, fig = problems_of(draw, run("logstar", atoms=atoms, front=front, **eels))
    assert problems == []
    assert len([ax for ax in fig.axes if not hasattr(ax, "_colorbar")]) == 3
    # the front's axes say what the rewards measure, not their code names
    assert "QC: |found - expected| / expected atoms" in [ax.get_xlabel() for ax in fig.axes]
    assert "ER: atoms too close to another / expected" in [ax.get_ylabel() for ax in fig.axes]

    atoms["uncertainty"] = rng.random(30)
    columns = {"dcnn_maps-mean": rng.random((1, 64, 64)),
               "dcnn_maps-variance": rng.random((1, 64, 64))}  # fmt: skip
    maps = StreamData("dcnn_maps", columns, np.zeros(1))
    data = run("dcnn", atoms=atoms, streams={"dcnn_maps": maps}, **eels)
    problems, fig = problems_of(draw, data)
    assert problems == []
    assert len([ax for ax in fig.axes if not hasattr(ax, "_colorbar")]) == 4
    labels = [ax._colorbar.ax.get_ylabel() for ax in fig.axes if hasattr(ax, "_colorbar")]
    assert "atom's uncertainty (members' variance)" in labels
    # a calibrated ensemble's atoms carry the probability of being false: said so
    data.dcnn = [{"image": 0, "report": {"uncertainty_method": "calibrated"}}]
    problems, fig = problems_of(draw, data)
    labels = [ax._colorbar.ax.get_ylabel() for ax in fig.axes if hasattr(ax, "_colorbar")]
    assert "atom's uncertainty (probability of being false)" in labels


def test_the_checks_catch_what_they_are_for():
    fig = Figure()
    empty, image, mapped = fig.subplots(1, 3)
    empty.set_title("no model yet")
    image.imshow(np.zeros((4, 4))).set_gid("survey")
    mapped.imshow(np.zeros((4, 4))).set_gid("map:t/λ")
    problems = " ".join(figure_problems(fig))
    assert "'no model yet': empty panel" in problems
    assert "image without a scale bar" in problems
    assert "without a colour bar" in problems


def test_figures_drawn_apart_are_written_and_a_failing_one_raises_here(tmp_path):
    """``ophyd-stem show`` draws the workflow's figures in forked children: each writes its
    file, in the same order of work; a figure that fails in its child is drawn again in
    this process, so its error is the one the user sees."""
    from ophyd_stem.app.analysis.report import _draw

    def write(name):
        return lambda: (tmp_path / name).write_text(name)

    _draw(write("overview"), [write("workflow"), write("zero-loss")], apart=True)
    assert sorted(p.read_text() for p in tmp_path.iterdir()) == [
        "overview", "workflow", "zero-loss"
    ]  # fmt: skip

    def broken():
        raise ValueError("no such panel")

    with pytest.raises(ValueError, match="no such panel"):
        _draw(write("again"), [broken], apart=True)
    assert (tmp_path / "again").read_text() == "again"


def test_a_forked_figure_that_hangs_is_given_up_and_drawn_here(tmp_path, monkeypatch):
    """A child that never finishes (e.g. a lock held at the fork) must not hang ``show``."""
    import os
    import time

    from ophyd_stem.app.analysis import report

    monkeypatch.setattr(report, "CHILD_TIMEOUT", 0.5)
    here = os.getpid()

    def hangs_in_the_child():
        if os.getpid() != here:  # the forked child: it never returns
            time.sleep(3600)
        (tmp_path / "drawn.txt").write_text("ok")

    started = time.monotonic()
    report._draw(lambda: None, [hangs_in_the_child], apart=True)
    assert time.monotonic() - started < 30
    assert (tmp_path / "drawn.txt").read_text() == "ok"  # drawn again in this process


def test_the_zero_loss_summary_says_small_energies_in_mev():
    """A steady spectrometer's 0.4 meV scatter read '0.000 eV rms' beside a figure saying
    0.4 meV; a jittering one stays in eV."""
    from ophyd_stem.app.analysis.corrections import correction_summary

    data = run("spectrum_image")
    zlp = np.random.default_rng(5).normal(0, 4e-4, 64)
    data.zero_loss = {"zlp": zlp, "walk": np.r_[np.full(32, 1e-4), np.full(32, -1e-4)]}
    (line,) = [line for line in correction_summary(data) if "zero loss" in line]
    assert f"peak {1000 * np.std(zlp):.1f} meV rms as measured" in line
    assert "walk +0.1 meV -> -0.1 meV" in line
    data.zero_loss = {"zlp": zlp * 250, "walk": np.array([0.029, 0.141])}
    (line,) = [line for line in correction_summary(data) if "zero loss" in line]
    assert "eV rms as measured, energy-scale walk +0.029 eV -> +0.141 eV" in line
    # a walk that rounds to zero reads +0.0, not -0.0
    data.zero_loss = {"zlp": zlp, "walk": np.array([1e-4, -4e-6])}
    (line,) = [line for line in correction_summary(data) if "zero loss" in line]
    assert "walk +0.1 meV -> +0.0 meV (first -> last batch)" in line
    # one spectrum (LoG*'s EELS at its one dopant) has no scatter: where its peak was
    data.zero_loss = {"zlp": np.array([-1.15e-4]), "walk": np.array([-1.15e-4])}
    (line,) = [line for line in correction_summary(data) if "zero loss" in line]
    assert line.endswith("1 of 1 spectra aligned; peak at -0.1 meV as measured")


def test_the_zero_loss_figure_of_one_spectrum_says_where_its_peak_was():
    """A zero-loss trace of one spectrum read '0.0 meV rms' over an axis of fractional
    spectrum numbers (0.96 ... 1.04); it says where the one peak was, on whole numbers."""
    from ophyd_stem.app.views.corrections import draw_zero_loss

    data = run("logstar", positions=np.array([[30.0, 31.0]]))
    data.spectra = np.array([spectrum(0.01)])
    data.energy_axis = ENERGY
    data.zero_loss = {"zlp": np.array([-1.15e-4]), "walk": np.array([-1.15e-4]),
                      "x": np.array([30.0]), "y": np.array([31.0])}  # fmt: skip
    fig = Figure()
    draw_zero_loss(fig, data)
    fig.canvas.draw()
    (trace,) = [ax for ax in fig.axes if ax.get_xlabel().startswith("spectrum")]
    assert trace.get_title() == "energy scale: one spectrum, peak at -0.1 meV"
    ticks = [t for t in trace.get_xticks() if trace.get_xlim()[0] <= t <= trace.get_xlim()[1]]
    assert ticks
    assert all(float(t).is_integer() for t in ticks)
    assert figure_problems(fig) == []


def test_shows_summary_names_the_agent_that_decided():
    """The plan line of a `run bandit|physics|dkl` says only 'agent': 'make_agent'."""
    from ophyd_stem.app.analysis.report import decision_summary

    data = dkl_run(9, False)
    data.decisions["reports"] = [{"agent": "bandit", "config": {"policy": "thompson"}}] * 9
    assert "  agent       bandit (thompson)" in decision_summary(data)


def test_shows_best_value_carries_the_scalarizers_unit():
    """'best value 19697' said nothing of what was measured: it carries the unit the
    figures' axes give the scalarizer's values (none for a ratio)."""
    from ophyd_stem.app.analysis.report import decision_summary

    data = dkl_run(9, False)
    data.start["plan_args"] = {"scalarizer": "band:20:30"}
    (best,) = [line for line in decision_summary(data) if "best value" in line]
    assert re.match(r"  best value  [0-9.e+]+ counts·eV at \(", best), best
    data.start["plan_args"] = {"scalarizer": "ratio:20:30:40:50"}
    (best,) = [line for line in decision_summary(data) if "best value" in line]
    assert re.match(r"  best value  [0-9.e+]+ at \(", best), best


def test_a_grids_workflow_figure_is_titled_as_the_zero_loss_alignment_it_shows():
    """A grid has no agent: its workflow figure is the zero-loss alignment, and its title
    says so, with the sample, so the PNG read on its own says what it is."""
    from ophyd_stem.app.views.figures import draw

    data, _ = grid_run()
    data.start["sample"] = "nanowire"
    zlp = np.random.default_rng(1).normal(0, 4e-4, len(data.positions))
    x, y = data.positions.T
    data.zero_loss = {"zlp": zlp, "walk": np.zeros(len(zlp)), "x": x, "y": y}
    fig = Figure()
    draw(fig, data)
    title = fig.get_suptitle()
    assert title.startswith("spectrum_image on nanowire - scan 7 - 01234567: zero-loss align")


def test_the_counterfactual_figure_says_what_its_dotted_lines_join():
    """White dotted lines joined each recorded point to the alternative's choice at that
    step, with nothing in the legend to say so; the title names the run as the others do."""
    from types import SimpleNamespace

    from ophyd_stem.app.views.counterfactual import draw_counterfactual

    data = dkl_run(6, False)
    recorded = data.positions
    chosen = recorded + 5.0
    result = SimpleNamespace(
        recorded=recorded, chosen=chosen, agree=np.zeros(len(recorded), bool),
        alternative="random",
    )  # fmt: skip
    fig = Figure()
    ax = draw_counterfactual(fig, data, result)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels.count("same step, other choice") == 1
    assert "recorded (6)" in labels
    assert "random (6)" in labels
    assert ax.get_title().endswith(": recorded vs random")
    assert figure_problems(fig) == []


def test_a_survey_whose_detector_is_not_named_is_called_survey_once():
    from ophyd_stem.app.views.decor import survey_name

    assert survey_name("HAADF") == "HAADF survey"
    assert survey_name("survey") == "survey"  # not "survey survey"
    assert survey_name(None) == "survey"


def test_a_despiked_scalarizer_keeps_its_windows_and_unit():
    """``despike:`` in front once hid the windows (no shading) and the unit (the summary's
    best value had none)."""
    from ophyd_stem.app.views.figures import scalarizer_bands, scalarizer_label

    spec = "despike:edge:421:451:455:485"
    assert scalarizer_bands(spec) == [(421.0, 451.0), (455.0, 485.0)]
    assert scalarizer_label(spec) == "despiked edge signal 455-485 eV above background (counts·eV)"
    assert scalarizer_label("despike:auto") == "despike:auto"


def test_a_line_scans_strip_says_its_scale_below_instead_of_covering_itself():
    """A 10 x 1 survey (the real line scan's) was covered by the scale bar and its label,
    circles of measured positions included."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ophyd_stem.app.views.decor import figure_problems, show_image

    fig, ax = plt.subplots()
    try:
        bar = show_image(fig, ax, np.arange(10.0)[None, :], 3.15)
        assert bar is None or bar.get_gid() != "scalebar"
        assert ax.get_xlabel() == "scale: 31.5 nm across (3.15 nm/px)"
        assert not [a for a in ax.artists if a.get_gid() == "scalebar"]
        assert figure_problems(fig) == []
        fig2, ax2 = plt.subplots()  # a square survey keeps its bar
        show_image(fig2, ax2, np.ones((10, 10)), 3.15)
        assert [a for a in ax2.artists if a.get_gid() == "scalebar"]
    finally:
        plt.close("all")
