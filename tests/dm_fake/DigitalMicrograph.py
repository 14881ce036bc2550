"""A faithful fake of Gatan DigitalMicrograph's ``DigitalMicrograph`` Python module.

The real module exists only inside a running DigitalMicrograph (GMS 3.4+). This fake has the
same names and call signatures for the parts the bridge uses, simulates the microscope behind
them (DigiScan, beam, spectrometer, EELS camera), records every call in order, and hands back
tagged images the way DM does. Tests put it on ``sys.modules`` (tests/bridge/dm/conftest.py).

What is modelled, and how sure we are that the real module looks like this
---------------------------------------------------------------------------
Confirmed by public code that ran inside DM (the paper's Pyro5 server, miile7/pylo,
miile7/execdmscript, facility scripts):

* ``CreateImage(ndarray) -> Py_Image``; ``Py_Image.GetNumArray()`` (a *view* on DM's memory,
  shape ``(rows, columns)``: dimensions reversed, Gatan's "Python images and NumPy arrays"),
  ``GetTagGroup()``, ``GetID()``, ``SetName()``, ``ShowImage()``, ``GetDimensionScale(dim)``,
  ``GetDimensionCalibration(dim, flags) -> (origin, scale, units)`` with µm coming back as
  ``bytes`` (``b'\\xb5m'``); ``FindImageByID``, ``GetFrontImage``.
* ``Py_TagGroup.GetTagAsFloat(path) -> (found, value)`` and the other ``GetTagAs*`` /
  ``SetTagAs*``, ``DeleteTagWithLabel``; ``GetPersistentTagGroup()``; ``NewTagGroup()``.
* ``ExecuteScriptString(source)`` raising ``RuntimeError("Error in line N\\n...")``.
* DigiScan: ``DS_CreateParameters(width, height, rotation, pixel_time_us, line_sync)``,
  ``DS_SetParametersSignal(id, signal, depth_bytes, selected, image_id)``,
  ``DS_StartAcquisition(id, continuous, synchronous)``, ``DS_DeleteParameters(id)``,
  ``DS_DialogEnabled(bool)``, ``DS_GetBeamDSPosition() -> (x, y)``, ``DS_MoveBeamTo(x, y)``.
* ``GetActiveCamera() -> Py_Camera`` with ``PrepareForAcquire()`` and
  ``AcquireImage(exposure, bin_x, bin_y, processing, top, left, bottom, right)``;
  processing 1/2/3 = unprocessed / dark subtracted / gain normalised.
* ``Py_Microscope()`` with ``GetHighTension()`` (volts), ``HasBeamBlanker()``,
  ``SetBeamBlanked(bool)``.
* Tag paths of an EELS spectrum (``EELS Spectrometer:...``, ``Acquisition:Parameters:...``,
  ``Microscope Info:Voltage``): a real GMS 3.x DM3 file (tests check the fake against it).

Not confirmed (documented DM-script, or seen once): the DM-script functions understood by
:mod:`_dmscript` here (``DSSetScanControl``, ``DSStopAcquisition``, ``DSIsAcquisitionActive``
(public DM scripts poll it after an asynchronous ``DSStartAcquisition``),
``DSSetBeamDSPosition``,
``DSGetBeamDSPosition``, ``DSCalcDSCoordFromImage``, ``IFSetEnergyLoss``,
``IFWaitForFilter``, ``IFGetEnergyLoss(0)``, ``CameraGetActiveCameraID``, ``EMGetHighTension``,
``FindImageByID``); ``Py_Camera.GetDefaultParameters() -> (exposure, bin_x, bin_y,
processing, top, left, bottom, right)``; the ``GetCamera*Enum`` functions; the DigiScan tag
names other than the offsets, centres and spacings (``Horizontal/Vertical Pixel Step``, the
``Perpendicular`` cross terms and their sign convention with rotation, ``Rotation``);
whether a plain camera acquisition carries the ``EELS Spectrometer`` tags; DM's exact error
texts. The DigiScan model (beam position in DS units = centre offset + rotated, scaled pixel
offset from the image centre) is a plausible model, not a measurement.

Test hooks (not part of DM): ``_instrument`` (state, ``calls``, ``threads`` that called
into DM, ``fail`` to make a named function raise DM-style, ``during_scan`` callback) and
``_reset()``.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
from _dmscript import ScriptError, run_script

# ---------------------------------------------------------------------------- tag groups


class Py_TagGroup:
    """DM tag group: nested labels, paths joined with ``:``."""

    def __init__(self) -> None:
        self._tags: Dict[str, Any] = {}

    def _walk(self, path: str, create: bool = False) -> Tuple[Optional[Py_TagGroup], str]:
        parts = path.split(":")
        group: Optional[Py_TagGroup] = self
        for part in parts[:-1]:
            child = group._tags.get(part)
            if not isinstance(child, Py_TagGroup):
                if not create:
                    return None, parts[-1]
                child = group._tags[part] = Py_TagGroup()
            group = child
        return group, parts[-1]

    def _get(self, path: str) -> Tuple[bool, Any]:
        group, label = self._walk(path)
        if group is None or label not in group._tags:
            return False, None
        return True, group._tags[label]

    def _set(self, path: str, value: Any) -> None:
        group, label = self._walk(path, create=True)
        group._tags[label] = value

    def GetTagAsFloat(self, path: str) -> Tuple[bool, float]:
        found, value = self._get(path)
        if not found or isinstance(value, (str, Py_TagGroup)):
            return False, 0.0
        return True, float(value)

    GetTagAsDouble = GetTagAsFloat

    def GetTagAsLong(self, path: str) -> Tuple[bool, int]:
        found, value = self._get(path)
        if not found or isinstance(value, (str, Py_TagGroup)):
            return False, 0
        return True, int(value)

    def GetTagAsBoolean(self, path: str) -> Tuple[bool, bool]:
        found, value = self._get(path)
        if not found or isinstance(value, (str, Py_TagGroup)):
            return False, False
        return True, bool(value)

    def GetTagAsString(self, path: str) -> Tuple[bool, str]:
        found, value = self._get(path)
        if not found or isinstance(value, Py_TagGroup):
            return False, ""
        return True, str(value)

    def GetTagAsTagGroup(self, path: str) -> Tuple[bool, Optional[Py_TagGroup]]:
        found, value = self._get(path)
        return (True, value) if found and isinstance(value, Py_TagGroup) else (False, None)

    def SetTagAsFloat(self, path: str, value: float) -> None:
        self._set(path, float(value))

    SetTagAsDouble = SetTagAsFloat

    def SetTagAsLong(self, path: str, value: int) -> None:
        self._set(path, int(value))

    SetTagAsShort = SetTagAsLong

    def SetTagAsBoolean(self, path: str, value: bool) -> None:
        self._set(path, bool(value))

    def SetTagAsString(self, path: str, value: str) -> None:
        self._set(path, str(value))

    def SetTagAsTagGroup(self, path: str, value: Py_TagGroup) -> None:
        self._set(path, value)

    def DoesTagExist(self, path: str) -> bool:
        return self._get(path)[0]

    def DeleteTagWithLabel(self, label: str) -> None:
        self._tags.pop(label, None)

    def IsList(self) -> bool:
        return False

    def CountTags(self) -> int:
        return len(self._tags)

    def paths(self, prefix: str = "") -> List[str]:
        """All leaf paths (test helper, not DM API)."""
        out = []
        for label, value in self._tags.items():
            if isinstance(value, Py_TagGroup):
                out += value.paths(prefix + label + ":")
            else:
                out.append(prefix + label)
        return out


def NewTagGroup() -> Py_TagGroup:
    return Py_TagGroup()


# ---------------------------------------------------------------------------- images


class Py_Image:
    """DM image: numpy data (rows, columns), tags, per-dimension calibration."""

    def __init__(self, data: np.ndarray, name: str = "") -> None:
        self._data = data
        self._tags = Py_TagGroup()
        self._calibration = [[0.0, 1.0, ""] for _ in range(data.ndim)]
        self._id = next(_instrument.image_ids)
        self._name = name
        self.shown = False
        _instrument.images[self._id] = self

    def GetNumArray(self) -> np.ndarray:
        return self._data  # a view: like DM, writes go to the image

    def GetTagGroup(self) -> Py_TagGroup:
        return self._tags

    def GetID(self) -> int:
        return self._id

    def GetName(self) -> str:
        return self._name

    def SetName(self, name: str) -> None:
        self._name = str(name)

    def ShowImage(self) -> None:
        self.shown = True
        _instrument.front = self

    def _dim(self, dim: int) -> List[Any]:
        # DM's dimension 0 is x (columns): numpy's last axis
        if not 0 <= dim < len(self._calibration):
            raise RuntimeError(
                f"Dimension {dim} out of range for a {len(self._calibration)}-D image"
            )
        return self._calibration[dim]

    def GetDimensionCalibration(self, dim: int, calibration_flags: int) -> Tuple[float, float, Any]:
        origin, scale, units = self._dim(dim)
        return origin, scale, (b"\xb5m" if units == "µm" else units)

    def SetDimensionCalibration(
        self, dim: int, origin: float, scale: float, units: str, calibration_flags: int
    ) -> None:
        self._dim(dim)[:] = [float(origin), float(scale), str(units)]

    def GetDimensionScale(self, dim: int) -> float:
        return self._dim(dim)[1]

    def GetDimensionOrigin(self, dim: int) -> float:
        return self._dim(dim)[0]

    def GetDimensionUnitString(self, dim: int) -> str:
        return self._dim(dim)[2]


# ---------------------------------------------------------------------------- the instrument


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


_instrument = _Instrument()


def _reset() -> None:
    """Fresh microscope and session (test hook)."""
    global _instrument
    _instrument = _Instrument()


def _recorded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Record the call; raise DM-style when a test asked this function to fail."""

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        _instrument.calls.append((fn.__name__, args))
        _instrument.threads.add(threading.get_ident())
        message = _instrument.fail.get(fn.__name__)
        if message is not None:
            raise RuntimeError(message)
        return fn(*args)

    return wrapper


