"""The microscope column as seen from a plan: beam position, beam blank, high tension."""

from __future__ import annotations

import math
from functools import cached_property

from event_model import DataKey
from ophyd_async.core import (
    Device,
    MovableLogic,
    StandardMovable,
    StandardReadable,
    StandardReadableFormat,
    soft_signal_r_and_setter,
)

from ._bridge import BridgeHandle, bridge_signal

__all__ = ["STEM", "Beam", "BeamAxis"]


class _BeamMove(MovableLogic[float]):
    """A beam placement completes when the bridge has placed the beam: no settling to wait
    for, and no float equality test on the readback (DigiScan may round sub-pixel values)."""

    def __init__(self, axis: BeamAxis) -> None:
        super().__init__(setpoint=axis.setpoint, readback=axis.readback)
        self.axis = axis

    async def check_move(self, new_position: float) -> None:
        low, high = await self.axis.field_limits()
        value = float(new_position)
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(
                f"{self.axis.name}: {new_position!r} px is outside the scan field "
                f"[{low:g}, {high:g}] px"
            )

    async def calculate_timeout(self, old_position: float, new_position: float) -> float | None:
        return 10.0

    async def move(self, new_position: float, timeout) -> None:
        await self.setpoint.set(float(new_position), timeout=timeout())
        # Refresh the readback so subscribers (and the status watcher) see the new place:
        # from the bridge, not from the cache a staged readback keeps.
        await self.readback.get_value(cached=False)


class BeamAxis(StandardMovable[float], StandardReadable):
    """One coordinate of the beam position, in pixels of the current scan field.

    ``x`` is the column and ``y`` the row; (0, 0) is the centre of the top-left pixel;
    sub-pixel values are allowed; the limits are the scan field, ``[-0.5, size - 0.5]``.
    """

    def __init__(self, handle: BridgeHandle, axis: str, name: str = "") -> None:
        if axis not in ("x", "y"):
            raise ValueError("axis must be 'x' or 'y'")
        self._handle = handle
        self._axis = axis
        self._index = 0 if axis == "x" else 1
        # Uncached: a staged column (bp.scan stages the motor's root, the column) must still
        # read where the beam is now, wherever it was moved from.
        with self.add_children_as_readables(StandardReadableFormat.HINTED_UNCACHED_SIGNAL):
            self.readback = bridge_signal(
                float,
                handle,
                f"beam/{axis}",
                read=self._read,
                units="px",
                precision=3,
                limits=self.field_limits,
            )
        self.setpoint = bridge_signal(
            float,
            handle,
            f"beam/{axis}",
            read=self._read,
            write=self._write,
            units="px",
            precision=3,
            limits=self.field_limits,
        )
        super().__init__(name=name)

    @cached_property
    def movable_logic(self) -> MovableLogic[float]:
        return _BeamMove(self)

    async def field_limits(self) -> tuple[float, float]:
        size = (await self._handle.scan_size())[self._index]
        return -0.5, float(size) - 0.5

    async def _read(self) -> float:
        position = await self._handle.read_group("beam")
        return float(position[self._index])

    async def _write(self, value: float) -> None:
        client = self._handle.require_client()
        # Read the other coordinate fresh, under a lock, so that moving x and y in
        # parallel (bps.mv(beam.x, 1, beam.y, 2)) cannot lose one of the two moves.
        async with self._handle.beam_lock:
            x, y = await client.get_beam_position()
            if self._axis == "x":
                x = value
            else:
                y = value
            await client.set_beam_position(float(x), float(y))
            self._handle.remember("beam", x=float(x), y=float(y))


class Beam(Device):
    """The beam position: ``beam.x`` and ``beam.y``, movable, in scan-field pixels."""

    def __init__(self, handle: BridgeHandle, name: str = "") -> None:
        self.x = BeamAxis(handle, "x")
        self.y = BeamAxis(handle, "y")
        super().__init__(name=name)


class STEM(StandardReadable):
    """The column: beam position, beam blank, high tension and field of view.

    Reading the column reads the beam position (``stem-beam-x``, ``stem-beam-y``, px,
    not hinted), so a scan that lists the column among its detectors still records where the
    beam was: ``bp.scan([eels, stem], stem.beam.x, 0, 100, 11)`` (Bluesky drops the motor
    there, since its parent is read anyway).

    Example (on the digital twin, in this process):
        >>> import bluesky.plan_stubs as bps
        >>> from bluesky import RunEngine
        >>> from bluesky.run_engine import call_in_bluesky_event_loop
        >>> from ophyd_stem.sim import twin_microscope
        >>> RE = RunEngine()
        >>> stem = twin_microscope("graphene").stem
        >>> RE(bps.mv(stem.beam.x, 12.5, stem.beam.y, 40))     # px of the scan field
        ()
        >>> call_in_bluesky_event_loop(stem.high_tension.get_value())   # kV
        60.0

    (``RE(...)`` returns the uids of the runs a plan opened, none here; a plan's own
    return value, ``bps.rd``'s say, stays inside the plan.)
    """

    def __init__(self, handle: BridgeHandle, name: str = "") -> None:
        self._handle = handle
        self.beam = Beam(handle)
        # Read (from the bridge, every time) but not hinted: the column's position is a
        # coordinate, not something to plot against the motor that moves it.
        self.add_readables(
            [self.beam.x.readback, self.beam.y.readback], StandardReadableFormat.UNCACHED_SIGNAL
        )
        self.beam_blank = bridge_signal(
            bool, handle, "beam/blanked", read=self._read_blank, write=self._write_blank
        )
        with self.add_children_as_readables(StandardReadableFormat.CONFIG_SIGNAL):
            self.high_tension, self._set_high_tension = soft_signal_r_and_setter(
                float, units="kV", precision=1
            )
            self.field_of_view = bridge_signal(
                float,
                handle,
                "scan/field_of_view",
                read=self._read_fov,
                units="nm",
                precision=3,
            )
            self.instrument, self._set_instrument = soft_signal_r_and_setter(str)
        super().__init__(name=name)

    @property
    def hints(self) -> dict[str, list[str]]:
        """Nothing to plot: BestEffortCallback would otherwise draw every field it reads."""
        return {"fields": []}

    async def describe_configuration(self) -> dict[str, DataKey]:
        described = await super().describe_configuration()
        # The instrument's name, as its bridge says it, has any length: ophyd-async declares
        # "|S40" (EPICS' 40-character string) for every str signal, which promises readers a
        # truncated field ("DigitalMicrograph on ..." runs past 40 characters).
        key = described.get(self.instrument.name)
        if key is not None:
            key["dtype_numpy"] = "<U0"
        return described

    async def connect(self, *args, **kwargs) -> None:  # type: ignore[override]
        await super().connect(*args, **kwargs)
        hello = self._handle.hello
        if hello is not None:
            instrument = hello.get("instrument", {})
            ht = instrument.get("high_tension_kv")
            if ht is not None:
                self._set_high_tension(float(ht))
            self._set_instrument(str(instrument.get("name", hello.get("backend", ""))))

    async def _read_blank(self) -> bool:
        status = await self._handle.read_group("status")
        return bool(status.get("beam_blanked", False))

    async def _write_blank(self, value: bool) -> None:
        client = self._handle.require_client()
        if value:
            await client.blank_beam()
        else:
            await client.unblank_beam()
        self._handle.remember("blanker", blanked=bool(value))

    async def _read_fov(self) -> float:
        scan = await self._handle.read_group("scan")
        return float(scan["field_of_view"])
