"""The scan engine (DigiScan): survey images written to HDF5 and announced with
StreamResource / StreamDatum, so the catalog references them instead of copying them.

Each image reads back as ``(N, height, width)`` (one frame per event, no extra frame axis),
and each HDF5 file says what it holds: every dataset carries its signal's name, units and
calibration (pixel size in nm, field of view, dwell time) as attributes, so a file opened
outside the catalog is still a calibrated image.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

import h5py
import numpy as np
from event_model import DataKey
from ophyd_async.core import (
    DetectorAcquireLogic,
    DetectorDataLogic,
    DetectorTriggerLogic,
    PathProvider,
    StandardDetector,
    StreamableDataProvider,
    StreamResourceDataProvider,
    StreamResourceInfo,
    TriggerInfo,
    soft_signal_r_and_setter,
)
from ophyd_async.core._status import AsyncStatus

from dm_bridge.types import ImageAcquisition

from ._bridge import BridgeHandle, abandon_on_pause, bridge_signal

__all__ = ["ScanEngine"]

#: HDF5 group holding one dataset per detector signal, ``/entry/HAADF`` etc.
DATASET_GROUP = "/entry"


class _SurveyState:
    """What the trigger, acquire and data logics of one scan engine share."""

    def __init__(self, handle: BridgeHandle) -> None:
        self.handle = handle
        self.images_written, self.set_images_written = soft_signal_r_and_setter(int)
        self.to_acquire = 1
        self.file: h5py.File | None = None
        self.datasets: dict[str, h5py.Dataset] = {}
        self.shape: tuple[int, int] | None = None
        self.signals: tuple[str, ...] = ("HAADF",)
        self.instrument_time_total = 0.0
        self.count = 0
        self.last: ImageAcquisition | None = None
        #: why the last acquisition failed; ``failed`` is set with it, so a trigger can fail
        #: at once instead of waiting for an image that will not come
        self.error: BaseException | None = None
        self.failed = asyncio.Event()
        #: set by the device when it is connected in ophyd-async mock mode
        self.mock = False

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.file = None
        self.datasets = {}


class _SurveyTrigger(DetectorTriggerLogic):
    def __init__(self, state: _SurveyState) -> None:
        self.state = state

    async def prepare_internal(self, num: int, livetime: float, deadtime: float) -> None:
        # livetime/deadtime have no meaning for a scan: its length is pixels x dwell time.
        self.state.to_acquire = max(int(num), 1)

    async def default_trigger_info(self) -> TriggerInfo:
        return TriggerInfo()


class _SurveyAcquire(DetectorAcquireLogic):
    def __init__(self, state: _SurveyState) -> None:
        self.state = state
        self.task: asyncio.Task | None = None

    async def start_acquiring(self) -> None:
        self.task = asyncio.create_task(self._acquire(self.state.to_acquire))

    async def _acquire(self, count: int) -> None:
        try:
            await self._acquire_images(count)
        except Exception as exc:
            self.state.error = exc
            self.state.failed.set()
            raise

    async def _acquire_images(self, count: int) -> None:
        state = self.state
        for _ in range(count):
            if state.mock:
                # Mock mode never talks to the bridge: blank images of the prepared size.
                blank = np.zeros(state.shape or (1, 1), dtype=np.float32)
                acquisition = ImageAcquisition(
                    images=dict.fromkeys(state.signals, blank), pixel_size=1.0
                )
            else:
                acquisition = await state.handle.acquire(
                    state.handle.require_client().acquire_image
                )
            if state.file is None:
                raise RuntimeError("survey image acquired but no HDF5 file is open")
            for signal, dataset in state.datasets.items():
                image = acquisition.images.get(signal)
                if image is None:
                    raise RuntimeError(
                        f"the scan returned {sorted(acquisition.images)}, not {signal!r}: "
                        "change the detector signals between runs, not during one"
                    )
                if image.shape != state.shape:
                    raise RuntimeError(
                        f"the scan returned a {image.shape} image but this run was prepared "
                        f"for {state.shape}: change the scan size between runs, not during one"
                    )
                index = dataset.shape[0]
                dataset.resize(index + 1, axis=0)
                dataset[index] = image
                dataset.flush()
            state.instrument_time_total += float(acquisition.instrument_time)
            state.last = acquisition
            state.count += 1
            state.set_images_written(state.count)

    async def wait_for_idle(self) -> None:
        if self.task is not None:
            await self.task

    async def ensure_stopped(self) -> None:
        if self.task is not None and not self.task.done():
            with suppress(Exception):
                if self.state.mock:
                    raise RuntimeError("nothing to abort in mock mode")
                await self.state.handle.require_client().abort()
            self.task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self.task
        self.task = None


class _FramePerEvent(StreamResourceDataProvider):
    """One image per event, described as ``(height, width)``: ophyd-async prepends the frames
    per event (1) to the shape, and the catalog would read ``(N, 1, height, width)`` back."""

    async def make_datakeys(self, collections_per_event: int) -> dict[str, DataKey]:
        keys = await super().make_datakeys(collections_per_event)
        if collections_per_event == 1:
            for key in keys.values():
                key["shape"] = list(key["shape"])[1:]
                key["units"] = "counts"
        return keys


async def _calibration(device: ScanEngine) -> dict[str, float]:
    """The scan's calibration, for the HDF5 attributes (read through the signals, so mock
    mode gives zeros rather than failing)."""
    return {
        "pixel_size": float(await device.pixel_size.get_value()),
        "field_of_view": float(await device.field_of_view.get_value()),
        "dwell_time": float(await device.dwell_time.get_value()),
        "rotation": float(await device.rotation.get_value()),
    }


class _SurveyData(DetectorDataLogic):
    def __init__(
        self, state: _SurveyState, path_provider: PathProvider, device: ScanEngine
    ) -> None:
        self.state = state
        self.path_provider = path_provider
        self.device = device

    async def prepare_unbounded(self, datakey_name: str) -> StreamableDataProvider:
        state = self.state
        # Through the signals, so mock mode (set_mock_value) works like the real thing.
        height = int(await self.device.height.get_value())
        width = int(await self.device.width.get_value())
        state.signals = tuple(await self.device.signals.get_value()) or ("HAADF",)
        state.shape = (height, width)
        info = self.path_provider(datakey_name)
        directory = Path(info.directory_path)
        directory.mkdir(parents=True, exist_ok=True)
        calibration = await _calibration(self.device)
        state.close()
        state.file = h5py.File(directory / f"{info.filename}.h5", "w", libver="latest")
        state.file.attrs["description"] = "survey images of a STEM scan (ophyd-stem)"
        resources = []
        for signal in state.signals:
            path = f"{DATASET_GROUP}/{signal}"
            dataset = state.datasets[signal] = state.file.create_dataset(
                path,
                shape=(0, height, width),
                maxshape=(None, height, width),
                chunks=(1, height, width),
                dtype=np.float32,
            )
            _describe_dataset(dataset, signal, calibration)
            resources.append(
                StreamResourceInfo(
                    data_key=_data_key(datakey_name, signal),
                    shape=(height, width),
                    chunk_shape=(1, height, width),
                    dtype_numpy=np.dtype(np.float32).str,
                    parameters={"dataset": path},
                )
            )
        # Readers (the catalog) may open the file while the run is still writing it.
        state.file.swmr_mode = True
        state.count = 0
        state.set_images_written(0)
        return _FramePerEvent(
            uri=f"{info.directory_uri}{info.filename}.h5",
            resources=resources,
            mimetype="application/x-hdf5",
            collections_written_signal=state.images_written,
        )

    def get_hinted_fields(self, datakey_name: str) -> Sequence[str]:
        # Nothing for BestEffortCallback to plot against time (it plots scalars only: a
        # hinted image made an empty figure and a warning per survey).
        return []

    async def stop(self) -> None:
        self.state.close()


async def _awaited(status) -> None:
    await status


def _describe_dataset(dataset: h5py.Dataset, signal: str, calibration: dict[str, float]) -> None:
    """Attributes that make a dataset a calibrated image on its own (HyperSpy's and NeXus'
    words where they have one): axes frame/y/x, x and y in nm at ``pixel_size`` nm/px with
    the first pixel's centre at 0."""
    pixel = calibration["pixel_size"]
    dataset.attrs.update(
        {
            "signal": signal,
            "long_name": f"{signal} intensity",
            "units": "counts",
            "axes": np.array(["frame", "y", "x"], dtype=h5py.string_dtype()),
            "pixel_size": pixel,
            "pixel_size_units": "nm",
            "x_scale": pixel,
            "y_scale": pixel,
            "x_offset": 0.0,
            "y_offset": 0.0,
            "x_units": "nm",
            "y_units": "nm",
            "field_of_view": calibration["field_of_view"],
            "field_of_view_units": "nm",
            "dwell_time": calibration["dwell_time"],
            "dwell_time_units": "s",
            "rotation": calibration["rotation"],
            "rotation_units": "deg",
        }
    )