# ---------------------------------------------------------------------------- module functions


@_recorded
def CreateImage(array: np.ndarray) -> Py_Image:
    array = np.asarray(array)
    if not array.flags.c_contiguous or array.dtype == object:
        raise RuntimeError("CreateImage: the array must be C-contiguous numeric data")
    return Py_Image(array.copy())


@_recorded
def FindImageByID(image_id: int) -> Py_Image:
    try:
        return _instrument.images[int(image_id)]
    except KeyError:
        raise RuntimeError(f"No image with ID {int(image_id)}") from None


@_recorded
def GetFrontImage() -> Py_Image:
    if _instrument.front is None:
        raise RuntimeError("There is no front image")
    return _instrument.front


@_recorded
def GetPersistentTagGroup() -> Py_TagGroup:
    return _instrument.persistent


@_recorded
def GetCameraUnprocessedEnum() -> int:
    return 1


@_recorded
def GetCameraDarkSubtractedEnum() -> int:
    return 2


@_recorded
def GetCameraGainNormalizedEnum() -> int:
    return 3


@_recorded
def ExecuteScriptString(source: str) -> int:
    _instrument.scripts.append(source)
    run_script(source, _SCRIPT_FUNCTIONS, _instrument.persistent.SetTagAsFloat)
    return 0


