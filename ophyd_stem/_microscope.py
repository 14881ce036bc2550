"""One device for the whole instrument: the STEM column, its scan engine, its EELS camera."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ophyd_async.core import Device, PathProvider, UUIDFilenameProvider, YMDPathProvider

from ._bridge import AsyncBridge, BridgeHandle
from ._eels import EELSCamera
from ._scan_engine import ScanEngine
from ._stem import STEM

__all__ = ["Microscope", "assets_path_provider"]


def assets_path_provider(directory: str | Path) -> PathProvider:
    """Survey images go to ``<directory>/YYYY/MM/DD/<uuid>.h5``."""
    return YMDPathProvider(UUIDFilenameProvider(), Path(directory).expanduser().resolve())


class Microscope(Device):
    """A STEM with a scan engine and an EELS spectrometer, driven over one DM bridge.

    The three parts keep short names of their own (``stem``, ``scan``, ``eels``), whatever
    the microscope is called, so data keys read ``stem-beam-x``, ``scan-haadf``,
    ``eels-spectrum`` in every run.

    Args:
        client: an asyncio bridge client (:class:`dm_bridge.client.AsyncBridgeClient`, or
            :class:`dm_bridge.local.AsyncLocalClient` for an in-process twin).
        assets_dir: where survey images are written (the catalog's assets directory).

    Example:
        >>> RE = RunEngine()
        >>> with init_devices():
        ...     microscope = Microscope(client, assets_dir="~/stem-data/assets")
        >>> stem, scan, eels = microscope.stem, microscope.scan, microscope.eels
    """

    def __init__(
        self,
        client: AsyncBridge | None,
        assets_dir: str | Path | None = None,
        path_provider: PathProvider | None = None,
        name: str = "",
    ) -> None:
        if path_provider is None:
            if assets_dir is None:
                raise ValueError("give assets_dir (where survey images go) or a path_provider")
            path_provider = assets_path_provider(assets_dir)
        self.handle = BridgeHandle(client)
        self.stem = STEM(self.handle)
        self.scan = ScanEngine(self.handle, path_provider)
        self.eels = EELSCamera(self.handle)
        self.handle.scan_size = self._scan_size
        super().__init__(name=name)

    async def _scan_size(self) -> tuple[int, int]:
        width, height = await asyncio.gather(
            self.scan.width.get_value(), self.scan.height.get_value()
        )
        return int(width), int(height)

    def set_name(self, name: str, *, child_name_separator: str | None = None) -> None:
        super().set_name(name, child_name_separator=child_name_separator)
        for short in ("stem", "scan", "eels"):
            getattr(self, short).set_name(short, child_name_separator=child_name_separator)

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
