"""Bright or dark columns (agents.contrast): detector names, the image's own say on twin
images as recorded, inverted and spoilt, and the decision an agent keeps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.contrast import (
    AMBIGUOUS,
    check_contrast,
    column_skewness,
    decide_contrast,
    detector_contrast,
    orient,
    update_decision,
)


@pytest.fixture(scope="module")
def twin_srtio3():
    """A 128² twin SrTiO3 [001] survey in HAADF and ABF, and its Sr-TiO spacing in px."""
    from dm_bridge.backends.twin import TwinBackend

    twin = TwinBackend("srtio3", seed=3, noise_level=0.5)
    twin.set_scan_parameters(width=128, height=128, field_of_view=2.0, signals=["HAADF", "ABF"])
    acq = twin.acquire_image()
    return acq.images["HAADF"], acq.images["ABF"], 0.3905 / np.sqrt(2) / acq.pixel_size


@pytest.mark.parametrize(
    ("name", "contrast"),
    [("HAADF", "bright"), ("MAADF", "bright"), ("LAADF", "bright"), ("ADF", "bright"),
     ("DF4", "bright"), ("dark field", "bright"), ("ABF", "dark"), ("BF", "dark"),
     ("BF2", "dark"), ("annular bright-field", "dark"), ("SE", None), ("iDPC", None),
     ("image0", None), ("", None), (None, None)],
)  # fmt: skip
def test_detector_names_say_how_the_columns_show(name, contrast):
    said = detector_contrast(name)
    assert (said[0] if said else None) == contrast


def test_the_image_says_bright_for_haadf_and_dark_for_abf_however_spoilt(twin_srtio3):
    haadf, abf, spacing = twin_srtio3
    rng = np.random.default_rng(0)
    hot = np.asarray(abf, dtype=np.float64).copy()
    lo, hi = np.percentile(hot, [1, 99])
    hot[rng.random(hot.shape) < 0.001] = hi + 20 * (hi - lo)  # the plain skewness flips
    gradient = abf + 1.5 * np.ptp(abf) * np.arange(128)[None, :] / 128  # thickness
    for image, sign in ((haadf, 1), (abf, -1), (hot, -1), (gradient, -1)):
        for spacing_px in (spacing, None):  # at the lattice's spacing, or over 6-24 px
            value = column_skewness(image, spacing_px)
            assert sign * value > 2 * AMBIGUOUS, (sign, spacing_px, value)
            assert sign * column_skewness(-image, spacing_px) < -2 * AMBIGUOUS
    assert (
        column_skewness(hot, spacing) < 0 < float(np.mean((hot - hot.mean()) ** 3))
    )  # the moment skewness would call it bright


def test_auto_decides_from_the_detector_first_then_the_image(twin_srtio3):
    haadf, abf, spacing = twin_srtio3
    by_name = decide_contrast("auto", haadf, detector="ABF", spacing_px=spacing)
    assert (by_name.contrast, by_name.source) == ("dark", "detector")
    # the name wins; that the image says otherwise is a warning (an unnamed file served
    # as "HAADF" by the replay)
    assert "detector is misnamed" in by_name.warning
    assert decide_contrast("auto", abf, detector="ABF").warning is None
    by_image = decide_contrast("auto", abf, spacing_px=spacing)
    assert (by_image.contrast, by_image.source) == ("dark", "image")
    assert "column skewness -" in by_image.why
    unknown = decide_contrast("auto", haadf, detector="SE")
    assert (unknown.contrast, unknown.source) == ("bright", "image")
    assert "'SE' does not say" in unknown.why
    asked = decide_contrast("bright", abf, detector="ABF")
    assert (asked.contrast, asked.source, asked.skewness) == ("bright", "asked", None)
    json.dumps(by_name.as_dict())


def test_an_image_that_does_not_say_stays_bright_and_says_so():
    rng = np.random.default_rng(1)
    for image in (np.full((64, 64), 7.0), rng.normal(100.0, 5.0, (128, 128))):
        decision = decide_contrast("auto", image)
        assert (decision.contrast, decision.source) == ("bright", "ambiguous")
        assert "kept bright" in decision.why
    assert column_skewness(np.ones((8, 8))) == 0.0  # too small to judge


def test_a_decision_is_kept_until_another_detector_is_named(twin_srtio3):
    haadf, abf, _ = twin_srtio3
    first = update_decision(None, "auto", abf)
    assert first.contrast == "dark"
    assert update_decision(first, "auto", haadf) is first  # a series keeps its decision
    named = update_decision(first, "auto", haadf, detector="HAADF")
    assert (named.contrast, named.detector) == ("bright", "HAADF")
    assert update_decision(named, "auto", abf, detector="HAADF") is named


def test_orient_inverts_dark_images_only_and_bad_values_are_refused():
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    assert orient(image, "bright") is image
    dark = orient(image, "dark")
    assert dark.dtype == np.float64
    assert np.array_equal(dark, -image.astype(float))
    assert orient(image.astype(np.float32), "dark").dtype == np.float32
    assert check_contrast(" Dark ") == "dark"
    with pytest.raises(ValueError, match="contrast must be one of"):
        check_contrast("inverted")
    with pytest.raises(ValueError, match="decided contrast"):
        orient(image, "auto")
    with pytest.raises(ValueError, match="needs the survey image"):
        decide_contrast("auto")
