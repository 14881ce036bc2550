"""How long the real instrument takes for each command: the twin's clock.

The numbers come from the timing table of the first paper (Pratiush et al., section IV.b,
"local computer" column, a Spectra 300 with DigitalMicrograph) and from the anchors the
papers give for whole acquisitions:

=============================  =========  ====================================================
action                         paper      model
=============================  =========  ====================================================
activate camera                22.9 ms    ``camera_activate`` once per spectrum command
read beam position             1.48 ms    ``beam_read``
set beam position              6.97 ms    ``beam_settle`` per spectrum position
EELS, 1 s exposure (single)    3.8 s      ``camera_activate + exposure + single_readout``
128×128 EELS grid              ~80 min    ``16384 · (beam_settle + exposure + readout)`` at
                                          the default 10 ms exposure: 80.0 min
512×512 image, 32 µs dwell     ~9 s       ``512² · 32 µs + 512 · line_flyback +
                                          frame_overhead`` = 8.5 s (+0.6 s transfer in the
                                          paper's measurement)
128×128 image (table)          3.91 s     the same formula at ~230 µs dwell (the paper does
                                          not state the dwell it used)
=============================  =========  ====================================================

The paper's DKL run quotes ~0.5 s per spectrum; with these defaults a spectrum taken through
``acquire_spectra_at_points`` at 0.2 s exposure costs 0.5 s, and a single ``acquire_spectrum``
pays the table's one-off camera set-up on top. Every field can be changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

__all__ = ["TimingModel"]


@dataclass(frozen=True)
class TimingModel:
    """Instrument time of each twin command, in seconds.

    Attributes:
        frame_overhead: scan start and frame synchronisation, per image.
        line_flyback: beam return at the end of each scan line.
        beam_settle: placing the beam at a new position (DigiScan "set beam position").
        beam_read: reading the beam position back.
        camera_activate: arming the EELS camera, once per spectrum command.
        readout: read-out and transfer of one spectrum in a batch (points, spectrum image).
        single_readout: read-out plus DigitalMicrograph's per-acquisition set-up for a single
            ``acquire_spectrum`` (3.8 s measured for a 1 s exposure).

    Example:
        >>> from dm_bridge.backends.base import ScanParameters
        >>> t = TimingModel()
        >>> round(t.image_time(ScanParameters(512, 512, 32e-6)), 2)
        8.54
        >>> round(t.points_time(128 * 128, 0.01) / 60, 1)
        80.0
    """

    frame_overhead: float = 0.1
    line_flyback: float = 100e-6
    beam_settle: float = 6.97e-3
    beam_read: float = 1.48e-3
    camera_activate: float = 22.9e-3
    readout: float = 0.2759
    single_readout: float = 2.777

    def image_time(self, scan: Any) -> float:
        """Seconds to scan one frame: pixels × dwell + flyback per line + frame overhead."""
        pixels = scan.width * scan.height
        return pixels * scan.dwell_time + scan.height * self.line_flyback + self.frame_overhead

    def point_time(self, exposure: float) -> float:
        """Seconds per position in a batch: place the beam, expose, read out."""
        return self.beam_settle + exposure + self.readout

    def points_time(self, n_points: int, exposure: float) -> float:
        """Seconds for ``n_points`` spectra in one command (including arming the camera)."""
        return self.camera_activate + n_points * self.point_time(exposure)

    def spectrum_time(self, exposure: float) -> float:
        """Seconds for one ``acquire_spectrum`` at the current beam position."""
        return self.camera_activate + exposure + self.single_readout

    def to_dict(self) -> Dict[str, float]:
        return asdict(self)
