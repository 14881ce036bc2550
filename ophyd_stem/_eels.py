"""The EELS camera: triggering acquires one spectrum at the beam's position."""

from __future__ import annotations

import numpy as np
from bluesky.protocols import Triggerable
from ophyd_async.core import (
    Array1D,
    AsyncStatus,
    StandardReadable,
    StandardReadableFormat,
    soft_signal_r_and_setter,
)

from dm_bridge.backends.base import SpectrumAcquisition

from ._bridge import BridgeHandle, bridge_signal

__all__ = ["EELSCamera"]


class EELSCamera(StandardReadable, Triggerable):
    """EELS camera and spectrometer settings; ``trigger()`` acquires a spectrum.

    The spectrum travels inline in the event (``eels-spectrum``, counts per channel); its
    energy axis (``eels-energy_axis``, eV) is in the configuration of every run and is
    refreshed with each acquisition, so every reader can plot it. A scalar,
    ``eels-intensity`` (total counts), is hinted so BestEffortCallback and LiveGrid have
    something sensible to plot while a spectrum image is acquired.

    Example:
        >>> RE(bps.mv(eels.exposure, 0.05))
        >>> RE(bp.count([eels], num=3))
    """

    def __init__(self, handle: BridgeHandle, name: str = "") -> None:
        self._handle = handle
        with self.add_children_as_readables(StandardReadableFormat.CONFIG_SIGNAL):
            self.exposure = self._param(float, "exposure", "s", 4)
            self.energy_offset = self._param(float, "energy_offset", "eV", 3)
            self.dispersion = self._param(float, "dispersion", "eV/channel", 4)
            self.binning = self._param(int, "binning", None, None)
            self.channels = self._param(int, "channels", None, None)
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
        super().__init__(name=name)

    def _param(self, datatype, key: str, units: str | None, precision: int | None):
        async def read():
            params = await self._handle.read_group("eels")
            return datatype(params[key])

        async def write(value):
            client = self._handle.require_client()
            new = await client.set_eels_parameters(**{key: datatype(value)})
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
        self.publish(await client.acquire_spectrum())
