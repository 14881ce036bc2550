"""Pixel <-> DigiScan conversion (dm_calibration.DigiScanFrame): the one place it happens."""

from __future__ import annotations

import math
from typing import Any, Dict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dm_bridge.backends.dm_calibration import (
    DIGISCAN,
    DigiScanFrame,
    dimension_calibration,
    energy_to_ev,
    length_to_nm,
    read_tag,
)
from dm_bridge.errors import InstrumentError


class Tags:
    """Minimal Py_TagGroup stand-in: ``GetTagAs*(path) -> (found, value)``."""

    def __init__(self, values: Dict[str, Any]) -> None:
        self.values = values

    def GetTagAsFloat(self, path: str):
        value = self.values.get(path)
        return (False, 0.0) if value is None or isinstance(value, str) else (True, float(value))

    def GetTagAsLong(self, path: str):
        found, value = self.GetTagAsFloat(path)
        return found, int(value)

    def GetTagAsString(self, path: str):
        return (path in self.values, self.values.get(path, ""))


def rotated_tags(
    offset, center, step: float, aspect: float, rotation: float, pixel_steps: bool = True
) -> Dict[str, Any]:
    """DigiScan tags of a field rotated by ``rotation`` deg with steps ``step``, ``step*aspect``."""
    t = math.radians(rotation)
    col = (step * math.cos(t), step * math.sin(t))  # DS step of one column
    row = (-step * aspect * math.sin(t), step * aspect * math.cos(t))  # DS step of one row
    tags = {
        DIGISCAN["offset_x"]: offset[0],
        DIGISCAN["offset_y"]: offset[1],
        DIGISCAN["center_x"]: center[0],
        DIGISCAN["center_y"]: center[1],
        DIGISCAN["spacing_x"]: step,
        DIGISCAN["spacing_y"]: step * aspect,
        DIGISCAN["rotation"]: rotation,
    }
    if pixel_steps:
        tags.update(
            {
                DIGISCAN["step_x"]: col[0],
                DIGISCAN["perp_x"]: col[1],
                DIGISCAN["step_y"]: row[1],
                DIGISCAN["perp_y"]: row[0],
            }
        )
    return tags


