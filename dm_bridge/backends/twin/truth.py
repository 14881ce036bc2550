"""Ground truth of the twin's last image, assembled for ``get_truth``.

Kept in its own module so that nothing on the acquisition path can reach it by accident: the
backend calls :func:`build_truth` only from ``get_truth``. It sits below the backend: it
takes the sample, the frame and the settings it needs as arguments and imports nothing of
:mod:`.backend`, so the twin's modules import only downward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..base import EELSParameters
from .eels import SpectrumModel
from .geometry import ScanFrame
from .samples import Sample

__all__ = ["TargetBand", "TruthFrame", "build_truth", "target_map"]

_MAX_TARGET_POINTS = 1 << 20


@dataclass(frozen=True)
class TruthFrame:
    """The field that truth describes.

    Attributes:
        frame: the scan frame (drift included) of the last image, or of the current field.
        time: instrument seconds at which that frame was (or would be) scanned.
        electrons_per_unit: expected HAADF electrons per pixel for a scattered fraction of 1.
        from_image: False before the first image.
    """

    frame: ScanFrame
    time: float
    electrons_per_unit: float
    from_image: bool


@dataclass(frozen=True)
class TargetBand:
    """What the target map needs: the band, the EELS settings and the spectrum model.

    Attributes:
        band: ``(low, high)`` energy loss, eV.
        eels: the EELS settings in force.
        model: the twin's spectrum model.
        electrons: electrons delivered per spectrum (beam current x exposure).
    """

    band: Tuple[float, float]
    eels: EELSParameters
    model: SpectrumModel
    electrons: float


def build_truth(
    sample: Sample,
    where: TruthFrame,
    probe_sigma: float,
    seed: int,
    noise_level: Optional[float],
    target: Optional[TargetBand],
) -> Dict[str, Any]:
    """The truth dict described in :meth:`TwinBackend.get_truth`.

    Args:
        sample: the simulated specimen.
        where: the field truth describes.
        probe_sigma: probe standard deviation, nm.
        seed: the twin's seed (recorded, not used).
        noise_level: the twin's HAADF noise level (recorded, not used).
        target: the DKL target band, or None to leave the target map out.
    """
    frame = where.frame
    clean = sample.haadf(frame, probe_sigma) * where.electrons_per_unit
    frame_info = frame.to_dict()
    frame_info.update(time=float(where.time), from_image=bool(where.from_image))
    truth: Dict[str, Any] = {
        "sample": sample.name,
        "seed": seed,
        "parameters": sample.parameters(),
        "frame": frame_info,
        "label_names": list(sample.label_names),
        "labels": sample.labels(frame).astype(np.uint8),
        "thickness": sample.thickness(frame).astype(np.float32),
        "clean_image": clean.astype(np.float32),
        "atoms": sample.atoms(frame),
        "knocked_out": int(sample.knocked_out),
        "noise_level": noise_level,
        "components": [c.name for c in sample.components],
    }
    truth.update(target_map(sample, frame, target))
    truth.update(sample.truth_extras(frame))
    return truth


def target_map(sample: Sample, frame: ScanFrame, target: Optional[TargetBand]) -> Dict[str, Any]:
    """Noise-free counts in the target band at every pixel of ``frame``."""
    if target is None:
        return {"target_band": None, "target_map": None}
    eels = target.eels
    lo, hi = target.band
    axis = eels.energy_offset + eels.channel_width * np.arange(eels.channels)
    mask = (axis >= lo) & (axis <= hi)
    info: Dict[str, Any] = {"target_band": [lo, hi]}
    n = frame.width * frame.height
    if not mask.any() or n > _MAX_TARGET_POINTS:
        info["target_map"] = None
        return info
    xs, ys = frame.pixel_grid()
    tau = sample.tau(xs.ravel(), ys.ravel())
    model = target.model
    model.prepare(eels.energy_offset, eels.dispersion, eels.binning, eels.channels)
    terms, band = model.band_basis(tau, mask)
    values = np.empty(n)
    for i in range(0, n, 8192):
        coef = model.coefficients(tau[i : i + 8192], terms)
        values[i : i + 8192] = coef @ band * target.electrons
    info["target_map"] = values.reshape(frame.height, frame.width).astype(np.float32)
    return info