# -- DigiScan


@_recorded
def DS_CreateParameters(
    width: int, height: int, rotation: float, pixel_time: float, line_sync: bool
) -> int:
    if int(width) != width or int(height) != height or width < 1 or height < 1:
        raise RuntimeError("DS_CreateParameters: width and height must be positive integers")
    param_id = next(_instrument.ds_ids)
    _instrument.ds_params[param_id] = {
        "width": int(width),
        "height": int(height),
        "rotation": float(rotation),
        "pixel_time": max(float(pixel_time), _instrument.min_pixel_time_us),
        "line_sync": bool(line_sync),
        "signals": {},
    }
    return param_id


def _params(param_id: int) -> Dict[str, Any]:
    try:
        return _instrument.ds_params[param_id]
    except KeyError:
        raise RuntimeError(f"DigiScan parameter set {param_id} does not exist") from None


@_recorded
def DS_SetParametersSignal(
    param_id: int, signal_index: int, data_type: int, selected: bool, image_id: int
) -> bool:
    params = _params(param_id)
    if data_type not in (1, 2, 4):
        raise RuntimeError("DS_SetParametersSignal: data type must be 1, 2 or 4 bytes")
    if selected:
        params["signals"][int(signal_index)] = (int(data_type), int(image_id))
    else:
        params["signals"].pop(int(signal_index), None)
    return True


@_recorded
def DS_DeleteParameters(param_id: int) -> None:
    _params(param_id)
    del _instrument.ds_params[param_id]


