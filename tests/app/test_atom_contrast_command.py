"""``ophyd-stem run logstar|dcnn --signal --contrast``: the survey detector reaches the atom
finder, and the summary says whether the columns were taken bright or dark, and why."""

from __future__ import annotations

import re

import pytest

from ophyd_stem.app.cli import build_parser
from ophyd_stem.app.registry import PLANS
from ophyd_stem.app.run_summaries import _contrast_lines

from .test_command import ophyd_stem


def test_logstar_on_the_twins_abf_signal_inverts_it_and_says_so(app_env):
    run = ophyd_stem(
        app_env, "run", "logstar", "--sample", "srtio3", "--signal", "ABF", "--size", "96",
        "--fov", "2", "--budget", "8",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    line = re.search(r"contrast\s+dark columns, image inverted.*detector 'ABF'", run.stdout)
    assert line is not None, run.stdout
    assert re.search(r"truth\s+F1 [0-9.]+", run.stdout)


def test_the_options_reach_the_queued_plan_and_the_defaults_queue_as_before():
    parser = build_parser()
    items = PLANS["logstar"].queue_items(parser.parse_args(["run", "logstar"]))
    name, _, kwargs = items[-1]
    assert name == "logstar"
    assert "signal" not in kwargs
    assert "contrast" not in kwargs["agent_kwargs"]
    args = parser.parse_args(["run", "logstar", "--signal", "ABF", "--contrast", "dark"])
    _, _, kwargs = PLANS["logstar"].queue_items(args)[-1]
    assert kwargs["signal"] == "ABF"
    assert kwargs["agent_kwargs"]["contrast"] == "dark"
    args = parser.parse_args(["run", "dcnn", "--signal", "BF", "--contrast", "bright"])
    _, _, kwargs = PLANS["dcnn"].queue_items(args)[-1]
    assert (kwargs["signal"], kwargs["agent_kwargs"]["contrast"]) == ("BF", "bright")


def test_the_summary_line_names_the_decision_and_any_disagreement():
    report = {
        "contrast": {
            "contrast": "bright",
            "why": "detector 'HAADF': annular dark field shows the columns bright",
            "warning": "the image shows dark columns (column skewness -0.26) ...",
        }
    }
    lines = _contrast_lines(report)
    assert lines[0].startswith("  contrast    bright columns, image as it is (detector 'HAADF'")
    assert lines[1].startswith("  WARNING     the image shows dark columns")
    assert _contrast_lines({}) == []  # a report from before the option


def test_a_pixel_size_number_goes_to_the_plan_and_fft_to_the_agent():
    # a number corrects the scan's calibration: the plan's pixel_size_nm (given to the agent,
    # the survey's own calibration would win over it and the number would be ignored)
    parser = build_parser()
    args = parser.parse_args(["run", "logstar", "--pixel-size", "0.0077"])
    _, _, kwargs = PLANS["logstar"].queue_items(args)[-1]
    assert kwargs["pixel_size_nm"] == 0.0077
    assert "pixel_size_nm" not in kwargs["agent_kwargs"]
    args = parser.parse_args(["run", "logstar", "--pixel-size", "fft"])
    _, _, kwargs = PLANS["logstar"].queue_items(args)[-1]
    assert kwargs["agent_kwargs"]["pixel_size_nm"] == "fft"
    assert "pixel_size_nm" not in kwargs
    args = parser.parse_args(["run", "logstar", "--pixel-size", "small"])
    with pytest.raises(SystemExit, match="--pixel-size must be nm per pixel or 'fft'"):
        PLANS["logstar"].queue_items(args)


def test_logstar_on_the_twin_uses_the_pixel_size_it_is_given(app_env):
    # the twin's 96 px field of 2 nm is 0.0208 nm/px; told 0.05, the run analyses at 0.05
    run = ophyd_stem(
        app_env, "run", "logstar", "--size", "96", "--fov", "2", "--budget", "6",
        "--pixel-size", "0.05",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(r"pixel size\s+0\.05 nm/px \(given", run.stdout), run.stdout
