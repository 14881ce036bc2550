"""The seam between ophyd-async and the DM bridge.

Every bridge-backed signal goes through a :class:`BridgeHandle` (one per microscope), which
holds the asyncio bridge client, checks the connection once with ``hello``, and coalesces
concurrent reads of one parameter group: reading the configuration of the scan engine asks
the bridge for the scan parameters once, not once per signal.

:class:`BridgeParameterBackend` is the ``SignalBackend`` that maps one parameter (the scan
width, the EELS exposure, the beam's x...) to a signal, with units, precision and optional
limits in its DataKey.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from bluesky.protocols import Reading
from event_model import DataKey
from ophyd_async.core import (
    Callback,
    NotConnectedError,
    SignalBackend,
    SignalR,
    SignalRW,
    SoftSignalBackend,
)
from ophyd_async.core._signal import Signal

from dm_bridge.errors import BridgeError

__all__ = [
    "AsyncBridge",
    "BridgeHandle",
    "BridgeParameterBackend",
    "abandon_on_pause",
    "bridge_signal",
]

T = TypeVar("T")

log = logging.getLogger("ophyd_stem.bridge")


class AsyncBridge(Protocol):
    """What devices need from a bridge client: the asyncio API of
    :class:`dm_bridge.client.AsyncBridgeClient` (or :class:`dm_bridge.local.AsyncLocalClient`)."""

    address: str

    async def hello(self, timeout: float | None = None) -> dict[str, Any]: ...
    async def status(self, timeout: float | None = None) -> dict[str, Any]: ...
    async def get_scan_parameters(self, timeout: float | None = None) -> dict[str, Any]: ...
    async def set_scan_parameters(self, timeout: float | None = None, **changes: Any) -> Any: ...
    async def get_eels_parameters(self, timeout: float | None = None) -> dict[str, Any]: ...
    async def set_eels_parameters(self, timeout: float | None = None, **changes: Any) -> Any: ...
    async def get_beam_position(self, timeout: float | None = None) -> tuple[float, float]: ...
    async def set_beam_position(self, x: float, y: float, timeout: float | None = None) -> Any: ...
    async def blank_beam(self, timeout: float | None = None) -> Any: ...
    async def unblank_beam(self, timeout: float | None = None) -> Any: ...


class BridgeHandle:
    """Shared access to one bridge for all the signals of one microscope.

    Args:
        client: an asyncio bridge client; may be set later (before connecting).
    """

    def __init__(self, client: AsyncBridge | None = None) -> None:
        self.client = client
        self.hello: dict[str, Any] | None = None
        self._hello_task: asyncio.Task | None = None
        self._inflight: dict[str, asyncio.Future] = {}
        #: serialises beam placement: moving x and y "at once" must not race
        self.beam_lock = asyncio.Lock()
        #: the scan field ``(width, height)`` in pixels; the Microscope points it at the scan
        #: engine's signals (so mock mode works), otherwise it is read from the bridge
        self.scan_size: Callable[[], Awaitable[tuple[int, int]]] = self._scan_size_from_bridge
        #: what the devices set (``"scan"``, ``"eels"``, ``"beam"``, ``"blanker"`` -> values):
        #: a restarted bridge has its backend's defaults again, and these are put back
        self.settings: dict[str, dict[str, Any]] = {
            "scan": {},
            "eels": {},
            "beam": {},
            "blanker": {},
        }
        #: bridge restarts noticed (each logged, its settings put back)
        self.restarts_seen = 0
        self._instance: str | None = None

    async def _scan_size_from_bridge(self) -> tuple[int, int]:
        scan = await self.read_group("scan")
        return int(scan["width"]), int(scan["height"])

    @property
    def address(self) -> str:
        return getattr(self.client, "address", "unconnected")

    def require_client(self) -> AsyncBridge:
        if self.client is None:
            raise NotConnectedError("no bridge client was given to this device")
        return self.client

    async def connect(self, timeout: float) -> dict[str, Any]:
        """Say ``hello`` once (concurrent callers share the answer)."""
        if self.hello is not None:
            return self.hello
        if self._hello_task is None or self._hello_task.done():
            client = self.require_client()
            self._hello_task = asyncio.ensure_future(client.hello(timeout=timeout))
        try:
            self.hello = await asyncio.shield(self._hello_task)
            if self._instance is None:
                self._instance = getattr(self.client, "server_instance", None)
        except BridgeError as exc:
            self._hello_task = None
            raise NotConnectedError(f"DM bridge at {self.address} did not answer: {exc}") from exc
        return self.hello

    def remember(self, group: str, **values: Any) -> None:
        """Note settings a device wrote, to put them back if the bridge restarts."""
        self.settings[group].update(values)
        if self._instance is None:
            self._instance = getattr(self.client, "server_instance", None)

    async def acquire(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run an acquisition (or a read) on the settings the devices wrote.

        A bridge that restarted (its replies name a new server instance) forgot them: they
        are put back first, and an acquisition that met the new server is taken again.
        """
        await self.restore_after_restart()
        result = await call()
        if await self.restore_after_restart():
            result = await call()
        return result

    async def restore_after_restart(self) -> bool:
        """Put the devices' settings back if the bridge restarted; whether it had."""
        now = getattr(self.client, "server_instance", None)
        if now is None or now == self._instance:
            return False
        if self._instance is None:  # the first reply seen: nothing was lost
            self._instance = now
            return False
        client = self.require_client()
        log.warning(
            "the DM bridge at %s restarted (instance %s -> %s): putting back %s",
            self.address,
            self._instance,
            now,
            {k: v for k, v in self.settings.items() if v} or "no settings",
        )
        self._instance = now
        self.restarts_seen += 1
        try:
            if self.settings["scan"]:
                await client.set_scan_parameters(**self.settings["scan"])
            if self.settings["eels"]:
                await client.set_eels_parameters(**self.settings["eels"])
            beam = self.settings["beam"]
            if beam:
                await client.set_beam_position(beam["x"], beam["y"])
            blanker = self.settings["blanker"]
            if blanker:  # (a beam blanked to spare the sample stays blanked)
                await (client.blank_beam() if blanker["blanked"] else client.unblank_beam())
        except BridgeError as exc:
            raise BridgeError(
                f"the DM bridge at {self.address} restarted and its settings could not be "
                f"put back ({exc}); set them again before acquiring",
                exc.command,
            ) from exc
        return True

    async def read_group(self, group: str) -> Any:
        """Read a parameter group (``"scan"``, ``"eels"``, ``"beam"``, ``"status"``) once
        for all concurrent readers."""
        future = self._inflight.get(group)
        if future is None:
            client = self.require_client()
            reader: Callable[[], Awaitable[Any]] = {
                "scan": client.get_scan_parameters,
                "eels": client.get_eels_parameters,
                "beam": client.get_beam_position,
                "status": client.status,
            }[group]
            # (a read, like an acquisition, shows the settings the devices wrote, not the
            # defaults of a bridge that restarted since: they are put back first)
            future = asyncio.ensure_future(self.acquire(reader))
            self._inflight[group] = future
            future.add_done_callback(lambda _f, g=group: self._inflight.pop(g, None))
        return await asyncio.shield(future)


