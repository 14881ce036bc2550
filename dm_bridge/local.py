"""In-process clients: the bridge client API, calling a backend directly, without sockets.

``LocalClient`` and ``AsyncLocalClient`` have exactly the methods (and return types) of
:class:`dm_bridge.client.BridgeClient` and :class:`dm_bridge.client.AsyncBridgeClient`, so
devices, plans and tests can run against a twin in the same process, at no transport cost,
and switch to a real bridge by changing one object. Like the server, they run one instrument
command at a time; the asyncio flavour runs it in a single worker thread so the event loop
never blocks on a long acquisition, and ``abort`` reaches the backend at once.

Standard library and numpy only.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Optional, Sequence, Tuple

from .backends.base import Backend, ImageAcquisition, SpectrumAcquisition

__all__ = ["PROTOCOL_VERSION_LOCAL", "AsyncLocalClient", "LocalClient"]

#: reported by ``hello`` of a local client in place of the wire protocol version
PROTOCOL_VERSION_LOCAL = "local"


class LocalClient:
    """Blocking client bound to a backend in this process.

    Args:
        backend: the instrument (a :class:`~dm_bridge.backends.base.Backend`).

    Example:
        >>> from dm_bridge.backends.minimal import MinimalBackend
        >>> client = LocalClient(MinimalBackend())
        >>> client.set_beam_position(10.5, 3.0)
        (10.5, 3.0)
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._lock = threading.Lock()
        self._current: Optional[str] = None
        self.address = "local://" + backend.kind

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.backend.clear_abort()
            self._current = method
            try:
                return getattr(self.backend, method)(*args, **kwargs)
            except Exception as exc:
                self.backend.last_error = str(exc)
                raise
            finally:
                self._current = None

    # The methods below mirror the wire commands one to one.

    def hello(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        info = dict(self.backend.hello())
        info["protocol"] = PROTOCOL_VERSION_LOCAL
        return info

    def status(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        # The same keys as the bridge server's status (it adds queue_limit, uptime, ...).
        current = self._current
        state = {
            "state": "busy" if current is not None else "idle",
            "current_command": current,
            "queue": 0,
        }
        state.update(self.backend.status())
        return state

    def abort(self, timeout: Optional[float] = None) -> None:
        self.backend.abort()

    def get_scan_parameters(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        return self._call("get_scan_parameters")

    def set_scan_parameters(
        self, timeout: Optional[float] = None, **changes: Any
    ) -> Dict[str, Any]:
        return self._call("set_scan_parameters", **changes)

    def acquire_image(self, timeout: Optional[float] = None) -> ImageAcquisition:
        return self._call("acquire_image")

    def get_beam_position(self, timeout: Optional[float] = None) -> Tuple[float, float]:
        return self._call("get_beam_position")

    def set_beam_position(
        self, x: float, y: float, timeout: Optional[float] = None
    ) -> Tuple[float, float]:
        return self._call("set_beam_position", x, y)

    def blank_beam(self, timeout: Optional[float] = None) -> None:
        self._call("blank_beam")

    def unblank_beam(self, timeout: Optional[float] = None) -> None:
        self._call("unblank_beam")

    def get_eels_parameters(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        return self._call("get_eels_parameters")

    def set_eels_parameters(
        self, timeout: Optional[float] = None, **changes: Any
    ) -> Dict[str, Any]:
        return self._call("set_eels_parameters", **changes)

    def acquire_spectrum(self, timeout: Optional[float] = None) -> SpectrumAcquisition:
        return self._call("acquire_spectrum")

    def acquire_spectra_at_points(
        self, points: Any, timeout: Optional[float] = None
    ) -> SpectrumAcquisition:
        return self._call("acquire_spectra_at_points", points)

    def acquire_spectrum_image(
        self,
        rows: int,
        cols: int,
        region: Optional[Sequence[float]] = None,
        timeout: Optional[float] = None,
    ) -> SpectrumAcquisition:
        return self._call("acquire_spectrum_image", rows, cols, region)

    def get_truth(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        return self._call("get_truth")

    def close(self) -> None:
        """Nothing to release: the backend belongs to whoever created it."""

    def __enter__(self) -> LocalClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncLocalClient:
    """asyncio client bound to a backend in this process (the ophyd-async devices' view).

    Instrument commands run in one worker thread, one at a time; ``hello``, ``status`` and
    ``abort`` answer at once, as the real server's I/O thread does.
    """

    def __init__(self, backend: Backend) -> None:
        self._sync = LocalClient(backend)
        self.backend = backend
        self.address = self._sync.address
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="instrument")

    async def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        fn = getattr(self._sync, method)
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def hello(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        return self._sync.hello()

    async def status(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        return self._sync.status()

    async def abort(self, timeout: Optional[float] = None) -> None:
        self._sync.abort()

    async def get_scan_parameters(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        return await self._run("get_scan_parameters")

    async def set_scan_parameters(
        self, timeout: Optional[float] = None, **changes: Any
    ) -> Dict[str, Any]:
        return await self._run("set_scan_parameters", **changes)

    async def acquire_image(self, timeout: Optional[float] = None) -> ImageAcquisition:
        return await self._run("acquire_image")

    async def get_beam_position(self, timeout: Optional[float] = None) -> Tuple[float, float]:
        return await self._run("get_beam_position")

    async def set_beam_position(
        self, x: float, y: float, timeout: Optional[float] = None
    ) -> Tuple[float, float]:
        return await self._run("set_beam_position", x, y)

    async def blank_beam(self, timeout: Optional[float] = None) -> None:
        await self._run("blank_beam")

    async def unblank_beam(self, timeout: Optional[float] = None) -> None:
        await self._run("unblank_beam")

    async def get_eels_parameters(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        return await self._run("get_eels_parameters")

    async def set_eels_parameters(
        self, timeout: Optional[float] = None, **changes: Any
    ) -> Dict[str, Any]:
        return await self._run("set_eels_parameters", **changes)

    async def acquire_spectrum(self, timeout: Optional[float] = None) -> SpectrumAcquisition:
        return await self._run("acquire_spectrum")

    async def acquire_spectra_at_points(
        self, points: Any, timeout: Optional[float] = None
    ) -> SpectrumAcquisition:
        return await self._run("acquire_spectra_at_points", points)

    async def acquire_spectrum_image(
        self,
        rows: int,
        cols: int,
        region: Optional[Sequence[float]] = None,
        timeout: Optional[float] = None,
    ) -> SpectrumAcquisition:
        return await self._run("acquire_spectrum_image", rows, cols, region)

    async def get_truth(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        return await self._run("get_truth")

    def close(self) -> None:
        """Stop the worker thread (waits for a running command to finish)."""
        self._executor.shutdown(wait=True)
