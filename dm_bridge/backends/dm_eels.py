"""The DigitalMicrograph backend's spectrometer: EELS parameters and spectra from DM's camera.

A mixin of :class:`~.digitalmicrograph.DigitalMicrographBackend` (before
:class:`~.base.Backend`, whose EELS commands it implements), so that the backend module keeps
to the survey image and the beam (DigiScan) and this one to the spectrometer and its camera.
Every DM call goes through the backend's :class:`~.dm_session.DMSession`. Read-back: the EELS
parameters are what the last spectrum's tags say (exposure, dispersion, binning) and what DM
says live (the energy loss), except a parameter set since the last spectrum, which DM can only
confirm by acquiring. The dispersion is selected on the spectrometer in DM; the energy loss is
set only when the client names it, so a change the operator made in DM is never undone.

Standard library and numpy only, Python 3.8 syntax.
"""

from __future__ import annotations

import logging
import math
from dataclasses import fields, replace
from typing import Any, Dict, Optional, Set, Tuple

import numpy as np

from ..errors import InstrumentError, Unsupported
from .base import EELSParameters, SpectrumAcquisition, energy_axis
from .dm_calibration import EELS_TAGS, dimension_calibration, energy_to_ev, read_tag
from .dm_session import DMSession

__all__ = ["DMSpectrometer"]

log = logging.getLogger(__name__)


class DMSpectrometer:
    """EELS commands of the DM backend (a mixin before :class:`~.base.Backend`).

    It uses the backend's state, set by its ``__init__``: the DM session, the camera's
    read-out settings and what was set since the last spectrum.
    """

    session: DMSession
    _eels: EELSParameters
    _last_spectrum: Any  # the last spectrum's Py_Image (its tags are the read-back)
    _dirty_eels: Set[str]  # EELS parameters set since the last spectrum
    _energy_requested: bool  # the client named energy_offset in this set_eels_parameters
    _eels_rows: Optional[Tuple[int, int]]
    _vbin: int
    _processing: str
    _camera_id: Optional[int]

    def _do_set_eels_parameters(self, params: EELSParameters) -> None:
        old = self._eels
        if not math.isclose(params.dispersion, old.dispersion, rel_tol=1e-9):
            known = "read back" if self._last_spectrum is not None else "assumed: no spectrum yet"
            raise Unsupported(
                "the dispersion is selected on the spectrometer in DigitalMicrograph "
                f"(now {old.dispersion:g} eV/channel, {known}); select it there, the next "
                "spectrum reads it back"
            )
        if self._energy_requested:
            with self.session.call("set the energy loss (IFSetEnergyLoss)"):
                self._apply_energy_loss(params.energy_offset)
        self._dirty_eels |= {
            f.name
            for f in fields(EELSParameters)
            if getattr(params, f.name) != getattr(old, f.name)
        }

    def set_eels_parameters(self, **changes: Any) -> Dict[str, Any]:
        # Only an energy offset the client names moves the spectrometer: merging would
        # otherwise send our cached value back and undo a change the operator made in DM.
        self._energy_requested = "energy_offset" in changes
        try:
            return super().set_eels_parameters(**changes)
        finally:
            self._energy_requested = False

    def _apply_energy_loss(self, energy_offset: float) -> None:
        try:  # compare with DM, not with our cache: the operator may have moved it
            current: Optional[float] = self.session.energy_loss()
        except Exception as exc:
            log.info("IFGetEnergyLoss failed (%s); setting the energy loss regardless", exc)
            current = None
        if current is None or not math.isclose(current, energy_offset, abs_tol=1e-9):
            self.session.set_energy_loss(energy_offset)

    def _eels_from_spectrum(self) -> Dict[str, Any]:
        """EELS parameters as the last spectrum's tags state them (unless set since)."""
        image = self._last_spectrum
        tags = image.GetTagGroup()
        found = {
            "exposure": read_tag(tags, EELS_TAGS["exposure"]),
            "dispersion": read_tag(tags, EELS_TAGS["dispersion"]),
            "binning": read_tag(tags, EELS_TAGS["binning"], "long"),
            "energy_offset": read_tag(tags, EELS_TAGS["energy_loss"]),
            "channels": int(np.shape(image.GetNumArray())[-1]),
        }
        if found["dispersion"] is None and found["binning"]:
            # no spectrometer tags: the energy calibration still states eV per channel
            _, scale, unit = dimension_calibration(image, 0)
            per_channel = energy_to_ev(scale, unit)
            found["dispersion"] = per_channel / found["binning"] if per_channel else None
        return {k: v for k, v in found.items() if v is not None and k not in self._dirty_eels}

    def _do_read_eels_parameters(self, assumed: EELSParameters) -> EELSParameters:
        found: Dict[str, Any] = {}
        with self.session.call("read the EELS parameters"):
            if self._last_spectrum is not None:
                found = self._eels_from_spectrum()
            try:
                found["energy_offset"] = self.session.energy_loss()  # live
            except Exception as exc:
                log.info("IFGetEnergyLoss failed (%s); energy offset from the last spectrum", exc)
        return replace(assumed, **found)

    def _read_area(self, camera: Any) -> Tuple[int, int, int]:
        if self._eels_rows is not None:
            return self._eels_rows[0], self._eels_rows[1], 0
        top, left, bottom, _ = self.session.default_read_area(camera)
        return top, bottom, left

    def _do_acquire_spectrum(
        self, eels: EELSParameters, position: Tuple[float, float]
    ) -> SpectrumAcquisition:
        with self.session.call("acquire an EELS spectrum") as watch:
            camera = self.session.camera(self._camera_id)
            top, bottom, left = self._read_area(camera)
            right = left + eels.channels * eels.binning
            image = camera.AcquireImage(
                eels.exposure,
                eels.binning,
                self._vbin,
                self.session.processing_code(self._processing),
                top,
                left,
                bottom,
                right,
            )
            data = np.array(image.GetNumArray(), dtype=np.float64)
            origin, scale, unit = dimension_calibration(image, 0)
            # rows of the read-out area sum to the spectrum (DM's own spectrum readout)
            spectrum = data.reshape(-1, data.shape[-1]).sum(axis=0) if data.ndim > 1 else data
            if spectrum.shape != (eels.channels,):
                raise InstrumentError(
                    f"the camera returned {spectrum.shape[0]} channels, expected {eels.channels}"
                )
            self._last_spectrum = image
            self._dirty_eels.clear()
            self._eels = replace(eels, **self._eels_from_spectrum())
        ev_per_channel = energy_to_ev(scale, unit)
        if ev_per_channel:
            axis = (np.arange(eels.channels, dtype=np.float64) - origin) * ev_per_channel
            axis_source = "spectrum calibration"
        else:  # an uncalibrated camera image: fall back to the read-back settings
            axis, axis_source = energy_axis(self._eels), "EELS parameters"
        return SpectrumAcquisition(
            spectra=spectrum.astype(np.float32),
            energy_axis=axis,
            instrument_time=watch.seconds,
            metadata={"energy_axis_source": axis_source, "read_area": [top, left, bottom, right]},
        )
