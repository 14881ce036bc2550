"""The cached scale space gives exactly what skimage.feature.blob_log gives."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.feature import blob_log

from agents.logstar.lattice import graphene, srtio3
from agents.logstar.params import LoGParameters
from agents.logstar.scalespace import (
    ImageScaleSpaces,
    ScaleSpace,
    apply_prefilter,
    as_float_image,
    blob_log_reference,
    prepare_image,
    prune_blobs,
)

from .conftest import render_lattice


def random_params(rng: np.random.Generator, step: float, sigma_hi: float) -> LoGParameters:
    lo = int(rng.integers(1, max(2, int(sigma_hi / step))))
    hi = lo + int(rng.integers(0, 12))
    prefilter = ["none", "none", "gaussian", "median"][int(rng.integers(0, 4))]
    size = {"none": 0.0, "gaussian": float(rng.choice([0.5, 1.0, 1.5])), "median": 3.0}
    return LoGParameters(
        min_sigma=lo * step,
        max_sigma=hi * step,
        threshold=float(10 ** rng.uniform(-2.5, -0.5)),
        overlap=float(rng.uniform(0, 1)),
        prefilter=prefilter,
        prefilter_size=size[prefilter],
        sigma_step=step,
        exclude_border=int(rng.choice([0, 0, 2])),
    )


def assert_identical(image: np.ndarray, params_list) -> int:
    """Every trial equals blob_log bit for bit (values, order, dtype); returns atoms seen."""
    spaces = ImageScaleSpaces(image, params_list[0].sigma_step)
    seen = 0
    for p in params_list:
        ours = spaces.detect(p)
        ref = blob_log_reference(image, p)
        assert ours.dtype == ref.dtype, p
        assert ours.shape == ref.shape, p
        assert np.array_equal(ours, ref), p
        seen += len(ref)
    return seen


def test_identical_to_blob_log_on_real_graphene(real_graphene):
    image = prepare_image(real_graphene[0])
    rng = np.random.default_rng(0)
    params = [random_params(rng, 0.5, 8.0) for _ in range(10)]
    params.append(LoGParameters(5.5, 9.0, 0.0266, 0.36, sigma_step=0.5))  # a good point
    params.append(LoGParameters(0.5, 1.0, 0.005, 0.9, sigma_step=0.5))  # thousands of blobs
    assert assert_identical(image, params) > 1000  # the comparison is not vacuous


def test_identical_to_blob_log_on_stem_abf_raw_and_inverted(stem_abf):
    rng = np.random.default_rng(1)
    # the raw uint16 image goes through img_as_float exactly like blob_log's own input
    raw = stem_abf
    params = [random_params(rng, 0.25, 4.0) for _ in range(6)]
    params = [p.with_changes(threshold=p.threshold * 0.05) for p in params]
    seen = assert_identical(raw, params)
    # atoms are dark in ABF: the prepared, inverted image shows them as blobs
    inverted = 1.0 - prepare_image(raw)
    seen += assert_identical(inverted, [random_params(rng, 0.25, 4.0) for _ in range(6)])
    assert seen > 50


def test_identical_on_synthetic_float32_and_float64():
    image, _, _ = render_lattice(srtio3(), shape=(96, 112), pixel_size_nm=0.02, noise=0.1)
    rng = np.random.default_rng(2)
    params = [random_params(rng, 0.25, 5.0) for _ in range(8)]
    assert assert_identical(image, params) > 0
    assert assert_identical(image.astype(np.float32), params) > 0


def test_relative_and_default_thresholds_match_blob_log():
    image, _, _ = render_lattice(graphene(), noise=0.05, seed=3)
    image = prepare_image(image)
    space = ScaleSpace(image, 0.25)
    p = LoGParameters(2.0, 4.0, 0.05, 0.5, sigma_step=0.25)
    kw = p.blob_log_kwargs()
    for threshold, threshold_rel in [(None, 0.3), (0.02, 0.4), (0.2, 0.01), (None, None)]:
        kw.update(threshold=threshold, threshold_rel=threshold_rel)
        ref = blob_log(image, **kw)
        if threshold is None and threshold_rel is None:
            ours = space.detect(p.with_changes(threshold=0.0), threshold=None, threshold_rel=None)
            # blob_log(threshold=None) cuts at the scale space's minimum: not the same as 0
            ref0 = blob_log(image, **{**kw, "threshold": 0.0, "threshold_rel": None})
            assert np.array_equal(ours, ref0)
            continue
        ours = space.detect(p, threshold=threshold, threshold_rel=threshold_rel)
        assert np.array_equal(ours, ref)


def test_flat_images_behave_like_blob_log():
    p = LoGParameters(1.0, 2.0, 0.0, 0.5, sigma_step=0.5)
    zeros = ScaleSpace(np.zeros((16, 16)), 0.5).detect(p)
    assert zeros.shape == (0, 3)
    assert np.array_equal(zeros, blob_log(np.zeros((16, 16)), **p.blob_log_kwargs()))
    # a constant image: rounding ripples in the filtered slices, same ones as blob_log's
    flat = np.full((9, 7), 3.0)
    assert np.array_equal(ScaleSpace(flat, 0.5).detect(p), blob_log(flat, **p.blob_log_kwargs()))


def test_slices_are_computed_once_and_only_when_needed():
    image, _, _ = render_lattice(graphene(), shape=(64, 64))
    space = ScaleSpace(image, 0.5)
    space.detect(LoGParameters(2.0, 3.0, 0.05, sigma_step=0.5))
    assert space.computed == (4, 5, 6)
    space.detect(LoGParameters(2.5, 4.0, 0.05, sigma_step=0.5))
    assert space.computed == (4, 5, 6, 7, 8)


def test_prune_matches_scikit_image_rule_on_crowded_blob_sets():
    # Pruning is order-dependent (A drops B, so B no longer drops C): crowded random sets
    # exercise that, and must come out exactly as scikit-image's own pruning.
    from skimage.feature.blob import _prune_blobs

    rng = np.random.default_rng(4)
    dropped = 0
    for dtype in (np.float64, np.float32):
        for _ in range(40):
            n = int(rng.integers(2, 60))
            blobs = np.column_stack(
                [rng.integers(0, 40, n), rng.integers(0, 40, n), rng.integers(2, 16, n) * 0.25]
            ).astype(dtype)
            overlap = float(rng.uniform(0, 1))
            ours = prune_blobs(blobs.copy(), overlap)
            ref = _prune_blobs(blobs.copy(), overlap)
            assert np.array_equal(ours, ref)
            dropped += n - len(ref)
    assert dropped > 100
    assert np.array_equal(prune_blobs(np.empty((0, 3)), 0.5), np.empty((0, 3)))


def test_bad_images_are_rejected_with_clear_errors():
    with pytest.raises(ValueError, match="2-D"):
        as_float_image(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        as_float_image(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="numbers"):
        as_float_image(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="sigma_step"):
        ScaleSpace(np.zeros((8, 8)), 0.3)
    with pytest.raises(ValueError, match="sigma_step"):
        ScaleSpace(np.zeros((8, 8)), 0.5).detect(LoGParameters(1.0, 2.0, 0.1, sigma_step=0.25))
    with pytest.raises(ValueError, match="prefilter"):
        apply_prefilter(np.zeros((4, 4)), "fft", 1.0)


def test_parameters_snap_to_the_grid_and_validate():
    p = LoGParameters.snapped(1.93, 1.2, 0.05, prefilter="median", prefilter_size=4)
    assert (p.min_sigma, p.max_sigma, p.num_sigma) == (2.0, 2.0, 1)
    assert p.prefilter_size == 5.0
    assert LoGParameters.from_dict(p.as_dict()) == p
    with pytest.raises(ValueError, match="grid"):
        LoGParameters(1.1, 2.0, 0.1, sigma_step=0.25)
    with pytest.raises(ValueError, match="max_sigma"):
        LoGParameters(2.0, 1.0, 0.1)
    with pytest.raises(ValueError, match="overlap"):
        LoGParameters(1.0, 2.0, 0.1, overlap=1.5)
    with pytest.raises(ValueError, match="odd"):
        LoGParameters(1.0, 2.0, 0.1, prefilter="median", prefilter_size=4)
