"""A minimal, dependency-free backend: arrays of the right shape and nothing more.

It exists so that the wire protocol, the server and the clients can be tested and
benchmarked without the twin's physics (and without scipy). The image is a smooth ramp plus
the pixel index, the spectrum a zero-loss peak whose height encodes the beam position, so a
test can tell that the data came from the right place.

Standard library and numpy only, Python 3.8 syntax.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from .base import (
    Backend,
    EELSParameters,
    ImageAcquisition,
    ScanParameters,
    SpectrumAcquisition,
    energy_axis,
)

__all__ = ["MinimalBackend"]


class MinimalBackend(Backend):
    """Shape-correct fake instrument for protocol tests and benchmarks."""

    kind = "minimal"

    def describe(self) -> Dict[str, Any]:
        return {
            "name": "minimal test instrument",
            "high_tension_kv": 200.0,
            "detectors": list(self.limits.signals),
            "spectrometer": {"name": "minimal", "sensor_channels": self.limits.sensor_channels},
            "probe": {"current_pA": 50.0, "convergence_mrad": 30.0},
        }

    def timing_overheads(self) -> Dict[str, float]:
        """Only dwell and exposure times, scaled by ``time_scale``."""
        return {
            "image_overhead": 0.0,
            "line_overhead": 0.0,
            "spectrum_overhead": 0.0,
            "acquisition_overhead": 0.0,
            "time_scale": self.time_scale,
        }

    def _do_acquire_image(self, scan: ScanParameters) -> ImageAcquisition:
        seconds = self.spend(scan.width * scan.height * scan.dwell_time)
        rows = np.arange(scan.height, dtype=np.float32)[:, None]
        cols = np.arange(scan.width, dtype=np.float32)[None, :]
        base = rows * scan.width + cols
        images = {s: base + np.float32(i) for i, s in enumerate(scan.signals)}
        return ImageAcquisition(images=images, pixel_size=scan.pixel_size, instrument_time=seconds)

    def _do_acquire_spectrum(
        self, eels: EELSParameters, position: Tuple[float, float]
    ) -> SpectrumAcquisition:
        seconds = self.spend(eels.exposure)
        axis = energy_axis(eels)
        x, y = position
        height = 1000.0 + 10.0 * x + y
        spectrum = (height * np.exp(-0.5 * (axis / 1.0) ** 2)).astype(np.float32)
        return SpectrumAcquisition(spectra=spectrum, energy_axis=axis, instrument_time=seconds)
