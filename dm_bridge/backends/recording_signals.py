"""Interpretation of rosettasciio-style signal dicts as survey images and spectrum images.

Every reader (rosettasciio's DigitalMicrograph, HyperSpy and Velox readers, and the plain
array layout) returns signals as dicts with ``data``, ``axes``, ``metadata`` and
``original_metadata``; this module decides which are survey images and which spectrum
images, turns their axes into calibrations in nm and eV, and collects the instrument
metadata (exposure, dwell time, high tension, names) used by
:func:`dm_bridge.backends.recording.load_recording`.
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .recording_types import DEFAULT_SIGNAL, NM_PER_UNIT, GridAxis, Recording, RecordingError

__all__ = [
    "detector_name",
    "fill_instrument",
    "fill_spectra",
    "fill_survey",
    "override_pixel_size",
    "pick_spectrum",
    "positive",
    "signal_kind",
    "synthesise_survey",
    "title_of",
]

_EV_PER_UNIT = {"eV": 1.0, "keV": 1e3, "meV": 1e-3}
_UNCALIBRATED_UNITS = {"", "<undefined>", "undefined", "px", "pixel", "pixels", "none"}

#: detector names recognised in image titles, most specific first
_DETECTORS = ("HAADF", "MAADF", "LAADF", "ADF", "ABF", "BF", "DF", "SE", "BSE")


# ------------------------------------------------------------------------------ signals


def title_of(sig: Mapping[str, Any]) -> str:
    return str(_get(sig.get("metadata", {}), "General.title") or sig.get("title") or "")


def _get(tree: Any, dotted: str) -> Any:
    """``tree["a"]["b"]`` for ``"a.b"``; None where any step is missing."""
    node = tree
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _axes(sig: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Axes in array order, with sizes checked against the data."""
    data = sig["data"]
    axes = [dict(a) for a in sig.get("axes", [])]
    if axes and all("index_in_array" in a for a in axes):
        axes.sort(key=lambda a: int(a["index_in_array"]))
    if len(axes) != data.ndim:
        raise RecordingError(
            f"signal {title_of(sig)!r}: {len(axes)} axes for data of shape {data.shape}"
        )
    for a, n in zip(axes, data.shape):
        if "size" in a and int(a["size"]) != n:
            raise RecordingError(
                f"signal {title_of(sig)!r}: axis {a.get('name')!r} has size {a['size']} but the "
                f"data has {n} along it (shape {data.shape})"
            )
        a["size"] = int(n)
    return axes


def _is_energy_axis(axis: Mapping[str, Any]) -> bool:
    units = str(axis.get("units") or "").strip()
    return units in _EV_PER_UNIT or "energy" in str(axis.get("name") or "").lower()


def signal_kind(sig: Mapping[str, Any]) -> str:
    """'image', 'spectrum', or 'other' (image stacks, 3-D signals...)."""
    data = sig["data"]
    axes = _axes(sig)
    signal_axes = [a for a in axes if not a.get("navigate", False)]
    if data.ndim == 2 and len(signal_axes) == 2:
        return "image"
    signal_type = str(_get(sig.get("metadata", {}), "Signal.signal_type") or "")
    if (
        len(signal_axes) == 1
        and 1 <= data.ndim <= 3
        and (_is_energy_axis(signal_axes[0]) or "EELS" in signal_type)
    ):
        return "spectrum"
    return "other"


def pick_spectrum(spectra: Sequence[Dict[str, Any]], title: Optional[str]) -> Dict[str, Any]:
    titles = [title_of(s) for s in spectra]
    if title is not None:
        chosen = [s for s, t in zip(spectra, titles) if t == title]
        if not chosen:
            raise RecordingError(f"no spectrum image titled {title!r}; found {titles}")
        return chosen[0]
    if len(spectra) > 1:
        eels = [s for s in spectra if "EELS" in str(_get(s["metadata"], "Signal.signal_type"))]
        if len(eels) == 1:
            return eels[0]
        raise RecordingError(
            f"the recording holds {len(spectra)} spectrum images {titles}; choose one by title"
        )
    return spectra[0]


