"""A wrong calibration on the real graphene image (../shared/data/G-Si-2nm.npy, 0.0077 nm/px
given as 0.02): LoG* found about a thousand "atoms" and only its report said they were
implausible. Now the logged warning, by default, names the pixel size the image suggests,
and the report carries a short reason a run records beside its ``plausible`` flag."""

from __future__ import annotations

import numpy as np
import pytest

from agents.logstar import LoGStarAgent, get_lattice
from agents.logstar.plausibility import check_plausibility

WRONG = 0.02  # nm/px
#: the image's own pixel size, nm, from its reference atoms' cell (test_small_fields.py)
TRUE = 0.00771


def _agent() -> LoGStarAgent:
    return LoGStarAgent("graphene", budget=8, n_initial=6, n_clusters=0, seed=0)


def test_a_wrong_calibration_is_logged_with_the_pixel_size_the_lattice_suggests(
    real_graphene, caplog
):
    image, _, pixel_nm = real_graphene
    agent = _agent()
    with caplog.at_level("WARNING", logger="agents.logstar"):
        agent.observe(image, pixel_size_nm=WRONG)  # no warn_implausible: the default
    check = agent.report()["plausibility"]
    assert not check["ok"]
    assert check["suggested_pixel_size_nm"] == pytest.approx(TRUE, rel=0.01)
    assert check["suggested_by"] == "its lattice reflections"
    assert "bright columns missed" in check["reason"]
    assert check["reason"].endswith("the image suggests 0.0077 nm/px, not 0.02")
    said = [r.getMessage() for r in caplog.records if "atoms implausible" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert f"The image suggests {check['suggested_pixel_size_nm']:.4g} nm/px" in said[0]
    assert "not the 0.02 nm/px used" in said[0]

    # the right calibration: plausible, nothing suggested, nothing said
    caplog.clear()
    agent = _agent()
    with caplog.at_level("WARNING", logger="agents.logstar"):
        agent.observe(image, pixel_size_nm=pixel_nm)
    check = agent.report()["plausibility"]
    assert check["ok"], check["warnings"]
    assert (check["reason"], check["suggested_pixel_size_nm"]) == ("", None)
    assert "implausible" not in caplog.text


def test_a_small_field_without_clear_reflections_suggests_its_atoms_spacing(real_graphene):
    """A 128 px crop: too few cells for the reflections to contradict the calibration; the
    atoms' spacing still says the pixel size."""
    image, _, _ = real_graphene
    agent = _agent()
    agent.observe(image[:128, :128], pixel_size_nm=WRONG)
    check = agent.report()["plausibility"]
    assert not check["ok"]
    assert "warning" not in agent.report()["pixel_size"]  # the FFT said nothing
    assert check["suggested_by"] == "its atoms' spacing"
    assert check["suggested_pixel_size_nm"] == pytest.approx(TRUE, rel=0.05)  # a few %


def test_the_check_alone_can_be_quiet_and_says_its_reasons_in_a_few_words(caplog):
    lattice = get_lattice("graphene")
    image = np.zeros((64, 64))
    with caplog.at_level("WARNING", logger="agents.logstar"):
        check = check_plausibility(np.array([[10.0, 10.0]]), image, lattice, 0.01, quiet=True)
    assert not check.ok
    assert check.reason == "only 1 atoms"
    assert caplog.text == ""
    with caplog.at_level("WARNING", logger="agents.logstar"):
        check_plausibility(np.array([[10.0, 10.0]]), image, lattice, 0.01)
    assert "LoG* atoms implausible: only 1 atoms were found" in caplog.text


def test_the_agents_own_pixel_size_passed_over_for_the_images_is_said(real_graphene, caplog):
    """``ophyd-stem run logstar --pixel-size 0.0077`` on a survey calibrated 0.02 nm/px: the
    image's calibration wins (as documented: the agent's serves images without one), and
    that is now said instead of passing over the operator's number in silence."""
    image, _, _ = real_graphene
    agent = LoGStarAgent("graphene", pixel_size_nm=TRUE, budget=8, n_initial=6, n_clusters=0)
    with caplog.at_level("WARNING", logger="agents.logstar"):
        agent.observe(image[:128, :128], pixel_size_nm=WRONG)
    info = agent.report()["pixel_size"]
    assert agent.report()["pixel_size_nm"] == WRONG  # unchanged behaviour
    assert info["agent_pixel_size_nm"] == TRUE
    assert "the image came calibrated 0.02 nm/px, which is used" in info["note"]
    assert info["note"] in caplog.text
    # an image that comes with the agent's own pixel size: nothing to say
    agent.observe(image[:128, :128], pixel_size_nm=TRUE)
    assert "note" not in agent.report()["pixel_size"]
