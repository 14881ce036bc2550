"""LoG* on real annular bright-field data: the columns are dark, the agent inverts the image
(``contrast="auto"``) and finds them; a real HAADF image is found exactly as before."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.logstar import LoGStarAgent, get_lattice
from agents.logstar.calibration import estimate_pixel_size


@pytest.fixture(scope="module")
def abf_image(shared_data: Path):
    """The real 512² ABF image (uint16) and its pixel size (nm) from the file."""
    pytest.importorskip("rsciio")
    from rsciio.hspy import file_reader

    signal = file_reader(str(shared_data / "stem_abf_data.hspy"))[0]
    return np.asarray(signal["data"]), float(signal["axes"][1]["scale"])


def test_the_real_abf_image_is_srtio3_viewed_down_110(abf_image):
    # its reflections give the file's own calibration with the [110] cell (a/sqrt 2 x a),
    # and a pixel size 1/sqrt 2 too small with the [001] cell: not [001]
    image, px = abf_image
    on_110 = estimate_pixel_size(image, get_lattice("SrTiO3[110]"), reference=px)
    on_001 = estimate_pixel_size(image, get_lattice("SrTiO3"), reference=px)
    assert on_110.clear
    assert on_110.pixel_size_nm == pytest.approx(px, rel=0.01)
    assert on_001.pixel_size_nm == pytest.approx(px / np.sqrt(2), rel=0.01)


def test_logstar_finds_the_dark_columns_of_the_real_abf_image(abf_image):
    image, px = abf_image
    agent = LoGStarAgent("SrTiO3[110]", pixel_size_nm=px, budget=16, n_clusters=0, seed=0)
    agent.observe(image)  # no detector name: the image itself says
    report = agent.report()
    decided = report["contrast"]
    assert (decided["asked"], decided["contrast"], decided["source"]) == ("auto", "dark", "image")
    assert decided["skewness"] < -0.1
    assert "dark columns" in decided["why"]
    assert report["plausibility"]["ok"], report["plausibility"]
    # the SrO and Ti columns of the field: 18.5 per nm², 423 in the 22.8 nm² field
    expected = get_lattice("SrTiO3[110]").density_per_nm2 * image.size * px**2
    assert abs(len(agent.atoms) - expected) < 0.1 * expected, (len(agent.atoms), expected)
    assert agent.config()["contrast"] == "auto"  # asked, for a replay; decided in the report
    json.dumps(report)
    # the same parameters on the same image, as find_atoms takes it: the same atoms
    assert np.array_equal(agent.find_atoms(image), agent.atoms)

    # as before the option: the raw image, the dips between columns taken for atoms
    bright = LoGStarAgent(
        "SrTiO3[110]", pixel_size_nm=px, budget=16, n_clusters=0, seed=0, contrast="bright"
    )
    bright.observe(image)
    assert bright.report()["contrast"]["source"] == "asked"
    assert not bright.report()["plausibility"]["ok"]


def test_the_real_haadf_image_gives_the_same_atoms_under_auto(real_graphene):
    image, _, pixel_nm = real_graphene
    found = {}
    for contrast in ("bright", "auto"):
        agent = LoGStarAgent("graphene", pixel_size_nm=pixel_nm, budget=12, contrast=contrast)
        agent.observe(image, detector=None)
        found[contrast] = (agent.atoms, agent.report())
    assert np.array_equal(found["bright"][0], found["auto"][0])
    decided = found["auto"][1]["contrast"]
    assert (decided["contrast"], decided["source"]) == ("bright", "image")
    assert decided["skewness"] > 0.05
    assert found["bright"][1]["front"] == found["auto"][1]["front"]


def test_a_new_detector_re_decides_and_re_optimises(abf_image):
    image, px = abf_image
    crop = image[:192, :192]
    agent = LoGStarAgent("SrTiO3[110]", pixel_size_nm=px, budget=8, n_clusters=0)
    first = agent.observe(crop, detector="ABF")
    assert first["optimised"]
    assert agent.report()["contrast"]["contrast"] == "dark"
    again = agent.observe(crop)  # same series, no name: the decision and parameters stay
    assert not again["optimised"]
    assert agent.contrast_decision.detector == "ABF"
    other = agent.observe(crop, detector="HAADF")  # another detector: bright, optimise anew
    assert other["optimised"]
    decided = agent.report()["contrast"]
    assert (decided["contrast"], decided["detector"]) == ("bright", "HAADF")
    assert "misnamed" in decided["warning"]  # the image still shows dark columns
    with pytest.raises(ValueError, match="contrast must be one of"):
        LoGStarAgent("graphene", contrast="negative")


def test_without_a_calibration_the_contrast_comes_first_then_the_pixel_size(abf_image):
    # no spacing known yet: the image is judged over 6-24 px, inverted, and then its pixel
    # size read (the atoms' spacing, the FFT's fallback, is measured on bright blobs)
    image, px = abf_image
    agent = LoGStarAgent("SrTiO3[110]", pixel_size_nm="fft", budget=8, n_clusters=0)
    agent.observe(image[:160, :160])
    report = agent.report()
    assert report["contrast"]["contrast"] == "dark"
    assert report["contrast"]["spacing_px"] is None
    assert report["pixel_size_nm"] == pytest.approx(px, rel=0.02)
    assert report["plausibility"]["ok"], report["plausibility"]