def _spatial(axis: Mapping[str, Any], notes: Dict[str, Any], what: str) -> GridAxis:
    size = int(axis["size"])
    scale = float(axis.get("scale", 1.0) or 1.0)
    offset = float(axis.get("offset", 0.0) or 0.0)
    units = str(axis.get("units") or "").strip()
    if "axis" in axis and axis.get("scale") is None:
        values = np.asarray(axis["axis"], dtype=np.float64)
        if values.size >= 2:
            scale = float(values[1] - values[0])
        offset = float(values[0]) if values.size else 0.0
    if not (math.isfinite(scale) and math.isfinite(offset)) or scale <= 0:
        notes[f"{what}_calibration"] = f"unusable scale {scale!r}; treated as uncalibrated"
        return GridAxis(size)
    if units in NM_PER_UNIT:
        k = NM_PER_UNIT[units]
        return GridAxis(size, scale * k, offset * k, True)
    if units.lower() in _UNCALIBRATED_UNITS:
        if scale == 1.0 and offset == 0.0:
            return GridAxis(size)
        # A scale other than 1 without units (HyperSpy files saved from bare arrays) is
        # almost always nm in STEM; say so rather than refuse.
        notes[f"{what}_units"] = "no length unit in the file; assumed nm"
        return GridAxis(size, scale, offset, True)
    notes[f"{what}_units"] = f"unknown length unit {units!r}; treated as uncalibrated"
    return GridAxis(size)


def fill_spectra(
    rec: Recording,
    sig: Dict[str, Any],
    energy_offset: Optional[float],
    dispersion: Optional[float],
    notes: Dict[str, Any],
) -> None:
    data = np.asarray(sig["data"])
    axes = _axes(sig)
    if np.iscomplexobj(data) or not np.issubdtype(data.dtype, np.number):
        raise RecordingError(f"spectrum image {title_of(sig)!r} has non-real data ({data.dtype})")
    e_index = next(i for i, a in enumerate(axes) if not a.get("navigate", False))
    data = np.moveaxis(data, e_index, -1)
    e_axis = axes.pop(e_index)
    nav = axes
    if len(nav) == 0:
        data = data.reshape(1, 1, -1)
        xs, ys = GridAxis(1), GridAxis(1)
    elif len(nav) == 1:
        # A line scan: vertical when its axis says y, horizontal otherwise.
        along = _spatial(nav[0], notes, "spectrum")
        if str(nav[0].get("name") or "").strip().lower() == "y":
            data = data.reshape(-1, 1, data.shape[-1])
            xs, ys = GridAxis(1), along
        else:
            data = data.reshape(1, -1, data.shape[-1])
            xs, ys = along, GridAxis(1)
    else:
        ys = _spatial(nav[0], notes, "spectrum")
        xs = _spatial(nav[1], notes, "spectrum")
    if data.shape[-1] < 1 or data.size == 0:
        raise RecordingError(f"spectrum image {title_of(sig)!r} is empty (shape {data.shape})")
    rec.spectra = np.ascontiguousarray(data, dtype=np.float32)
    rec.spectrum_x, rec.spectrum_y = xs, ys
    rec.energy_offset, rec.dispersion = _energy_calibration(e_axis, sig, notes)
    if energy_offset is not None:
        rec.energy_offset = float(energy_offset)
        notes["energy_offset"] = "given by the user"
    if dispersion is not None:
        rec.dispersion = positive("dispersion", dispersion)
        notes["dispersion"] = "given by the user"
    if (energy_offset is None or dispersion is None) and notes.get("energy_uncalibrated"):
        raise RecordingError(
            f"spectrum image {title_of(sig)!r} has no energy calibration "
            f"(axis units {e_axis.get('units')!r}); give energy_offset and dispersion"
        )
    notes.pop("energy_uncalibrated", None)
    notes["spectrum_title"] = title_of(sig)