@_recorded
def DS_DialogEnabled(enabled: bool) -> None:
    _instrument.dialog_enabled = bool(enabled)


def _survey_pattern(field: Dict[str, Any], signal_index: int) -> np.ndarray:
    rows = np.arange(field["height"])[:, None]
    cols = np.arange(field["width"])[None, :]
    return (rows * field["width"] + cols + 100000 * (signal_index + 1)).astype(np.uint32)


@_recorded
def DS_StartAcquisition(param_id: int, continuous: bool, synchronous: bool) -> None:
    params = _params(param_id)
    if continuous and synchronous:
        raise RuntimeError("continuous and synchronous acquisition would never return")
    if not params["signals"]:
        raise RuntimeError("DigiScan: no signal selected")
    inst = _instrument
    w, h = params["width"], params["height"]
    field = dict(params, center=np.array([w / 2.0, h / 2.0]))
    targets = {}
    for index, (depth, image_id) in params["signals"].items():
        image = (
            Py_Image(np.zeros((h, w), np.uint32)) if image_id == 0 else inst.images.get(image_id)
        )
        if image is None:
            raise RuntimeError(f"DigiScan: no image with ID {image_id}")
        data = image.GetNumArray()
        if data.shape != (h, w) or data.dtype.kind != "u" or data.dtype.itemsize != depth:
            raise RuntimeError(
                f"DigiScan: image {image_id} must be a {w}x{h} unsigned {depth}-byte image"
            )
        targets[index] = image
    inst.acquiring, inst.stop_requested = True, False
    inst.pending_scan = (targets, field)
    if not synchronous:
        # DigiScan scans in the background; DSIsAcquisitionActive reports when it is done
        # (the frame runs during the first poll, then completes).
        inst.scan_polls = 0
        return
    try:
        if inst.during_scan is not None:
            inst.during_scan()
    finally:
        _finish_scan()


def _finish_scan() -> None:
    inst = _instrument
    targets, field = inst.pending_scan
    inst.pending_scan = None
    try:
        h = field["height"]
        rows = h // 2 if inst.stop_requested else h  # a stopped frame is incomplete
        for index, image in targets.items():
            image.GetNumArray()[:rows] = _survey_pattern(field, index)[:rows]
            _tag_survey(image, field, index)
    finally:
        inst.acquiring = False
    inst.last_field = field
    inst.scan_control = False  # DigiScan restores beam control after the acquisition


def _acquisition_active() -> float:
    inst = _instrument
    if inst.pending_scan is None:
        return 0.0
    inst.scan_polls += 1
    if inst.scan_polls == 1 and inst.during_scan is not None:
        inst.during_scan()  # mid-frame: a stop now leaves the frame incomplete
    if inst.scan_polls < inst.frame_polls and not inst.stop_requested:
        return 1.0
    _finish_scan()
    return 0.0


def _tag_survey(image: Py_Image, field: Dict[str, Any], signal_index: int) -> None:
    inst = _instrument
    tags = image.GetTagGroup()
    m = inst.ds_matrix(field)
    if inst.write_digiscan_tags:
        for axis, key in ((0, "Horizontal"), (1, "Vertical")):
            tags.SetTagAsFloat(f"DigiScan:{key} DS Offset", inst.ds_field_center[axis])
            tags.SetTagAsFloat(f"DigiScan:{key} Image Center", float(field["center"][axis]))
            tags.SetTagAsFloat(f"DigiScan:{key} Spacing", float(np.hypot(*m[:, axis])))
        if inst.write_pixel_steps:
            tags.SetTagAsFloat("DigiScan:Horizontal Pixel Step", float(m[0, 0]))
            tags.SetTagAsFloat("DigiScan:Horizontal Perpendicular Pixel Step", float(m[1, 0]))
            tags.SetTagAsFloat("DigiScan:Vertical Pixel Step", float(m[1, 1]))
            tags.SetTagAsFloat("DigiScan:Vertical Perpendicular Pixel Step", float(m[0, 1]))
        tags.SetTagAsFloat("DigiScan:Rotation", field["rotation"])
        tags.SetTagAsFloat("DigiScan:Sample Time", field["pixel_time"])
        tags.SetTagAsFloat("DigiScan:Image Height", float(field["height"]))
        tags.SetTagAsLong("DigiScan:Signal Index", signal_index)
    tags.SetTagAsFloat("Microscope Info:Voltage", inst.high_tension_v)
    tags.SetTagAsString("Microscope Info:Illumination Mode", "STEM")
    scale, units = inst.field_of_view_nm / field["width"], "nm"
    if inst.field_of_view_nm >= 1000.0:
        scale, units = scale / 1000.0, "µm"
    image.SetDimensionCalibration(0, 0.0, scale, units, 0)
    image.SetDimensionCalibration(1, 0.0, scale * inst.ds_aspect, units, 0)