frames = st.builds(
    lambda ox, oy, w, h, step, aspect, rot, cshift: (
        rotated_tags((ox, oy), (w / 2 + cshift, h / 2 - cshift), step, aspect, rot),
        w,
        h,
    ),
    st.floats(-30000, 30000),
    st.floats(-30000, 30000),
    st.integers(8, 4096),
    st.integers(8, 4096),
    st.floats(0.01, 500.0),
    st.floats(0.5, 2.0),  # non-square DigiScan steps
    st.floats(-360.0, 360.0),
    st.floats(-3.0, 3.0),
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(frame_spec=frames, fx=st.floats(0, 1), fy=st.floats(0, 1))
def test_pixel_digiscan_round_trip_is_exact_to_1e9(frame_spec, fx, fy):
    tags, w, h = frame_spec
    frame = DigiScanFrame.from_tags(Tags(tags), w, h)
    x, y = -0.5 + fx * w, -0.5 + fy * h  # anywhere in the field, sub-pixel
    ds = frame.to_digiscan(x, y)
    back = frame.to_pixels(*ds)
    assert back[0] == pytest.approx(x, abs=1e-9)
    assert back[1] == pytest.approx(y, abs=1e-9)
    again = frame.to_digiscan(*back)  # and the other way round, relative to DS magnitudes
    scale = 1e-9 * max(1.0, abs(ds[0]), abs(ds[1]))
    assert abs(again[0] - ds[0]) <= scale
    assert abs(again[1] - ds[1]) <= scale


@settings(max_examples=100, deadline=None, derandomize=True)
@given(frame_spec=frames)
def test_conversion_matches_a_rotation_of_the_pixel_offset(frame_spec):
    """An independent formula: ds = offset + R(rotation) @ diag(step, step*aspect) @ (p - c)."""
    tags, w, h = frame_spec
    frame = DigiScanFrame.from_tags(Tags(tags), w, h)
    t = math.radians(tags[DIGISCAN["rotation"]])
    step, step_y = tags[DIGISCAN["spacing_x"]], tags[DIGISCAN["spacing_y"]]
    rng = np.random.default_rng(7)
    xs, ys = rng.uniform(-0.5, w - 0.5, 16), rng.uniform(-0.5, h - 0.5, 16)
    dx, dy = xs - tags[DIGISCAN["center_x"]], ys - tags[DIGISCAN["center_y"]]
    want_x = tags[DIGISCAN["offset_x"]] + math.cos(t) * step * dx - math.sin(t) * step_y * dy
    want_y = tags[DIGISCAN["offset_y"]] + math.sin(t) * step * dx + math.cos(t) * step_y * dy
    got_x, got_y = frame.to_digiscan(xs, ys)  # vectorised
    np.testing.assert_allclose(got_x, want_x, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got_y, want_y, rtol=0, atol=1e-7)


def test_unrotated_spacings_only_give_the_papers_model():
    tags = rotated_tags((100.0, -50.0), (256.0, 128.0), 64.0, 1.5, 0.0, pixel_steps=False)
    frame = DigiScanFrame.from_tags(Tags(tags), 512, 256)
    # ds = DS offset + (pixel - image centre) * spacing, per axis
    assert frame.to_digiscan(10.0, 20.0) == (100.0 + (10 - 256) * 64.0, -50.0 + (20 - 128) * 96.0)


def test_rotated_field_without_pixel_steps_is_refused():
    tags = rotated_tags((0.0, 0.0), (256.0, 256.0), 64.0, 1.0, 30.0, pixel_steps=False)
    with pytest.raises(InstrumentError, match="Perpendicular Pixel Step"):
        DigiScanFrame.from_tags(Tags(tags), 512, 512)


def test_missing_offsets_are_named_in_the_error():
    tags = rotated_tags((0.0, 0.0), (256.0, 256.0), 64.0, 1.0, 0.0)
    del tags[DIGISCAN["offset_y"]], tags[DIGISCAN["center_x"]]
    with pytest.raises(InstrumentError) as err:
        DigiScanFrame.from_tags(Tags(tags), 512, 512)
    assert "Vertical DS Offset" in str(err.value)
    assert "Horizontal Image Center" in str(err.value)
    assert "refuses to guess" in str(err.value)


def test_degenerate_steps_are_refused():
    with pytest.raises(InstrumentError, match="degenerate"):
        DigiScanFrame(64, 64, (0, 0), (32, 32), ((1.0, 2.0), (2.0, 4.0)))
    with pytest.raises(InstrumentError, match="not usable"):
        DigiScanFrame(64, 64, (0, float("nan")), (32, 32), ((1.0, 0.0), (0.0, 1.0)))


def test_units_and_tag_helpers():
    assert length_to_nm(0.5, b"\xb5m") == 500.0  # DM hands back micrometres as Latin-1 bytes
    assert length_to_nm(2.0, "µm") == 2000.0
    assert length_to_nm(3.0, "nm") == 3.0
    with pytest.raises(InstrumentError, match="not a length"):
        length_to_nm(1.0, "eV")
    assert energy_to_ev(0.5, "keV") == 500.0
    assert energy_to_ev(0.5, "") is None
    tags = Tags({"A:b": 2.5, "A:name": "x"})
    assert read_tag(tags, ["missing", "A:b"]) == 2.5
    assert read_tag(tags, "A:name", "string") == "x"
    assert read_tag(tags, "A:name") is None  # a string tag is not a number
    assert read_tag(None, "A:b") is None


def test_calibration_convention_matches_a_real_dm_file(shared_data):
    """The real EELS_STO.dm3: origin -1400 px, 0.25 eV/ch -> first channel at 350 eV."""
    dm_reader = pytest.importorskip("rsciio.digitalmicrograph")
    signal = dm_reader.file_reader(str(shared_data / "EELS_STO.dm3"))[0]
    raw = signal["original_metadata"]["ImageList"]["TagGroup0"]["ImageData"]["Calibrations"]
    dim = raw["Dimension"]["TagGroup0"]

    class Image:
        def GetDimensionCalibration(self, index, flags):
            return dim["Origin"], dim["Scale"], dim["Units"].encode("latin-1")

    origin, scale, unit = dimension_calibration(Image(), 0)
    first_channel = energy_to_ev((0 - origin) * scale, unit)
    assert first_channel == pytest.approx(signal["axes"][0]["offset"])
    assert first_channel == pytest.approx(350.0)
