"""Network clients of the DM bridge: :class:`BridgeClient` (blocking) and
:class:`AsyncBridgeClient` (asyncio, for the ophyd-async devices).

Both have exactly the methods, signatures and return types of
:class:`dm_bridge.local.LocalClient`, so code can switch between an in-process backend and a
remote bridge by changing one object: parameters come back as dicts, beam positions as
``(x, y)`` tuples in pixels, acquisitions as the backend's own
:class:`~dm_bridge.backends.base.ImageAcquisition` and
:class:`~dm_bridge.backends.base.SpectrumAcquisition`.

Every method takes ``timeout=`` (seconds). By default a call waits :attr:`timeout` plus, for
an acquisition, twice its expected instrument time plus 50 ms per spectrum, computed from the
last scan/EELS parameters seen. Errors are typed: the server's (``OutOfRange``, ``Busy``,
``Aborted``, ...), :class:`~dm_bridge.errors.BridgeTimeout` and
:class:`~dm_bridge.errors.BridgeAuthError`.

Standard library, numpy and pyzmq only, Python 3.8 syntax, so a DM-side script can drive
another DigitalMicrograph too.

Example:
    >>> from dm_bridge.server import Server
    >>> from dm_bridge.backends.minimal import MinimalBackend
    >>> with Server(MinimalBackend(), port=0) as server, BridgeClient(server.endpoint) as dm:
    ...     dm.set_beam_position(10.25, 3.5)
    (10.25, 3.5)
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import zmq

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
from .aio import AsyncBridgeClient
from .errors import BridgeConnectionError
from .keys import KeySource
from .stream import StreamChannel
from .types import ImageAcquisition, SpectrumAcquisition

__all__ = ["DEFAULT_TIMEOUT", "AsyncBridgeClient", "BridgeClient"]


class BridgeClient:
    """Blocking client of a bridge server; thread-safe.

    Args:
        address: server endpoint: ``"stream://127.0.0.1:5555"`` (plain TCP, the default
            transport on loopback) or ``"tcp://host:5555"`` (ZeroMQ; with CurveZMQ off
            loopback). The scheme chooses the transport; use what the server printed.
        timeout: default seconds per call, before the acquisition allowance.
        server_public_key: the server's ``server.key`` file or Z85 public key (CurveZMQ).
        client_secret_key: this client's ``.key_secret`` file or Z85 secret key (CurveZMQ).
        context: ZeroMQ context; default the process-wide one (unused by ``stream://``).

    Calls from several threads at once each get their own socket, so ``abort()`` from one
    thread reaches the server while another thread waits for a long acquisition.

    Example:
        >>> dm = BridgeClient("tcp://127.0.0.1:5555")          # doctest: +SKIP
        >>> image = dm.acquire_image().images["HAADF"]           # doctest: +SKIP
    """

    def __init__(
        self,
        address: str = "stream://127.0.0.1:5555",
        timeout: float = DEFAULT_TIMEOUT,
        server_public_key: Optional[KeySource] = None,
        client_secret_key: Optional[KeySource] = None,
        context: Optional[zmq.Context] = None,
    ) -> None:
        self._core = ClientCore(address, timeout, server_public_key, client_secret_key)
        self._stream = self._core.transport == "stream"
        self._context = context if context is not None else zmq.Context.instance()
        self._idle: List[Channel] = []
        self._pool_lock = threading.Lock()
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

    def _take(self) -> Channel:
        with self._pool_lock:
            if self._closed:
                raise BridgeConnectionError(f"client of {self.address} is closed")
            if self._idle:
                return self._idle.pop()
        if self._stream:
            return StreamChannel(self._core.address)  # type: ignore[return-value]
        return self._core.open_channel(self._context)

    def _give_back(self, channel: Channel) -> None:
        with self._pool_lock:
            if not self._closed:
                self._idle.append(channel)
                return
        channel.close()

    def _call(
        self, command: str, args: Optional[Dict[str, Any]] = None, timeout: Optional[float] = None
    ) -> Any:
        args = args or {}
        if timeout is None:
            for _ in range(3):  # (hello, then a setting; a restart between them: once more)
                first = self._core.prerequisite(command, args)
                if first is None:
                    break
                self._call(first)
        seconds = self._core.timeout_for(command, args, timeout)
        rid, frames = self._core.request(command, args, seconds)
        channel = self._take()
        try:
            reply = self._exchange(channel, command, rid, frames, seconds)
        except BaseException:
            channel.close()  # its request may still be in flight: never reuse it
            raise
        self._give_back(channel)
        return self._core.finish(command, reply)

    def _exchange(
        self, channel: Channel, command: str, rid: int, frames: List[Any], timeout: float
    ) -> Any:
        if self._stream:
            parts = channel.exchange(frames, command, timeout)  # type: ignore[attr-defined]
            reply = self._core.match(parts, rid, only=True)
            if reply is None:
                raise BridgeConnectionError(
                    f"{self.address} answered another request than {command}", command
                )
            return reply
        deadline = time.monotonic() + timeout
        sock = channel.socket
        try:
            transport.send(sock, frames, transport.NOBLOCK)
        except zmq.Again:  # the socket's send queue is full: wait for room
            self._wait(channel, command, deadline, timeout, transport.POLLOUT)
            transport.send(sock, frames, transport.NOBLOCK)
        # The common case first: the reply arrives within the first slice. A blocking
        # receive (ZMQ_RCVTIMEO is one slice) costs one system call where a poll costs four.
        if timeout >= MONITOR_INTERVAL:
            try:
                parts = transport.recv(sock)
            except zmq.Again:
                pass
            else:
                reply = self._core.match(parts, rid)
                if reply is not None:
                    return reply
        while True:
            self._wait(channel, command, deadline, timeout, transport.POLLIN)
            reply = self._core.match(transport.recv(sock), rid)
            if reply is not None:
                return reply

    def _wait(
        self, channel: Channel, command: str, deadline: float, timeout: float, event: int
    ) -> None:
        # Poll the socket alone (cheapest on the hot path); look at the monitor between slices.
        items = [(channel.socket, event)]
        while True:
            remaining = deadline - time.monotonic()
            if remaining > 0 and transport.poll(items, slice_ms(remaining)):
                return
            events = []
            while True:
                try:
                    events.append(channel.monitor.recv_multipart(transport.NOBLOCK))
                except zmq.Again:
                    break
            channel.on_events(events)
            if channel.auth_failure is not None:
                raise self._core.auth_error(command, channel)
            if remaining <= 0:
                raise self._core.timeout_error(command, timeout, channel)

    def close(self) -> None:
        """Close the sockets. Calls still running in other threads finish first."""
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for channel in idle:
            channel.close()

    def __enter__(self) -> BridgeClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- commands

    def hello(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Protocol version, backend kind, capabilities, instrument description and limits."""
        return self._call("hello", None, timeout)

    def status(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """``state`` (idle/busy), ``current_command``, ``queue``, ``last_error``, and more.

        Answered at once, also during a long acquisition.
        """
        return self._call("status", None, timeout)

    def abort(self, timeout: Optional[float] = None) -> None:
        """Interrupt the running acquisition (it raises ``Aborted``); drop queued commands."""
        self._call("abort", None, timeout)

    def get_scan_parameters(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Scan parameters read back: width, height, dwell_time (s), rotation (deg),
        field_of_view (nm), signals."""
        return self._call("get_scan_parameters", None, timeout)

    def set_scan_parameters(
        self, timeout: Optional[float] = None, **changes: Any
    ) -> Dict[str, Any]:
        """Change some scan parameters (same names as the result); returns them all."""
        return self._call("set_scan_parameters", changes, timeout)

    def acquire_image(self, timeout: Optional[float] = None) -> ImageAcquisition:
        """Scan once; one float32 image per selected signal, with calibration."""
        return self._call("acquire_image", None, timeout)

    def get_beam_position(self, timeout: Optional[float] = None) -> Tuple[float, float]:
        """Beam ``(x, y)`` in pixels of the current scan field."""
        return self._call("get_beam_position", None, timeout)

    def set_beam_position(
        self, x: float, y: float, timeout: Optional[float] = None
    ) -> Tuple[float, float]:
        """Place the beam at column ``x``, row ``y`` (pixels, sub-pixel allowed)."""
        return self._call("set_beam_position", {"x": x, "y": y}, timeout)

    def blank_beam(self, timeout: Optional[float] = None) -> None:
        """Blank the beam."""
        self._call("blank_beam", None, timeout)

    def unblank_beam(self, timeout: Optional[float] = None) -> None:
        """Unblank the beam."""
        self._call("unblank_beam", None, timeout)

    def get_eels_parameters(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """EELS parameters read back: exposure (s), energy_offset (eV), dispersion
        (eV/channel), binning, channels."""
        return self._call("get_eels_parameters", None, timeout)

    def set_eels_parameters(
        self, timeout: Optional[float] = None, **changes: Any
    ) -> Dict[str, Any]:
        """Change some EELS parameters; returns them all."""
        return self._call("set_eels_parameters", changes, timeout)

    def acquire_spectrum(self, timeout: Optional[float] = None) -> SpectrumAcquisition:
        """One spectrum at the current beam position."""
        return self._call("acquire_spectrum", None, timeout)

    def acquire_spectra_at_points(
        self, points: Any, timeout: Optional[float] = None
    ) -> SpectrumAcquisition:
        """One spectrum at each ``(x, y)`` of ``points`` (an ``(N, 2)`` array, pixels)."""
        return self._call("acquire_spectra_at_points", {"points": points_argument(points)}, timeout)

    def acquire_spectrum_image(
        self,
        rows: int,
        cols: int,
        region: Optional[Sequence[float]] = None,
        timeout: Optional[float] = None,
    ) -> SpectrumAcquisition:
        """A ``rows x cols`` grid of spectra over ``region`` = ``(x0, y0, x1, y1)`` pixels."""
        args = {"rows": rows, "cols": cols, "region": region_argument(region)}
        return self._call("acquire_spectrum_image", args, timeout)

    def get_truth(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Ground truth of a simulated sample (twin only; others raise ``Unsupported``)."""
        return self._call("get_truth", None, timeout)
