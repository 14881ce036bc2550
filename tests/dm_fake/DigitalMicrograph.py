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

Where each part is: this module is DM's API (the module functions, the microscope and camera
objects, the DM-script functions); DM's data objects (tag groups, images) are
:mod:`_dmobjects`, the simulated instrument's state and what its DigiScan frames record
:mod:`_dminstrument`, the DM-script interpreter :mod:`_dmscript`. All of DM's names are here,
as ``import DigitalMicrograph as DM`` sees them; tests load the four files by path
(tests/bridge/dm/conftest.py).
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Dict, Tuple

import numpy as np
from _dminstrument import _Instrument
from _dmobjects import NewTagGroup, Py_Image, Py_TagGroup  # noqa: F401  (DM's names)
from _dmscript import ScriptError, run_script

# ---------------------------------------------------------------------------- the instrument


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
    return Py_Image(array.copy(), _instrument)


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
            Py_Image(np.zeros((h, w), np.uint32), inst)
            if image_id == 0
            else inst.images.get(image_id)
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
            image.GetNumArray()[:rows] = inst.survey_pattern(field, index)[:rows]
            inst.tag_survey(image, field, index)
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
    image = Py_Image(data.astype(np.float32), inst)
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
