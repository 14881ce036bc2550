"""How the bridge talks to DigitalMicrograph: every call into the ``DigitalMicrograph`` module.

:class:`DMSession` owns the module and knows, for each job, which DM call does it -- a Python
API function where DM's Python exposes one, a DM-script through ``ExecuteScriptString`` where
only DM-script has it. It times every call (instrument time) and turns DM's failures into
:class:`~dm_bridge.errors.InstrumentError` with DM's message. It keeps no microscope state;
:mod:`.digitalmicrograph` (the backend) does.

DM-script hands numbers back through DM's persistent tag group (the only channel from
DM-script to Python; execdmscript works the same way): the script stores each result under
``ophyd_stem_bridge_<name>``, which is cleared before and after, so a script that silently
did nothing cannot return a stale number.

How each job reaches DM (the names are DM's; how sure we are: see :mod:`.digitalmicrograph`):

============================  =====================================================
survey image (DigiScan)       ``DM.DS_CreateParameters(width, height, rotation,
                              pixel_time_us, line_sync)``, ``DS_SetParametersSignal(
                              id, signal, 4, True, image_id)`` into images we create
                              with ``DM.CreateImage``, ``DS_StartAcquisition(id,
                              False, False)`` (asynchronous) watched with DM-script
                              ``DSIsAcquisitionActive()``, ``DS_DeleteParameters``,
                              with ``DS_DialogEnabled(False)`` around it
calibration, read-back        the acquired image: ``GetNumArray`` (copied: it is a view
                              on DM's memory), ``GetDimensionCalibration(dim, 0)``,
                              ``GetTagGroup()`` with ``DigiScan:`` tags (dm_calibration)
beam placement                pixel -> DigiScan in :class:`~.dm_calibration.DigiScanFrame`
                              only, then ``DM.DS_MoveBeamTo`` (DM-script
                              ``DSSetBeamDSPosition`` where the Python call is absent);
                              read back with ``DS_GetBeamDSPosition``; DigiScan takes
                              beam control first (``DSSetScanControl(1)``)
EELS spectrum                 ``DM.GetActiveCamera()``, ``PrepareForAcquire()``,
                              ``AcquireImage(exposure, hbin, vbin, processing, top,
                              left, bottom, right)`` in gain-normalised (processed)
                              mode; rows summed to a 1-D spectrum; energy axis from the
                              spectrum's calibration
energy offset                 DM-script ``IFSetEnergyLoss(eV)`` + ``IFWaitForFilter()``,
                              read back with ``IFGetEnergyLoss(0)``
exposure, dispersion,         read back from the last spectrum's tags (``EELS
binning (read-back)           Spectrometer:Dispersion (eV/ch)``, ``Acquisition:
                              Parameters:High Level:Exposure (s)``, ...)
blank / unblank               ``DM.Py_Microscope().SetBeamBlanked(bool)``
high tension                  ``DM.Py_Microscope().GetHighTension()`` (volts)
abort                         DM-script ``DSStopAcquisition(-1)`` during a DigiScan frame,
                              sent by the script thread that watches the frame (an abort
                              from another thread only raises a flag)
============================  =====================================================

Standard library and numpy only, Python 3.8 syntax.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import BadRequest, BridgeError, InstrumentError, Unsupported

__all__ = ["PROCESSING", "RESULT_TAG", "DMSession", "import_digital_micrograph"]

log = logging.getLogger(__name__)

#: camera processing levels in DM's numbering (1 unprocessed, 2 dark subtracted, 3 gain
#: normalised = "processed") and the DM functions that report them where they exist
PROCESSING = {"unprocessed": 1, "dark_subtracted": 2, "gain_normalized": 3}
_PROCESSING_ENUM = {
    "unprocessed": "GetCameraUnprocessedEnum",
    "dark_subtracted": "GetCameraDarkSubtractedEnum",
    "gain_normalized": "GetCameraGainNormalizedEnum",
}

#: persistent-tag label prefix through which DM-script hands numbers back
RESULT_TAG = "ophyd_stem_bridge"

#: DigiScan data depth in bytes (the widest; the survey is returned as float32 anyway)
DATA_DEPTH = 4


def import_digital_micrograph() -> Any:
    """Import DM's own ``DigitalMicrograph`` module, or explain why that cannot work here."""
    try:
        import DigitalMicrograph
    except ImportError as exc:
        raise ImportError(
            "the 'dm' backend runs only inside Gatan DigitalMicrograph (GMS 3.4 or later, "
            "installed with Python): the 'DigitalMicrograph' module exists only there. "
            "Start the bridge from a Python script window in DM (docs/dm-install.md), or "
            "serve '--backend twin' / '--backend replay' elsewhere."
        ) from exc
    return DigitalMicrograph


def dm_number(value: float) -> str:
    """A float as DM-script source text; refuses NaN and infinities."""
    value = float(value)
    if not math.isfinite(value):
        raise BadRequest(f"cannot send non-finite number {value!r} to DigitalMicrograph")
    return repr(value)


