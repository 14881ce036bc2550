"""The simulated microscope and DM session behind the fake ``DigitalMicrograph`` module.

:class:`_Instrument` is the state tests look at and set (``DigitalMicrograph._instrument``):
the calls made into DM in order, the images DM holds, DigiScan's parameter sets and beam
registers, the spectrometer and the camera, and the hooks that make a named function fail or
run something mid-frame. It also holds the DigiScan geometry DM itself uses (pixel <-> DS
position), written independently of the bridge's code so that tests compare two
implementations. The module functions that act on it are ``DigitalMicrograph``'s. Not part of
DM: this module's name.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from _dmobjects import Py_Image, Py_TagGroup


class _Instrument:
    """The simulated microscope and DM session behind the module (test-visible state)."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, tuple]] = []
        self.scripts: List[str] = []
        self.fail: Dict[str, str] = {}
        self.images: Dict[int, Py_Image] = {}
        self.image_ids = itertools.count(1001)
        self.front: Optional[Py_Image] = None
        self.persistent = Py_TagGroup()
        # DigiScan
        self.ds_params: Dict[int, Dict[str, Any]] = {}
        self.ds_ids = itertools.count(7)
        self.dialog_enabled = True
        self.scan_control = False
        self.beam_ds = (0.0, 0.0)  # DigiScan's position register
        self.beam_physical_ds: Optional[Tuple[float, float]] = None  # where the beam really is
        self.ds_field_center = (123.0, -77.0)  # DS position of the field centre
        self.ds_full_range = 32768.0  # DS units across the field (x)
        self.ds_aspect = 1.0  # y step / x step (non-square pixels when != 1)
        self.write_pixel_steps = True  # False: only spacings, like older DigiScan tags
        self.write_digiscan_tags = True
        self.field_of_view_nm = 40.0
        self.min_pixel_time_us = 0.5  # DigiScan clips dwell times below this
        self.threads: set = set()  # every thread that called into DM (it must be one)
        self.acquiring = False
        self.stop_requested = False
        self.pending_scan: Optional[Tuple[Dict[int, Any], Dict[str, Any]]] = None
        self.scan_polls = 0
        self.frame_polls = 2  # polls of DSIsAcquisitionActive a frame lasts (a long one: more)
        self.during_scan: Optional[Callable[[], None]] = None
        self.last_field: Optional[Dict[str, Any]] = None
        # microscope, spectrometer, camera
        self.high_tension_v = 200000.0
        self.has_blanker = True
        self.blanked = False
        self.energy_loss = 0.0
        self.dispersion = 0.25
        self.zlp_column = 200.0  # sensor column of the zero-loss peak at energy loss 0
        self.sensor = (512, 2048)  # rows, columns
        self.default_read_area = (130, 0, 390, 2048)  # top, left, bottom, right
        self.active_camera_id = 3
        self.prepared = False
        self.write_eels_tags = True

    def names(self, start: int = 0) -> List[str]:
        """Names of the calls recorded since index ``start``."""
        return [name for name, _ in self.calls[start:]]

    # -- the DigiScan geometry DM itself uses (independent of the bridge's code)
    def ds_matrix(self, field: Dict[str, Any]) -> np.ndarray:
        step = self.ds_full_range / field["width"]
        theta = math.radians(field["rotation"])
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        return step * rot @ np.diag([1.0, self.ds_aspect])

    def pixel_of(self, ds: Tuple[float, float]) -> Tuple[float, float]:
        """Pixel position (centre-of-pixel convention) of a DS position in the last field."""
        field = self.last_field
        m = self.ds_matrix(field)
        p = np.linalg.solve(m, np.subtract(ds, self.ds_field_center)) + field["center"]
        return float(p[0]), float(p[1])

    def ds_of(self, field: Dict[str, Any], x: float, y: float) -> Tuple[float, float]:
        d = self.ds_matrix(field) @ (np.array([x, y]) - field["center"])
        return float(self.ds_field_center[0] + d[0]), float(self.ds_field_center[1] + d[1])

    # -- what a DigiScan frame records (pattern, tags, calibration)
    def survey_pattern(self, field: Dict[str, Any], signal_index: int) -> np.ndarray:
        """What a DigiScan frame of ``field`` records on ``signal_index``: a pattern that
        tells every pixel and signal apart."""
        rows = np.arange(field["height"])[:, None]
        cols = np.arange(field["width"])[None, :]
        return (rows * field["width"] + cols + 100000 * (signal_index + 1)).astype(np.uint32)

    def tag_survey(self, image: Py_Image, field: Dict[str, Any], signal_index: int) -> None:
        """Tag and calibrate a survey image as DigiScan does (``DigiScan:`` tags, the
        microscope's, the field of view as the dimension calibration)."""
        tags = image.GetTagGroup()
        m = self.ds_matrix(field)
        if self.write_digiscan_tags:
            for axis, key in ((0, "Horizontal"), (1, "Vertical")):
                tags.SetTagAsFloat(f"DigiScan:{key} DS Offset", self.ds_field_center[axis])
                tags.SetTagAsFloat(f"DigiScan:{key} Image Center", float(field["center"][axis]))
                tags.SetTagAsFloat(f"DigiScan:{key} Spacing", float(np.hypot(*m[:, axis])))
            if self.write_pixel_steps:
                tags.SetTagAsFloat("DigiScan:Horizontal Pixel Step", float(m[0, 0]))
                tags.SetTagAsFloat("DigiScan:Horizontal Perpendicular Pixel Step", float(m[1, 0]))
                tags.SetTagAsFloat("DigiScan:Vertical Pixel Step", float(m[1, 1]))
                tags.SetTagAsFloat("DigiScan:Vertical Perpendicular Pixel Step", float(m[0, 1]))
            tags.SetTagAsFloat("DigiScan:Rotation", field["rotation"])
            tags.SetTagAsFloat("DigiScan:Sample Time", field["pixel_time"])
            tags.SetTagAsFloat("DigiScan:Image Height", float(field["height"]))
            tags.SetTagAsLong("DigiScan:Signal Index", signal_index)
        tags.SetTagAsFloat("Microscope Info:Voltage", self.high_tension_v)
        tags.SetTagAsString("Microscope Info:Illumination Mode", "STEM")
        scale, units = self.field_of_view_nm / field["width"], "nm"
        if self.field_of_view_nm >= 1000.0:
            scale, units = scale / 1000.0, "µm"
        image.SetDimensionCalibration(0, 0.0, scale, units, 0)
        image.SetDimensionCalibration(1, 0.0, scale * self.ds_aspect, units, 0)
