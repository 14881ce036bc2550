"""Ground truth of the twin's last image, assembled for ``get_truth``.

Kept in its own module so that nothing on the acquisition path can reach it by accident: the
backend calls :func:`build_truth` only from ``get_truth``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .backend import TwinBackend

__all__ = ["build_truth"]

_MAX_TARGET_POINTS = 1 << 20


def build_truth(twin: TwinBackend) -> Dict[str, Any]:
    """The truth dict described in :meth:`TwinBackend.get_truth`."""
    sample = twin.sample
    frame, time, per_unit, from_image = twin.truth_frame()
    clean = sample.haadf(frame, twin.probe_sigma) * per_unit
    frame_info = frame.to_dict()
    frame_info.update(time=float(time), from_image=bool(from_image))
    truth: Dict[str, Any] = {
        "sample": sample.name,
        "seed": twin.seed,
        "parameters": sample.parameters(),
        "frame": frame_info,
        "label_names": list(sample.label_names),
        "labels": sample.labels(frame).astype(np.uint8),
        "thickness": sample.thickness(frame).astype(np.float32),
        "clean_image": clean.astype(np.float32),
        "atoms": sample.atoms(frame),
        "knocked_out": int(sample.knocked_out),
        "noise_level": twin.noise_level,
        "components": [c.name for c in sample.components],
    }
    truth.update(target_map(twin, frame))
    truth.update(sample.truth_extras(frame))
    return truth


def target_map(twin: TwinBackend, frame: Any) -> Dict[str, Any]:
    """Noise-free counts in the target band at every pixel of ``frame`` (current EELS)."""
    if twin.target_band is None:
        return {"target_band": None, "target_map": None}
    eels = twin.eels
    lo, hi = twin.target_band
    axis = eels.energy_offset + eels.channel_width * np.arange(eels.channels)
    mask = (axis >= lo) & (axis <= hi)
    info: Dict[str, Any] = {"target_band": [lo, hi]}
    n = frame.width * frame.height
    if not mask.any() or n > _MAX_TARGET_POINTS:
        info["target_map"] = None
        return info
    xs, ys = frame.pixel_grid()
    tau = twin.sample.tau(xs.ravel(), ys.ravel())
    model = twin.model
    model.prepare(eels.energy_offset, eels.dispersion, eels.binning, eels.channels)
    terms, band = model.band_basis(tau, mask)
    values = np.empty(n)
    electrons = twin._electrons(eels.exposure)
    for i in range(0, n, 8192):
        coef = model.coefficients(tau[i : i + 8192], terms)
        values[i : i + 8192] = coef @ band * electrons
    info["target_map"] = values.reshape(frame.height, frame.width).astype(np.float32)
    return info