def _energy_calibration(
    axis: Mapping[str, Any], sig: Mapping[str, Any], notes: Dict[str, Any]
) -> Tuple[float, float]:
    units = str(axis.get("units") or "").strip()
    if "axis" in axis and axis.get("scale") is None:
        values = np.asarray(axis["axis"], dtype=np.float64)
        steps = np.diff(values)
        if values.size >= 2 and not np.allclose(steps, steps[0], rtol=1e-6, atol=0.0):
            raise RecordingError(
                f"spectrum image {title_of(sig)!r} has a non-uniform energy axis; the bridge "
                "serves uniform axes (offset + dispersion) only"
            )
        offset = float(values[0])
        scale = float(steps[0]) if values.size >= 2 else 1.0
    else:
        offset = float(axis.get("offset", 0.0) or 0.0)
        scale = float(axis.get("scale", 1.0) or 1.0)
    if units in _EV_PER_UNIT:
        k = _EV_PER_UNIT[units]
        offset, scale = offset * k, scale * k
    else:
        notes["energy_uncalibrated"] = True
    if not (math.isfinite(offset) and math.isfinite(scale)) or scale <= 0:
        raise RecordingError(
            f"spectrum image {title_of(sig)!r}: unusable energy calibration "
            f"offset={offset!r}, dispersion={scale!r}"
        )
    return offset, scale


def detector_name(title: str) -> Optional[str]:
    """The detector a survey image's title names (``"HAADF Image"`` -> ``"HAADF"``)."""
    tokens = set(re.split(r"[^A-Z0-9]+", title.upper()))
    for name in _DETECTORS:
        if name in tokens:
            return name
    return None


def fill_survey(
    rec: Recording, images: Sequence[Dict[str, Any]], signal: Optional[str], notes: Dict[str, Any]
) -> None:
    named: List[Tuple[str, Dict[str, Any]]] = []
    for i, sig in enumerate(images):
        title = title_of(sig)
        name = detector_name(title) or (title.strip() if title.strip() else None)
        if name is None:
            name = DEFAULT_SIGNAL if len(images) == 1 else f"image{i}"
            notes["survey_signal"] = f"detector not named in the file; served as {name!r}"
        while name in dict(named):
            name = f"{name}_{i}"
        named.append((name, sig))
    if signal is not None:
        if len(named) == 1:
            named = [(signal, named[0][1])]
            notes["survey_signal"] = f"served as {signal!r} (given by the user)"
        else:
            chosen = [(n, s) for n, s in named if signal in (n, title_of(s))]
            if not chosen:
                raise RecordingError(
                    f"no survey image called {signal!r}; found {[n for n, _ in named]}"
                )
            named = chosen[:1]
    shapes = {n: np.shape(s["data"]) for n, s in named}
    if len(set(shapes.values())) > 1:
        raise RecordingError(f"survey images have inconsistent shapes: {shapes}")
    first = named[0][1]
    axes = _axes(first)
    rec.survey_y = _spatial(axes[0], notes, "survey")
    rec.survey_x = _spatial(axes[1], notes, "survey")
    for name, sig in named:
        data = np.asarray(sig["data"])
        if np.iscomplexobj(data) or not np.issubdtype(data.dtype, np.number):
            raise RecordingError(f"survey image {name!r} has non-real data ({data.dtype})")
        rec.survey[name] = np.ascontiguousarray(data, dtype=np.float32)
    notes["survey_titles"] = {n: title_of(s) for n, s in named}
    if rec.spectra is not None and rec.spectrum_x is not None and rec.spectrum_y is not None:
        for what, s_ax, si_ax in (
            ("x", rec.survey_x, rec.spectrum_x),
            ("y", rec.survey_y, rec.spectrum_y),
        ):
            if not (s_ax.calibrated and si_ax.calibrated):
                notes[f"position_mapping_{what}"] = "spectrum image spans the survey field"


