"""The whole instrument: the STEM column, its scan engine, its EELS camera, one bridge."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ophyd_async.core import (
    DEFAULT_TIMEOUT,
    Device,
    PathProvider,
    UUIDFilenameProvider,
    YMDPathProvider,
)

from ._bridge import AsyncBridge, BridgeHandle
from ._eels import EELSCamera, EELSPoints
from ._scan_engine import ScanEngine
from ._stem import STEM

__all__ = ["Microscope", "assets_path_provider"]


def assets_path_provider(directory: str | Path) -> PathProvider:
    """Survey images go to ``<directory>/YYYY/MM/DD/<uuid>.h5``."""
    return YMDPathProvider(UUIDFilenameProvider(), Path(directory).expanduser().resolve())


class Microscope:
    """A STEM with a scan engine and an EELS spectrometer, driven over one DM bridge.

    The parts are separate top-level devices (``stem``, ``scan``, ``eels``,
    ``eels_points``), not children of one device: Bluesky stages the *root* of every device
    a plan uses, and a survey image must be staged (a new HDF5 file per run) only when the
    scan engine itself takes part. They share one bridge connection.

    Args:
        client: an asyncio bridge client (:class:`dm_bridge.aio.AsyncBridgeClient`, or
            :class:`dm_bridge.local.AsyncLocalClient` for an in-process twin); ``None`` for
            ophyd-async mock mode.
        assets_dir: where survey images are written (the catalog's assets directory).
        path_provider: instead of ``assets_dir``, full control of file locations.

    Example (a microscope's bridge, keys as ``dm-bridge keys`` wrote them: the test suite
    cannot run it; on the digital twin :func:`ophyd_stem.sim.twin_microscope` does the same
    in one call):
        >>> import bluesky.plans as bp
        >>> from bluesky import RunEngine
        >>> from bluesky.run_engine import call_in_bluesky_event_loop
        >>> from dm_bridge.aio import AsyncBridgeClient
        >>> from ophyd_stem import Microscope
        >>> RE = RunEngine()
        >>> client = AsyncBridgeClient(
        ...     "tcp://microscope-pc:5555",
        ...     server_public_key="keys/server.key",
        ...     client_secret_key="keys/clients/me.key_secret",
        ... )                                                            # doctest: +SKIP
        >>> microscope = Microscope(client, assets_dir="~/stem-data/assets")  # doctest: +SKIP
        >>> call_in_bluesky_event_loop(microscope.connect())                # doctest: +SKIP
        >>> RE(bp.count([microscope.eels]))                                 # doctest: +SKIP
    """

    def __init__(
        self,
        client: AsyncBridge | None,
        assets_dir: str | Path | None = None,
        path_provider: PathProvider | None = None,
    ) -> None:
        if path_provider is None:
            if assets_dir is None:
                raise ValueError("give assets_dir (where survey images go) or a path_provider")
            path_provider = assets_path_provider(assets_dir)
        self.handle = BridgeHandle(client)
        self.stem = STEM(self.handle, name="stem")
        self.scan = ScanEngine(self.handle, path_provider, name="scan")
        self.eels = EELSCamera(self.handle, name="eels")
        self.eels_points = EELSPoints(self.handle, self.eels, name="eels_points")
        self.handle.scan_size = self._scan_size

    def devices(self) -> dict[str, Device]:
        """The devices by their names, e.g. to put them in a console namespace."""
        return {d.name: d for d in (self.stem, self.scan, self.eels, self.eels_points)}

    async def connect(self, mock: bool = False, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Connect every part (``mock=True``: ophyd-async mock mode, no bridge at all)."""
        await asyncio.gather(
            *(device.connect(mock=mock, timeout=timeout) for device in self.devices().values())
        )

    async def _scan_size(self) -> tuple[int, int]:
        width, height = await asyncio.gather(
            self.scan.width.get_value(), self.scan.height.get_value()
        )
        return int(width), int(height)

    @property
    def client(self) -> AsyncBridge | None:
        return self.handle.client

    def metadata(self) -> dict[str, Any]:
        """What a run should record about the instrument (from the bridge's ``hello``)."""
        hello = self.handle.hello or {}
        return {
            "instrument": hello.get("instrument", {}),
            "bridge": {
                "address": self.handle.address,
                "backend": hello.get("backend"),
                "protocol": hello.get("protocol"),
            },
        }