@_recorded
def DS_GetBeamDSPosition() -> Tuple[float, float]:
    return _instrument.beam_ds


@_recorded
def DS_MoveBeamTo(x: float, y: float) -> None:
    _move_beam(x, y)


def _move_beam(x: float, y: float) -> None:
    _instrument.beam_ds = (float(x), float(y))
    if _instrument.scan_control:  # "the beam only moves if DigiScan controls it"
        _instrument.beam_physical_ds = _instrument.beam_ds


# -- microscope and camera


class Py_Microscope:
    """The microscope as DM sees it."""

    def __init__(self) -> None:
        _instrument.calls.append(("Py_Microscope", ()))

    @staticmethod
    def _check(name: str) -> None:
        _instrument.calls.append((name, ()))
        if name in _instrument.fail:
            raise RuntimeError(_instrument.fail[name])

    def GetHighTension(self) -> float:
        self._check("GetHighTension")
        return _instrument.high_tension_v

    def HasBeamBlanker(self) -> bool:
        self._check("HasBeamBlanker")
        return _instrument.has_blanker

    def SetBeamBlanked(self, blanked: bool) -> None:
        self._check("SetBeamBlanked")
        if not _instrument.has_blanker:
            raise RuntimeError("The microscope has no beam blanker")
        _instrument.blanked = bool(blanked)
        _instrument.calls[-1] = ("SetBeamBlanked", (bool(blanked),))


class Py_Camera:
    """The active (EELS) camera."""

    @staticmethod
    def _check(name: str, args: tuple = ()) -> None:
        _instrument.calls.append((name, args))
        if name in _instrument.fail:
            raise RuntimeError(_instrument.fail[name])

    def PrepareForAcquire(self) -> None:
        self._check("PrepareForAcquire")
        _instrument.prepared = True

    def GetDefaultParameters(self) -> Tuple[float, int, int, int, int, int, int, int]:
        self._check("GetDefaultParameters")
        top, left, bottom, right = _instrument.default_read_area
        return 1.0, 1, 1, 3, top, left, bottom, right

    def AcquireImage(
        self,
        exposure: float,
        bin_x: int,
        bin_y: int,
        processing: int,
        top: int,
        left: int,
        bottom: int,
        right: int,
    ) -> Py_Image:
        args = (exposure, bin_x, bin_y, processing, top, left, bottom, right)
        self._check("AcquireImage", args)
        return _acquire_camera_image(*args)