class BridgeParameterBackend(SignalBackend[T]):
    """A signal whose value lives on the microscope, behind the bridge.

    It is a plain ``SignalBackend`` (the seam STYLE.md names for a new control system), so
    ophyd-async's mock mode replaces it wholesale and mocked devices never reach a bridge.
    Conversion to the declared datatype, units and subscriptions are delegated to an
    internal soft backend used as a cache of the last value read.

    Args:
        datatype: the signal's Python type (``float``, ``int``, ``bool``, ``Sequence[str]``).
        handle: the microscope's :class:`BridgeHandle`.
        name_on_bridge: shown in the signal's ``source`` (``"scan/width"``).
        read: coroutine function returning the current value from the bridge.
        write: coroutine function applying a new value (``None``: read-only).
        units, precision: DataKey metadata.
        limits: coroutine function returning ``(low, high)`` for the DataKey's control
            limits (the beam position's limits follow the scan field).
    """

    def __init__(
        self,
        datatype: type[T],
        handle: BridgeHandle,
        name_on_bridge: str,
        read: Callable[[], Awaitable[T]],
        write: Callable[[T], Awaitable[Any]] | None = None,
        units: str | None = None,
        precision: int | None = None,
        limits: Callable[[], Awaitable[tuple[float, float]]] | None = None,
    ) -> None:
        self.handle = handle
        self.name_on_bridge = name_on_bridge
        self._read = read
        self._write = write
        self._limits = limits
        self._cache: SoftSignalBackend[T] = SoftSignalBackend(
            datatype, units=units, precision=precision
        )
        self._setpoint: T | None = None
        super().__init__(datatype)

    def source(self, name: str, read: bool) -> str:
        return f"dm-bridge://{self.handle.address}/{self.name_on_bridge}"

    async def connect(self, timeout: float) -> None:
        await self.handle.connect(timeout)
        # Fill the cache so the first describe() reports the real value's shape.
        await self._refresh()

    async def _refresh(self) -> Reading[T]:
        self._cache.set_value(await self._read())
        return self._cache.reading

    async def put(self, value: T | None) -> None:
        if self._write is None:
            raise PermissionError(f"{self.name_on_bridge} is read-only")
        self._setpoint = value
        await self._write(value)
        await self._refresh()

    async def get_datakey(self, source: str) -> DataKey:
        datakey = await self._cache.get_datakey(source)
        if self._limits is not None:
            low, high = await self._limits()
            datakey["limits"] = {"control": {"low": low, "high": high}}
        return datakey

    async def get_reading(self) -> Reading[T]:
        return await self._refresh()

    async def get_value(self) -> T:
        return (await self._refresh())["value"]

    async def get_setpoint(self) -> T:
        if self._setpoint is None:
            return await self.get_value()
        return self._setpoint

    def set_callback(self, callback: Callback[Reading[T]] | None) -> None:
        # The soft cache calls back at once with the current reading, as ophyd-async requires.
        self._cache.set_callback(callback)


def bridge_signal(
    datatype: type[T],
    handle: BridgeHandle,
    name_on_bridge: str,
    read: Callable[[], Awaitable[T]],
    write: Callable[[T], Awaitable[Any]] | None = None,
    units: str | None = None,
    precision: int | None = None,
    limits: Callable[[], Awaitable[tuple[float, float]]] | None = None,
) -> SignalRW[T] | SignalR[T]:
    """A read-only (no ``write``) or read-write signal backed by the bridge."""
    backend = BridgeParameterBackend(
        datatype, handle, name_on_bridge, read, write, units, precision, limits
    )
    cls: type[Signal] = SignalR if write is None else SignalRW
    return cls(backend)


async def abandon_on_pause(work: Awaitable[T], paused: asyncio.Event) -> T | None:
    """Run ``work`` until it finishes or ``paused`` is set, whichever comes first.

    When the RunEngine suspends (the bridge stopped answering) or pauses, it calls
    ``pause()`` on every device, rewinds to the last checkpoint, and later replays the
    operation. A bridge call still in flight would fail afterwards and, as a status Bluesky
    no longer waits for, fail the whole run; instead the device abandons it (cancelled,
    ``None`` returned, the status completes) and the replay repeats it.
    """
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(paused.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return None
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
