"""The EELS camera: triggering acquires one spectrum at the beam's position."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from bluesky.protocols import EventPageCollectable, Flyable, Preparable, Reading, Triggerable
from event_model import DataKey, PartialEventPage
from ophyd_async.core import (
    Array1D,
    AsyncConfigurable,
    AsyncStatus,
    Device,
    StandardReadable,
    StandardReadableFormat,
    WatchableAsyncStatus,
    WatcherUpdate,
    soft_signal_r_and_setter,
)

from dm_bridge.types import SpectrumAcquisition

from ._bridge import BridgeHandle, abandon_on_pause, bridge_signal

__all__ = ["EELSCamera", "EELSPoints"]


class EELSCamera(StandardReadable, Triggerable):
    """EELS camera and spectrometer settings; ``trigger()`` acquires a spectrum.

    The spectrum travels inline in the event (``eels-spectrum``, counts per channel). Its
    energy axis is in the configuration of every run as the spectrometer's calibration,
    scalars that every reader (databroker's ``config`` included) can read: channel ``i`` is at
    ``eels-energy_offset + i * eels-dispersion * eels-binning`` eV, ``eels-channels``
    channels (``ophyd_stem.energy_axis_from_configuration``). ``eels.energy_axis`` has the whole
    axis, refreshed with each acquisition, for the console. A scalar, ``eels-intensity``
    (total counts), is hinted so BestEffortCallback and LiveGrid have something sensible to
    plot while a spectrum image is acquired.

    Example (on the digital twin, in this process):
        >>> import bluesky.plan_stubs as bps
        >>> import bluesky.plans as bp
        >>> from bluesky import RunEngine
        >>> from ophyd_stem.sim import twin_microscope
        >>> RE = RunEngine()
        >>> eels = twin_microscope("graphene").eels
        >>> RE(bps.mv(eels.exposure, 0.05))                          # s
        ()
        >>> events = []
        >>> uids = RE(bp.count([eels], num=3), lambda name, doc: events.append(doc)
        ...           if name == "event" else None)
        >>> len(events), sorted(events[0]["data"])
        (3, ['eels-instrument_time', 'eels-intensity', 'eels-spectrum'])
    """

    def __init__(self, handle: BridgeHandle, name: str = "") -> None:
        self._handle = handle
        with self.add_children_as_readables(StandardReadableFormat.CONFIG_SIGNAL):
            self.exposure = self._param(float, "exposure", "s", 4)
            self.energy_offset = self._param(float, "energy_offset", "eV", 3)
            self.dispersion = self._param(float, "dispersion", "eV/channel", 4)
            self.binning = self._param(int, "binning", None, None)
            self.channels = self._param(int, "channels", None, None)
        # Not configuration: an array there breaks databroker's config reader; the scalars
        # above define it.
        self.energy_axis, self._set_energy_axis = soft_signal_r_and_setter(
            Array1D[np.float64], units="eV"
        )
        with self.add_children_as_readables(StandardReadableFormat.UNCACHED_SIGNAL):
            self.spectrum, self._set_spectrum = soft_signal_r_and_setter(
                Array1D[np.float32], units="counts"
            )
            self.instrument_time, self._set_instrument_time = soft_signal_r_and_setter(
                float, units="s", precision=4
            )
        with self.add_children_as_readables(StandardReadableFormat.HINTED_UNCACHED_SIGNAL):
            self.intensity, self._set_intensity = soft_signal_r_and_setter(
                float, units="counts", precision=1
            )
        self._paused = asyncio.Event()
        super().__init__(name=name)

    def _param(self, datatype, key: str, units: str | None, precision: int | None):
        async def read():
            params = await self._handle.read_group("eels")
            return datatype(params[key])

        async def write(value):
            client = self._handle.require_client()
            new = await client.set_eels_parameters(**{key: datatype(value)})
            self._handle.remember("eels", **{key: datatype(value)})
            await self._refresh_axis(new)

        return bridge_signal(
            datatype, self._handle, f"eels/{key}", read, write, units=units, precision=precision
        )

    async def _refresh_axis(self, params: dict | None = None) -> None:
        if params is None:
            params = await self._handle.read_group("eels")
        channels = np.arange(int(params["channels"]), dtype=np.float64)
        width = float(params["dispersion"]) * int(params["binning"])
        self._set_energy_axis(float(params["energy_offset"]) + width * channels)

    async def connect(self, *args, **kwargs) -> None:  # type: ignore[override]
        await super().connect(*args, **kwargs)
        if self._mock is None:
            await self._refresh_axis()

    def publish(self, acquisition: SpectrumAcquisition, index: int | None = None) -> None:
        """Make one spectrum of an acquisition the camera's current reading."""
        spectra = acquisition.spectra if index is None else acquisition.spectra[index]
        spectrum = np.asarray(spectra, dtype=np.float32).reshape(-1)
        self._set_energy_axis(np.asarray(acquisition.energy_axis, dtype=np.float64))
        self._set_spectrum(spectrum)
        self._set_intensity(float(spectrum.sum(dtype=np.float64)))
        self._set_instrument_time(float(acquisition.instrument_time))

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        if self._mock is not None:
            # Mock mode never talks to the bridge: an empty spectrum of the configured length.
            channels = await self.channels.get_value()
            empty = np.zeros(max(int(channels), 0), dtype=np.float32)
            offset, width = await self.energy_offset.get_value(), await self.dispersion.get_value()
            axis = offset + width * np.arange(len(empty), dtype=np.float64)
            self.publish(SpectrumAcquisition(spectra=empty, energy_axis=axis))
            return
        client = self._handle.require_client()
        self._paused.clear()
        acquisition = await abandon_on_pause(
            self._handle.acquire(client.acquire_spectrum), self._paused
        )
        if acquisition is not None:
            self.publish(acquisition)

    def pause(self) -> None:
        """The RunEngine paused or suspended: abandon an acquisition in flight (it is
        repeated when the run resumes)."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()


class EELSPoints(Device, Preparable, Flyable, EventPageCollectable, AsyncConfigurable):
    """Spectra at many beam positions, one bridge call per chunk of positions.

    The fast path of adaptive and exhaustive plans: instead of moving the beam and
    triggering the camera once per position (two round trips each), the positions go to the
    bridge in chunks (``acquire_spectra_at_points``), and the spectra come back as event
    pages: one event per position, with ``stem-beam-x`` / ``stem-beam-y``, the spectrum, its
    total intensity and the instrument time. Between chunks it honours ``stop()``.

    Use it with ``prepare`` / ``kickoff`` / ``complete`` / ``collect``
    (``plans.stubs.acquire_spectra_at_points`` does all of that). The spectra go to the
    stream named by :attr:`stream` (default ``"primary"``); Bluesky describes it once per run,
    however many batches of positions a plan collects into it.

    Args:
        handle: the microscope's bridge handle.
        camera: the EELS camera whose settings (configuration) the spectra were taken with.
        chunk_size: positions per bridge call; a chunk is also the granularity of progress
            and of stopping.
    """

    def __init__(
        self, handle: BridgeHandle, camera: EELSCamera, chunk_size: int = 256, name: str = ""
    ) -> None:
        self._handle = handle
        # A reference, not a child: the camera belongs to the Microscope.
        object.__setattr__(self, "_camera", camera)
        self.chunk_size = int(chunk_size)
        #: the stream the spectra go to
        self.stream = "primary"
        self._points = np.empty((0, 2))
        self._pages: list[SpectrumAcquisition] = []
        self._acquired: list[SpectrumAcquisition] = []
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._paused = asyncio.Event()
        self.acquired = 0
        super().__init__(name=name)

    @AsyncStatus.wrap
    async def prepare(self, value: Any) -> None:
        """Set the positions ``(N, 2)`` as ``(x, y)`` in scan-field pixels."""
        points = np.asarray(value, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
            raise ValueError(f"positions must be an (N, 2) array of (x, y), got {points.shape}")
        if not np.isfinite(points).all():
            raise ValueError("positions must be finite")
        # The field's size is asked of the bridge: a RunEngine that suspends while the bridge
        # is down must not be failed later by this question timing out (see abandon_on_pause).
        size = await abandon_on_pause(self._handle.scan_size(), self._paused)
        if size is None:
            return  # abandoned: the replay from the batch's checkpoint prepares again
        width, height = size
        outside = (
            (points[:, 0] < -0.5)
            | (points[:, 0] > width - 0.5)
            | (points[:, 1] < -0.5)
            | (points[:, 1] > height - 0.5)
        )
        if outside.any():
            raise ValueError(
                f"{int(outside.sum())} of {len(points)} positions are outside the "
                f"{width}x{height} px scan field"
            )
        self._points = points
        self._pages = []
        self._acquired = []
        self.acquired = 0

    @AsyncStatus.wrap
    async def kickoff(self) -> None:
        self._stopping = False
        self._paused.clear()
        self._task = asyncio.create_task(abandon_on_pause(self._acquire(), self._paused))

    async def _acquire(self) -> None:
        client = self._handle.require_client()
        for start in range(0, len(self._points), self.chunk_size):
            if self._stopping:
                break
            chunk = self._points[start : start + self.chunk_size]
            acquisition = await self._handle.acquire(
                lambda chunk=chunk: client.acquire_spectra_at_points(chunk)
            )
            self._pages.append(acquisition)
            self._acquired.append(acquisition)
            self.acquired += len(chunk)
            self._camera.publish(acquisition, index=-1)

    @WatchableAsyncStatus.wrap
    async def complete(self):
        task = self._task
        if task is None:
            raise RuntimeError(f"{self.name}: complete() before kickoff()")
        total = len(self._points)
        while not task.done():
            yield WatcherUpdate(
                name=self.name, current=self.acquired, initial=0, target=total, unit="spectra"
            )
            await asyncio.wait({task}, timeout=0.2)
        await task
        yield WatcherUpdate(
            name=self.name, current=self.acquired, initial=0, target=total, unit="spectra"
        )

    @property
    def last_acquisition(self) -> SpectrumAcquisition | None:
        """All spectra of the last ``prepare``/``kickoff`` in one acquisition (what an
        adaptive plan scalarises and feeds to its agent), or ``None`` before any."""
        if not self._acquired:
            return None
        parts = self._acquired
        return SpectrumAcquisition(
            spectra=np.concatenate(
                [np.asarray(p.spectra).reshape(-1, p.spectra.shape[-1]) for p in parts]
            ),
            energy_axis=np.asarray(parts[0].energy_axis),
            positions=np.concatenate([np.asarray(p.positions) for p in parts]),
            instrument_time=float(sum(p.instrument_time for p in parts)),
        )

    async def stop(self, success: bool = True) -> None:
        """Finish after the chunk in flight (its spectra are kept)."""
        self._stopping = True

    def pause(self) -> None:
        """The RunEngine paused or suspended: abandon the positions in flight; the plan's
        last checkpoint (before this batch) makes the run measure them again on resume."""
        self._paused.set()
        self._pages = []

    def resume(self) -> None:
        self._paused.clear()

    @property
    def hints(self) -> dict[str, list[str]]:
        """The total intensity: what BestEffortCallback and LiveGrid plot over the beam
        positions (the spectra and the positions themselves are not plotted against them)."""
        return {"fields": ["eels-intensity"]}

    async def describe_collect(self) -> dict[str, dict[str, DataKey]]:
        source = f"dm-bridge://{self._handle.address}/acquire_spectra_at_points"
        channels = int(await self._camera.channels.get_value())

        def key(shape, dtype, units, numpy):
            return DataKey(source=source, shape=shape, dtype=dtype, units=units, dtype_numpy=numpy)

        return {
            self.stream: {
                "stem-beam-x": key([], "number", "px", "<f8"),
                "stem-beam-y": key([], "number", "px", "<f8"),
                "eels-spectrum": key([channels], "array", "counts", "<f4"),
                "eels-intensity": key([], "number", "counts", "<f8"),
                "eels-instrument_time": key([], "number", "s", "<f8"),
            }
        }

    async def collect_pages(self) -> AsyncIterator[PartialEventPage]:
        pages, self._pages = self._pages, []
        for acquisition in pages:
            spectra = np.asarray(acquisition.spectra, dtype=np.float32)
            positions = np.asarray(acquisition.positions, dtype=np.float64)
            n = len(spectra)
            now = time.time()
            per_point = float(acquisition.instrument_time) / max(n, 1)
            data = {
                "stem-beam-x": positions[:, 0].tolist(),
                "stem-beam-y": positions[:, 1].tolist(),
                "eels-spectrum": list(spectra),
                "eels-intensity": spectra.sum(axis=1, dtype=np.float64).tolist(),
                "eels-instrument_time": [per_point] * n,
            }
            yield PartialEventPage(
                data=data,
                timestamps={k: [now] * n for k in data},
                time=[now] * n,
            )

    async def read_configuration(self) -> dict[str, Reading]:
        return await self._camera.read_configuration()

    async def describe_configuration(self) -> dict[str, DataKey]:
        return await self._camera.describe_configuration()