def _data_key(datakey_name: str, signal: str) -> str:
    return f"{datakey_name}-{signal.lower()}"


class ScanEngine(StandardDetector):
    """The scan engine (DigiScan): triggering acquires a survey image of each signal.

    Images go to an HDF5 file per run under the path provider's directory (the catalog's
    assets directory) and are announced with StreamResource/StreamDatum; the data key of
    each is ``<name>-<signal>``, e.g. ``scan-haadf``. The configuration holds the scan
    parameters and the calibration (pixel size in nm), so every run records how its images
    were taken.

    Example (on the digital twin, in this process; the image goes to the assets folder of
    ``$OPHYD_STEM_DATA_DIR``):
        >>> import bluesky.plan_stubs as bps
        >>> import bluesky.plans as bp
        >>> from bluesky import RunEngine
        >>> from ophyd_stem.sim import twin_microscope
        >>> RE = RunEngine()
        >>> scan = twin_microscope("graphene").scan
        >>> RE(bps.mv(scan.width, 64, scan.height, 64, scan.dwell_time, 4e-6))   # px, s
        ()
        >>> names = []
        >>> uids = RE(bp.count([scan]), lambda name, doc: names.append(name))
        >>> names
        ['start', 'descriptor', 'stream_resource', 'stream_datum', 'event', 'stop']
    """

    def __init__(self, handle: BridgeHandle, path_provider: PathProvider, name: str = "") -> None:
        self._handle = handle
        self._state = _SurveyState(handle)
        self._paused = asyncio.Event()
        self.width = self._param(int, "width", "px")
        self.height = self._param(int, "height", "px")
        self.dwell_time = self._param(float, "dwell_time", "s", 9)
        self.rotation = self._param(float, "rotation", "deg", 3)
        self.field_of_view = self._param(float, "field_of_view", "nm", 4)
        self.signals = self._param(Sequence[str], "signals", None)
        self.pixel_size = bridge_signal(
            float, handle, "scan/pixel_size", read=self._read_pixel_size, units="nm", precision=6
        )
        self.add_detector_logics(
            _SurveyTrigger(self._state),
            _SurveyAcquire(self._state),
            _SurveyData(self._state, path_provider, self),
        )
        # Scalars only (databroker's config reader takes no arrays); the signals acquired
        # are the run's data keys (scan-haadf, scan-bf...), so their list is not repeated.
        self.add_config_signals(
            self.width,
            self.height,
            self.dwell_time,
            self.rotation,
            self.field_of_view,
            self.pixel_size,
        )
        super().__init__(name=name)

    def _param(self, datatype, key: str, units: str | None, precision: int | None = None):
        async def read():
            scan = await self._handle.read_group("scan")
            value = scan[key]
            return list(value) if key == "signals" else datatype(value)

        async def write(value):
            client = self._handle.require_client()
            if key == "signals":
                value = [value] if isinstance(value, str) else list(value)
            else:
                value = datatype(value)
            await client.set_scan_parameters(**{key: value})
            self._handle.remember("scan", **{key: value})

        return bridge_signal(
            datatype, self._handle, f"scan/{key}", read, write, units=units, precision=precision
        )

    async def _read_pixel_size(self) -> float:
        scan = await self._handle.read_group("scan")
        return float(scan["field_of_view"]) / float(scan["width"])

    @property
    def last_acquisition(self) -> ImageAcquisition | None:
        """The last survey image in memory (images by signal, pixel size in nm): what an
        adaptive plan hands to its agent right after ``trigger_and_read``, without reading
        the HDF5 file back."""
        return self._state.last

    @property
    def instrument_time_total(self) -> float:
        """Seconds of microscope time the survey images of this session took."""
        return self._state.instrument_time_total

    async def expected_scan_time(self) -> float:
        """How long one survey image takes on the instrument: pixels x dwell time."""
        scan = await self._handle.read_group("scan")
        return int(scan["width"]) * int(scan["height"]) * float(scan["dwell_time"])

    async def connect(self, *args, **kwargs) -> None:  # type: ignore[override]
        await super().connect(*args, **kwargs)
        self._state.mock = self._mock is not None

    def trigger(self):  # type: ignore[override]
        self._state.error = None
        self._state.failed.clear()
        self._paused.clear()
        status = super().trigger()
        return AsyncStatus(self._until_done_or_paused(status))

    async def _until_done_or_paused(self, status) -> None:
        # Wait for the detector's own status, unless the acquisition fails (then fail now,
        # with its error, instead of waiting out the detector's timeout for an image that
        # will not come) or the RunEngine pauses (then stop the acquisition: no frame is
        # written, and the trigger is repeated after the resume; see abandon_on_pause).
        await abandon_on_pause(self._done_or_failed(status), self._paused)
        if self._paused.is_set():
            await self._acquire_logic.ensure_stopped()

    async def _done_or_failed(self, status) -> None:
        failure = asyncio.ensure_future(self._state.failed.wait())
        finished = asyncio.ensure_future(_awaited(status))
        try:
            await asyncio.wait({failure, finished}, return_when=asyncio.FIRST_COMPLETED)
            if self._state.error is not None:
                status.task.cancel()
                raise self._state.error
            await finished
        finally:
            failure.cancel()
            if not finished.done():
                finished.cancel()

    def pause(self) -> None:
        """The RunEngine paused or suspended: abandon a scan in flight (repeated on resume)."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    @AsyncStatus.wrap
    async def stage(self) -> None:
        await super().stage()
        if self._mock is None:
            # The default TriggerInfo allows 10 s per image; a 1024² scan at 32 µs takes 34 s.
            seconds = await self.expected_scan_time()
            await self.prepare(TriggerInfo(exposure_timeout=max(30.0, 3 * seconds + 30.0)))