def synthesise_survey(rec: Recording, signal: Optional[str], notes: Dict[str, Any]) -> None:
    assert rec.spectra is not None
    name = signal or DEFAULT_SIGNAL
    # Integrated intensity: what a survey image would show of the same positions, and
    # cheap; float64 sum so that large spectra do not lose counts.
    rec.survey = {name: rec.spectra.sum(axis=-1, dtype=np.float64).astype(np.float32)}
    rec.survey_x, rec.survey_y = rec.spectrum_x, rec.spectrum_y
    notes["survey_synthesised"] = (
        f"no survey image in the recording: {name!r} is the spectrum image's integrated intensity"
    )


def override_pixel_size(rec: Recording, pixel_size: float, notes: Dict[str, Any]) -> None:
    pixel_size = positive("pixel_size", pixel_size)
    old_x, old_y = rec.survey_x, rec.survey_y
    rec.survey_x = GridAxis(old_x.size, pixel_size, old_x.offset / old_x.scale * pixel_size, True)
    rec.survey_y = GridAxis(old_y.size, pixel_size, old_y.offset / old_y.scale * pixel_size, True)
    if rec.spectra is not None and notes.get("survey_synthesised"):
        rec.spectrum_x, rec.spectrum_y = rec.survey_x, rec.survey_y
    notes["pixel_size"] = "given by the user"


def positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise RecordingError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise RecordingError(f"{name} must be positive and finite, got {value!r}")
    return v


# ------------------------------------------------------------------------------ metadata


def _dm_image_tags(sig: Mapping[str, Any]) -> Mapping[str, Any]:
    tags = _get(sig.get("original_metadata", {}), "ImageList.TagGroup0.ImageTags")
    return tags if isinstance(tags, Mapping) else {}


def _number(value: Any) -> Optional[float]:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _text(value: Any) -> Optional[str]:
    if value is None:
        return None
    text = str(value).strip()
    return text if text and text.lower() not in ("unknown", "[]", "_none_") else None


def fill_instrument(rec: Recording, sigs: Sequence[Dict[str, Any]], notes: Dict[str, Any]) -> None:
    """Exposure, dwell time, high tension and names, from the mapped metadata first and
    from DigitalMicrograph's own tags where rosettasciio leaves them to HyperSpy."""
    for i, sig in enumerate(sigs):
        md = sig.get("metadata", {})
        tags = _dm_image_tags(sig)
        is_spectrum = i == 0 and rec.spectra is not None
        tem = _get(md, "Acquisition_instrument.TEM") or _get(md, "Acquisition_instrument.SEM")
        tem = tem if isinstance(tem, Mapping) else {}
        if rec.high_tension_kv is None:
            volts = _number(_get(tags, "Microscope Info.Voltage"))
            rec.high_tension_kv = _number(tem.get("beam_energy")) or (
                volts / 1e3 if volts else None
            )
        if rec.microscope is None:
            rec.microscope = _text(tem.get("microscope")) or _text(
                _get(tags, "Microscope Info.Name")
            )
        if is_spectrum:
            eels = _get(tem, "Detector.EELS") or {}
            if rec.exposure is None:
                frames = _number(_get(tags, "EELS.Acquisition.Number of frames")) or 1.0
                single = _number(_get(tags, "EELS.Acquisition.Exposure (s)"))
                rec.exposure = (
                    _number(eels.get("exposure"))
                    or _number(eels.get("dwell_time"))
                    or _number(tem.get("dwell_time"))
                    or _number(_get(tags, "EELS.Acquisition.Integration time (s)"))
                    or (single * frames if single else None)
                )
            if rec.spectrometer is None:
                rec.spectrometer = _text(eels.get("spectrometer")) or _text(
                    _get(tags, "EELS Spectrometer.Instrument name")
                )
        elif rec.dwell_time is None:
            sample_us = _number(_get(tags, "DigiScan.Sample Time"))
            rec.dwell_time = _number(tem.get("dwell_time")) or (
                sample_us * 1e-6 if sample_us else None
            )