def _acquire_camera_image(
    exposure: float,
    bin_x: int,
    bin_y: int,
    processing: int,
    top: int,
    left: int,
    bottom: int,
    right: int,
) -> Py_Image:
    inst = _instrument
    rows, cols = inst.sensor
    if not inst.prepared:
        raise RuntimeError("Camera not prepared for acquisition")
    if not (0 <= top < bottom <= rows and 0 <= left < right <= cols):
        raise RuntimeError(f"Invalid CCD read area ({top}, {left}, {bottom}, {right})")
    if (bottom - top) % bin_y or (right - left) % bin_x or processing not in (1, 2, 3):
        raise RuntimeError("Invalid binning or processing for this read area")
    if not exposure > 0:
        raise RuntimeError("Exposure must be positive")
    columns = np.arange(left, right, dtype=np.float64)
    energy = (columns - inst.zlp_column) * inst.dispersion + inst.energy_loss
    # the zero-loss peak's height tells which pixel the beam is on (-1 when no scan yet)
    x, y = (
        inst.pixel_of(inst.beam_physical_ds)
        if inst.beam_physical_ds and inst.last_field
        else (-1.0, -1.0)
    )
    height = 1000.0 + 10.0 * x + y
    per_column = exposure * (
        height * np.exp(-0.5 * (energy / 1.5) ** 2) + 50.0 * np.exp(-energy.clip(0) / 200.0)
    )
    binned = per_column.reshape(-1, bin_x).sum(axis=1)
    n_rows = (bottom - top) // bin_y
    data = np.repeat(binned[None, :] * bin_y / (bottom - top), n_rows, axis=0)
    if processing == 1:
        data = data + 250.0  # the camera's dark level is still in unprocessed data
    image = Py_Image(data.astype(np.float32))
    image.SetDimensionCalibration(
        0,
        (inst.zlp_column - left - inst.energy_loss / inst.dispersion) / bin_x,
        inst.dispersion * bin_x,
        "eV",
        0,
    )
    tags = image.GetTagGroup()
    tags.SetTagAsFloat("Acquisition:Parameters:High Level:Exposure (s)", exposure)
    tags.SetTagAsFloat("Acquisition:Parameters:Detector:exposure (s)", exposure)
    tags.SetTagAsLong("Acquisition:Parameters:Detector:hbin", bin_x)
    tags.SetTagAsLong("Acquisition:Parameters:Detector:vbin", bin_y)
    tags.SetTagAsString(
        "Acquisition:Parameters:High Level:Processing",
        {1: "Unprocessed", 2: "Dark Subtracted", 3: "Gain Normalized"}[processing],
    )
    tags.SetTagAsString("Acquisition:Device:Name", "FAKE QUEFINA")
    tags.SetTagAsFloat("Microscope Info:Voltage", inst.high_tension_v)
    if inst.write_eels_tags:
        tags.SetTagAsFloat("EELS Spectrometer:Dispersion (eV/ch)", inst.dispersion)
        tags.SetTagAsFloat("EELS Spectrometer:Energy loss (eV)", inst.energy_loss)
        tags.SetTagAsFloat("EELS Spectrometer:Drift tube voltage (V)", inst.energy_loss)
        tags.SetTagAsString("EELS Spectrometer:Instrument name", "Fake Enfinium")
        tags.SetTagAsFloat("EELS:Experimental Conditions:Convergence semi-angle (mrad)", 30.0)
        tags.SetTagAsFloat("EELS:Experimental Conditions:Collection semi-angle (mrad)", 33.0)
    return image


@_recorded
def GetActiveCamera() -> Py_Camera:
    return Py_Camera()


# ---------------------------------------------------------------------------- DM-script side


def _script(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        _instrument.calls.append((name, args))
        _instrument.threads.add(threading.get_ident())
        if name in _instrument.fail:
            raise ScriptError(_instrument.fail[name])
        return fn(*args)

    return run


def _set_scan_control(on: float) -> None:
    _instrument.scan_control = bool(on)


def _stop(param_id: float) -> None:
    if _instrument.acquiring:
        _instrument.stop_requested = True


def _set_energy_loss(ev: float) -> None:
    _instrument.energy_loss = float(ev)


def _calc_ds(image: Py_Image, x: float, y: float) -> Tuple[float, float]:
    if not isinstance(image, Py_Image) or _instrument.last_field is None:
        raise ScriptError("DSCalcDSCoordFromImage: not a DigiScan image")
    return _instrument.ds_of(_instrument.last_field, x, y)


def _find_for_script(image_id: float) -> Py_Image:
    try:
        return _instrument.images[int(image_id)]
    except KeyError:
        raise ScriptError(f"No image with ID {int(image_id)}") from None


_SCRIPT_FUNCTIONS = {
    name.lower(): (_script(name, fn), refs)
    for name, fn, refs in [
        ("DSSetScanControl", _set_scan_control, ()),
        ("DSStopAcquisition", _stop, ()),
        ("DSIsAcquisitionActive", _acquisition_active, ()),
        ("DSSetBeamDSPosition", _move_beam, ()),
        ("DSGetBeamDSPosition", lambda x, y: _instrument.beam_ds, (0, 1)),
        ("DSCalcDSCoordFromImage", lambda img, x, y, a, b: _calc_ds(img, x, y), (3, 4)),
        ("IFSetEnergyLoss", _set_energy_loss, ()),
        ("IFWaitForFilter", lambda: None, ()),
        ("IFGetEnergyLoss", lambda which: _instrument.energy_loss, ()),
        ("CameraGetActiveCameraID", lambda: float(_instrument.active_camera_id), ()),
        ("EMGetHighTension", lambda: _instrument.high_tension_v, ()),
        ("FindImageByID", lambda image_id: _find_for_script(image_id), ()),
    ]
}