class Stopwatch:
    """Seconds spent in one :meth:`DMSession.call` block."""

    seconds = 0.0


class DMSession:
    """The ``DigitalMicrograph`` module, one job per method.

    Args:
        dm: the ``DigitalMicrograph`` module (default: imported now).
        account: called with the seconds of every DM call (the backend's instrument time).

    Example (inside DM)::

        session = DMSession()
        with session.call("read the energy loss"):
            loss = session.energy_loss()
    """

    def __init__(self, dm: Any = None, account: Optional[Callable[[float], None]] = None) -> None:
        self.dm = import_digital_micrograph() if dm is None else dm
        self._account = account
        self._scan_control = False
        self._camera: Any = None

    @contextlib.contextmanager
    def call(self, action: str) -> Iterator[Stopwatch]:
        """Time a block of DM calls and turn DM's failures into InstrumentError."""
        watch = Stopwatch()
        start = time.perf_counter()
        try:
            yield watch
        except BridgeError:
            raise
        except Exception as exc:
            raise InstrumentError(f"DigitalMicrograph could not {action}: {exc}") from exc
        finally:
            watch.seconds = time.perf_counter() - start
            if self._account is not None:
                self._account(watch.seconds)

    def routes(self) -> Dict[str, str]:
        """Which DM call serves each job that has two possible routes (for ``hello``)."""
        has = lambda name: hasattr(self.dm, name)  # noqa: E731
        return {
            "move_beam": "DS_MoveBeamTo" if has("DS_MoveBeamTo") else "DSSetBeamDSPosition",
            "read_beam": "DS_GetBeamDSPosition"
            if has("DS_GetBeamDSPosition")
            else "DSGetBeamDSPosition",
            "scan_control": "DS_SetScanControl" if has("DS_SetScanControl") else "DSSetScanControl",
        }

    # ---------------------------------------------------------------- DM-script

    def run_script(self, source: str) -> None:
        self.dm.ExecuteScriptString(source)

    def script_numbers(
        self, statements: Sequence[str], results: Mapping[str, str]
    ) -> Dict[str, float]:
        """Run DM-script ``statements``, then return each ``results`` expression's value."""
        persistent = self.dm.GetPersistentTagGroup()
        labels = {name: f"{RESULT_TAG}_{name}" for name in results}
        lines = list(statements) + [
            f'GetPersistentTagGroup().TagGroupSetTagAsNumber("{labels[name]}", {expr})'
            for name, expr in results.items()
        ]
        for label in labels.values():
            persistent.DeleteTagWithLabel(label)
        try:
            self.run_script("\n".join(lines))
            out = {}
            for name, label in labels.items():
                found, value = persistent.GetTagAsFloat(label)
                if not found:
                    raise InstrumentError(f"DM-script returned no value for {results[name]}")
                out[name] = float(value)
            return out
        finally:
            for label in labels.values():
                persistent.DeleteTagWithLabel(label)

    # ---------------------------------------------------------------- DigiScan

    def acquire_digiscan(
        self,
        width: int,
        height: int,
        rotation: float,
        dwell_time: float,
        line_sync: bool,
        signals: Mapping[str, int],
        show: bool,
        stop_requested: Callable[[], bool],
        poll_interval: float = 0.01,
    ) -> Tuple[Dict[str, Any], bool]:
        """One DigiScan frame into images we create.

        The frame is started asynchronously and watched from this thread (DM's script
        thread): between polls of ``DSIsAcquisitionActive`` it asks ``stop_requested()`` and,
        if so, stops the frame with ``DSStopAcquisition`` itself. So an abort arriving from
        another thread only raises a flag; DM is never called from anywhere else.

        Returns:
            ``(holders, stopped)``: signal name -> ``Py_Image``, and whether the frame was
            stopped before its end (then it is incomplete).

        Raises:
            InstrumentError: DigiScan still reports the frame active long after it should
                have ended (it is stopped first).
        """
        dm = self.dm
        holders: Dict[str, Any] = {}
        param_id = dm.DS_CreateParameters(width, height, rotation, dwell_time * 1e6, line_sync)
        stopped = False
        try:
            for name, index in signals.items():
                holder = dm.CreateImage(np.zeros((height, width), np.uint32))
                holder.SetName(f"ophyd-stem survey {name}")
                if show:
                    holder.ShowImage()
                holders[name] = holder
                dm.DS_SetParametersSignal(param_id, index, DATA_DEPTH, True, holder.GetID())
            # a frame that is not over well after its time has hung: stop waiting for it
            patience = 3.0 * width * height * dwell_time + 30.0
            dm.DS_DialogEnabled(False)  # the operator cannot change the frame under us
            try:
                if stop_requested():
                    return holders, True
                dm.DS_StartAcquisition(param_id, False, False)  # asynchronous: watched here
                started = time.monotonic()
                while self.digiscan_active():
                    if not stopped and stop_requested():
                        self.stop_digiscan()
                        stopped = True
                    elif time.monotonic() - started > patience:
                        self.stop_digiscan()
                        raise InstrumentError(
                            f"DigiScan still reports the frame active after {patience:.0f} s "
                            "(expected about "
                            f"{width * height * dwell_time:.3g} s); stopped it"
                        )
                    time.sleep(poll_interval)
            finally:
                dm.DS_DialogEnabled(True)
        finally:
            dm.DS_DeleteParameters(param_id)
        self._scan_control = False  # DigiScan restores its own beam control after a frame
        return holders, stopped

    def digiscan_active(self) -> bool:
        """Whether DigiScan is acquiring (DM-script ``DSIsAcquisitionActive``)."""
        return bool(self.script_numbers([], {"active": "DSIsAcquisitionActive()"})["active"])

    def stop_digiscan(self) -> None:
        """Stop any running DigiScan acquisition now (DM-script ``DSStopAcquisition(-1)``)."""
        self.run_script("DSStopAcquisition(-1)")

    def move_beam(self, ds_x: float, ds_y: float) -> None:
        """Park the beam at a DigiScan position, taking DigiScan beam control first."""
        if not self._scan_control:
            if hasattr(self.dm, "DS_SetScanControl"):
                self.dm.DS_SetScanControl(True)
            else:
                self.run_script("DSSetScanControl(1)")
            self._scan_control = True
        if hasattr(self.dm, "DS_MoveBeamTo"):
            self.dm.DS_MoveBeamTo(float(ds_x), float(ds_y))
        else:
            self.run_script(f"DSSetBeamDSPosition({dm_number(ds_x)}, {dm_number(ds_y)})")

    def beam_position(self) -> Tuple[float, float]:
        """The beam's DigiScan position."""
        if hasattr(self.dm, "DS_GetBeamDSPosition"):
            ds_x, ds_y = self.dm.DS_GetBeamDSPosition()
            return float(ds_x), float(ds_y)
        got = self.script_numbers(
            [
                "number ophyd_stem_x, ophyd_stem_y",
                "DSGetBeamDSPosition(ophyd_stem_x, ophyd_stem_y)",
            ],
            {"x": "ophyd_stem_x", "y": "ophyd_stem_y"},
        )
        return got["x"], got["y"]

    def digiscan_position_of_pixel(self, image_id: int, x: float, y: float) -> Tuple[float, float]:
        """DM's own conversion (``DSCalcDSCoordFromImage``) of a pixel of a DigiScan image."""
        got = self.script_numbers(
            [
                f"image ophyd_stem_img := FindImageByID({int(image_id)})",
                "number ophyd_stem_x, ophyd_stem_y",
                f"DSCalcDSCoordFromImage(ophyd_stem_img, {dm_number(x)}, {dm_number(y)}, "
                "ophyd_stem_x, ophyd_stem_y)",
            ],
            {"x": "ophyd_stem_x", "y": "ophyd_stem_y"},
        )
        return got["x"], got["y"]

    # ---------------------------------------------------------------- microscope

    def high_tension_kv(self) -> float:
        return float(self.dm.Py_Microscope().GetHighTension()) / 1000.0

    def set_beam_blanked(self, blanked: bool) -> None:
        scope = self.dm.Py_Microscope()
        if hasattr(scope, "HasBeamBlanker") and not scope.HasBeamBlanker():
            raise Unsupported("the microscope reports no beam blanker to DigitalMicrograph")
        scope.SetBeamBlanked(bool(blanked))

    # ---------------------------------------------------------------- spectrometer, camera

    def energy_loss(self) -> float:
        """The spectrometer's energy loss (drift tube / HT offset), eV."""
        return self.script_numbers([], {"loss": "IFGetEnergyLoss(0)"})["loss"]

    def set_energy_loss(self, ev: float) -> None:
        """Set the energy loss and wait until the filter has settled."""
        self.run_script(f"IFSetEnergyLoss({dm_number(ev)})\nIFWaitForFilter()")

    def camera(self, camera_id: Optional[int]) -> Any:
        """The active camera, prepared for acquisition once per session."""
        if self._camera is None:
            camera = self.dm.GetActiveCamera()
            if camera_id is not None:
                active = int(self.script_numbers([], {"id": "CameraGetActiveCameraID()"})["id"])
                if active != int(camera_id):
                    raise InstrumentError(
                        f"the active camera in DigitalMicrograph has ID {active}, not "
                        f"{camera_id}: make the EELS camera the active camera in DM"
                    )
            camera.PrepareForAcquire()
            self._camera = camera
        return self._camera

    def default_read_area(self, camera: Any) -> Tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` of the camera's default read-out area."""
        _, _, _, _, top, left, bottom, right = camera.GetDefaultParameters()
        return int(top), int(left), int(bottom), int(right)

    def processing_code(self, processing: str) -> int:
        getter = getattr(self.dm, _PROCESSING_ENUM[processing], None)
        return int(getter()) if getter is not None else PROCESSING[processing]

    def forget(self) -> None:
        """Drop cached handles (the camera) and re-enable the DigiScan dialog."""
        with contextlib.suppress(Exception):
            self.dm.DS_DialogEnabled(True)
        self._camera = None
        self._scan_control = False
