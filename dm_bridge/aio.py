"""asyncio client of the DM bridge (what the ophyd-async devices use).

:class:`AsyncBridgeClient` has the methods of :class:`dm_bridge.client.BridgeClient` as
coroutines, on ``zmq.asyncio`` sockets: waiting for a reply never blocks the event loop, and
several coroutines may call at once (each in-flight call has its own socket), so ``status()``
and ``abort()`` work while another task awaits a long acquisition. Cancelling a call (for
example with ``asyncio.wait_for``) closes its socket; it does *not* abort the instrument: call
:meth:`AsyncBridgeClient.abort` for that.

Standard library, numpy and pyzmq only, Python 3.8 syntax.

Example:
    >>> async def survey(address):                                   # doctest: +SKIP
    ...     dm = AsyncBridgeClient(address)
    ...     try:
    ...         await dm.set_scan_parameters(width=256, height=256)
    ...         return (await dm.acquire_image()).images["HAADF"]
    ...     finally:
    ...         dm.close()
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import zmq
import zmq.asyncio

from . import transport
from ._client_core import (
    DEFAULT_TIMEOUT,
    MONITOR_INTERVAL,
    Channel,
    ClientCore,
    points_argument,
    region_argument,
    slice_ms,
)
from .errors import BridgeConnectionError
from .keys import KeySource
from .stream import AsyncStreamChannel
from .types import ImageAcquisition, SpectrumAcquisition

__all__ = ["AsyncBridgeClient"]


class AsyncBridgeClient:
    """asyncio client of a bridge server.

    Args:
        address: server endpoint: ``"stream://127.0.0.1:5555"`` (plain TCP) or
            ``"tcp://host:5555"`` (ZeroMQ); the scheme chooses the transport.
        timeout: default seconds per call, before the acquisition allowance.
        server_public_key: the server's ``server.key`` file or Z85 public key (CurveZMQ).
        client_secret_key: this client's ``.key_secret`` file or Z85 secret key (CurveZMQ).
        context: a ``zmq.asyncio.Context``; default the process-wide one.
    """

    def __init__(
        self,
        address: str = "stream://127.0.0.1:5555",
        timeout: float = DEFAULT_TIMEOUT,
        server_public_key: Optional[KeySource] = None,
        client_secret_key: Optional[KeySource] = None,
        context: Optional[zmq.asyncio.Context] = None,
    ) -> None:
        self._core = ClientCore(address, timeout, server_public_key, client_secret_key)
        self._stream = self._core.transport == "stream"
        self._context = context if context is not None else zmq.asyncio.Context.instance()
        self._idle: List[Channel] = []
        self._closed = False

    @property
    def address(self) -> str:
        return self._core.address

    @property
    def timeout(self) -> float:
        """Default seconds per call (before the acquisition allowance)."""
        return self._core.timeout

    @property
    def server_instance(self) -> Optional[str]:
        """The server's instance name from the last reply; it changes when the server
        restarts (and with it, every setting goes back to the backend's default)."""
        return self._core.instance

    @property
    def restarts(self) -> int:
        """How many times a reply has come from a new server instance (a restart)."""
        return self._core.restarts

    # ---------------------------------------------------------------- plumbing

    async def _call(
        self, command: str, args: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None
    ) -> Any:
        if self._closed:
            raise BridgeConnectionError(f"client of {self.address} is closed", command)
        args = args or {}
        if timeout is None:
            for _ in range(3):  # (hello, then a setting; a restart between them: once more)
                first = self._core.prerequisite(command, args)
                if first is None:
                    break
                await self._call(first)
        seconds = self._core.timeout_for(command, args, timeout)
        rid, frames = self._core.request(command, args, seconds)
        if self._idle:
            channel = self._idle.pop()
        elif self._stream:
            channel = AsyncStreamChannel(self._core.address)  # type: ignore[assignment]
        else:
            channel = self._core.open_channel(self._context)
        try:
            reply = await self._exchange(channel, command, rid, frames, seconds)
        except BaseException:  # cancellation included: the request may be in flight
            channel.close()
            raise
        if self._closed:
            channel.close()
        else:
            self._idle.append(channel)
        return self._core.finish(command, reply)

    async def _exchange(
        self, channel: Channel, command: str, rid: int, frames: List[Any], timeout: float
    ) -> Any:
        if self._stream:
            parts = await channel.exchange(frames, command, timeout)  # type: ignore[attr-defined]
            reply = self._core.match(parts, rid, only=True)
            if reply is None:
                raise BridgeConnectionError(
                    f"{self.address} answered another request than {command}", command
                )
            return reply
        deadline = time.monotonic() + timeout
        sock = channel.socket
        try:
            # Through a blocking-API view of the same socket: a send that cannot wait needs
            # no future (and no IntFlag arithmetic in pyzmq's asyncio layer).
            transport.send(channel.sync, frames, transport.NOBLOCK)
        except zmq.Again:  # the socket's send queue is full: wait for room
            await self._wait(channel, command, deadline, timeout, zmq.POLLOUT)
            await sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
        # The common case first: the reply arrives within the first slice. Awaiting the
        # receive (ZMQ_RCVTIMEO is one slice) costs one future where a poll and then a
        # receive cost two, and a poller.
        if timeout >= MONITOR_INTERVAL:
            try:
                parts = await sock.recv_multipart(copy=False)
            except zmq.Again:
                pass
            else:
                reply = self._core.match(parts, rid)
                if reply is not None:
                    return reply
        while True:
            await self._wait(channel, command, deadline, timeout, zmq.POLLIN)
            reply = self._core.match(await sock.recv_multipart(copy=False), rid)
            if reply is not None:
                return reply

    async def _wait(
        self, channel: Channel, command: str, deadline: float, timeout: float, event: int
    ) -> None:
        # Poll the socket alone (cheapest on the hot path); look at the monitor between slices.
        while True:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                try:
                    if await channel.socket.poll(slice_ms(remaining), event):
                        return
                except zmq.Again:  # pyzmq's asyncio poll ends at ZMQ_RCVTIMEO too
                    pass
            events = []
            while True:
                try:
                    events.append(await channel.monitor.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
            channel.on_events(events)
            if channel.auth_failure is not None:
                raise self._core.auth_error(command, channel)
            if remaining <= 0:
                raise self._core.timeout_error(command, timeout, channel)

    def close(self) -> None:
        """Close the sockets; calls still awaiting close theirs when they finish."""
        self._closed = True
        idle, self._idle = self._idle, []
        for channel in idle:
            channel.close()

    async def __aenter__(self) -> AsyncBridgeClient:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- commands

    async def hello(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Protocol version, backend kind, capabilities, instrument description and limits."""
        return await self._call("hello", None, timeout)

    async def status(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """``state`` (idle/busy), ``current_command``, ``queue``, ``last_error``, and more."""
        return await self._call("status", None, timeout)

    async def abort(self, timeout: Optional[float] = None) -> None:
        """Interrupt the running acquisition (it raises ``Aborted``); drop queued commands."""
        await self._call("abort", None, timeout)

    async def get_scan_parameters(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Scan parameters read back (see :meth:`BridgeClient.get_scan_parameters`)."""
        return await self._call("get_scan_parameters", None, timeout)

    async def set_scan_parameters(
        self, timeout: Optional[float] = None, **changes: Any
    ) -> Dict[str, Any]:
        """Change some scan parameters; returns them all."""
        return await self._call("set_scan_parameters", changes, timeout)

    async def acquire_image(self, timeout: Optional[float] = None) -> ImageAcquisition:
        """Scan once; one float32 image per selected signal, with calibration."""
        return await self._call("acquire_image", None, timeout)

    async def get_beam_position(self, timeout: Optional[float] = None) -> Tuple[float, float]:
        """Beam ``(x, y)`` in pixels of the current scan field."""
        return await self._call("get_beam_position", None, timeout)

    async def set_beam_position(
        self, x: float, y: float, timeout: Optional[float] = None
    ) -> Tuple[float, float]:
        """Place the beam at column ``x``, row ``y`` (pixels, sub-pixel allowed)."""
        return await self._call("set_beam_position", {"x": x, "y": y}, timeout)

    async def blank_beam(self, timeout: Optional[float] = None) -> None:
        """Blank the beam."""
        await self._call("blank_beam", None, timeout)

    async def unblank_beam(self, timeout: Optional[float] = None) -> None:
        """Unblank the beam."""
        await self._call("unblank_beam", None, timeout)

    async def get_eels_parameters(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """EELS parameters read back (see :meth:`BridgeClient.get_eels_parameters`)."""
        return await self._call("get_eels_parameters", None, timeout)

    async def set_eels_parameters(
        self, timeout: Optional[float] = None, **changes: Any
    ) -> Dict[str, Any]:
        """Change some EELS parameters; returns them all."""
        return await self._call("set_eels_parameters", changes, timeout)

    async def acquire_spectrum(self, timeout: Optional[float] = None) -> SpectrumAcquisition:
        """One spectrum at the current beam position."""
        return await self._call("acquire_spectrum", None, timeout)

    async def acquire_spectra_at_points(
        self, points: Any, timeout: Optional[float] = None
    ) -> SpectrumAcquisition:
        """One spectrum at each ``(x, y)`` of ``points`` (an ``(N, 2)`` array, pixels)."""
        args = {"points": points_argument(points)}
        return await self._call("acquire_spectra_at_points", args, timeout)

    async def acquire_spectrum_image(
        self,
        rows: int,
        cols: int,
        region: Optional[Sequence[float]] = None,
        timeout: Optional[float] = None,
    ) -> SpectrumAcquisition:
        """A ``rows x cols`` grid of spectra over ``region`` = ``(x0, y0, x1, y1)`` pixels."""
        args = {"rows": rows, "cols": cols, "region": region_argument(region)}
        return await self._call("acquire_spectrum_image", args, timeout)

    async def get_truth(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Ground truth of a simulated sample (twin only; others raise ``Unsupported``)."""
        return await self._call("get_truth", None, timeout)
