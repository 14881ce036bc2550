"""The bridge's commands in one table: wire names, arguments, and how results travel.

This is the allow-list. The server dispatches a request only if its command is a key of
:data:`COMMANDS`, through the fixed functions of ``_RUNNERS``; it never looks a name up on the
backend object, so ``"__init__"`` or ``"_do_acquire_image"`` can reach nothing.

The server checks here the *wire* side of a request (argument names and JSON types, frames
used where an array is expected); the backend base class then checks the *values* (limits).
Results are converted both ways here too: a backend's :class:`ImageAcquisition` becomes a JSON
result plus frames on the server and becomes an :class:`ImageAcquisition` again in the client.

Standard library and numpy only, Python 3.8 syntax: the server imports it inside
DigitalMicrograph.

Example:
    >>> sorted(COMMANDS["set_beam_position"].args)
    ['x', 'y']
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .backends.base import (
    Backend,
    EELSParameters,
    ImageAcquisition,
    ScanParameters,
    SpectrumAcquisition,
)
from .errors import BadRequest, OutOfRange, UnknownCommand
from .protocol import as_integer, is_frame_reference, resolve_frame_argument

__all__ = [
    "COMMANDS",
    "Argument",
    "Command",
    "acquisition_estimate",
    "check_arguments",
    "image_from_result",
    "image_result",
    "run_command",
    "spectrum_from_result",
    "spectrum_result",
]


@dataclass(frozen=True)
class Argument:
    """One argument of a command.

    Attributes:
        kind: wire type: ``"integer"`` (JSON integer, or a float with an integral value),
            ``"number"``, ``"signals"`` (a string or a list of strings), ``"points"`` (an
            ``(N, 2)`` array frame, or a JSON list of ``[x, y]`` pairs), ``"region"``
            (``[x0, y0, x1, y1]`` or ``null``).
        required: whether the request must carry it.
        doc: what it means, with its unit.
    """

    kind: str
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Command:
    """One command of the protocol.

    Attributes:
        name: wire name, also the client method's name.
        args: argument name -> :class:`Argument`.
        immediate: answered by the server's I/O thread at once, even while an acquisition
            runs (``hello``, ``status``, ``abort``); the others queue for the instrument.
        summary: one line for documentation and ``hello``.
    """

    name: str
    args: Dict[str, Argument]
    immediate: bool = False
    summary: str = ""


def _num(doc: str, required: bool = False) -> Argument:
    return Argument("number", required, doc)


def _int(doc: str, required: bool = False) -> Argument:
    return Argument("integer", required, doc)


_SCAN_ARGS = {
    "width": _int("pixels per scan line"),
    "height": _int("scan lines"),
    "dwell_time": _num("seconds per pixel"),
    "rotation": _num("scan rotation, degrees counter-clockwise"),
    "field_of_view": _num("width of the scanned area, nm"),
    "signals": Argument("signals", False, "detector signals to record, e.g. ['HAADF']"),
}
_EELS_ARGS = {
    "exposure": _num("seconds per spectrum"),
    "energy_offset": _num("energy loss of the first channel, eV"),
    "dispersion": _num("eV per sensor column"),
    "binning": _int("horizontal binning: 1, 2, 4 or 8"),
    "channels": _int("channels returned"),
}

#: every command the server knows, by wire name: the allow-list
COMMANDS: Dict[str, Command] = {
    c.name: c
    for c in (
        Command("hello", {}, True, "protocol version, backend kind, capabilities, instrument"),
        Command("status", {}, True, "idle/busy, current command, queue length, last error"),
        Command("abort", {}, True, "interrupt the running acquisition, drop queued commands"),
        Command("get_scan_parameters", {}, summary="current DigiScan parameters"),
        Command("set_scan_parameters", _SCAN_ARGS, summary="change some scan parameters"),
        Command("acquire_image", {}, summary="scan once; one image per selected signal"),
        Command("get_beam_position", {}, summary="beam (x, y) in pixels of the scan field"),
        Command(
            "set_beam_position",
            {"x": _num("column, pixels", True), "y": _num("row, pixels", True)},
            summary="place the beam (sub-pixel)",
        ),
        Command("blank_beam", {}, summary="blank the beam"),
        Command("unblank_beam", {}, summary="unblank the beam"),
        Command("get_eels_parameters", {}, summary="current EELS parameters, read back"),
        Command("set_eels_parameters", _EELS_ARGS, summary="change some EELS parameters"),
        Command("acquire_spectrum", {}, summary="one spectrum at the current beam position"),
        Command(
            "acquire_spectra_at_points",
            {"points": Argument("points", True, "(N, 2) beam positions (x, y), pixels")},
            summary="one spectrum at each point, in order; returns an (N, channels) stack",
        ),
        Command(
            "acquire_spectrum_image",
            {
                "rows": _int("grid rows", True),
                "cols": _int("grid columns", True),
                "region": Argument("region", False, "[x0, y0, x1, y1] first/last positions, px"),
            },
            summary="a rows x cols grid of spectra, rastered row by row",
        ),
        Command("get_truth", {}, summary="ground truth of a simulated sample (twin only)"),
    )
}

#: commands with a required argument
_NEEDS_ARGUMENTS = frozenset(
    name for name, c in COMMANDS.items() if any(a.required for a in c.args.values())
)

# ------------------------------------------------------------------------------------ arguments


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_number(command: str, name: str, value: Any) -> float:
    """A JSON number as a float; integers too large for a float64 are out of any range."""
    try:
        return float(value)
    except OverflowError:
        raise OutOfRange(f"{command}: argument {name!r} is far outside any limit") from None


def _check_points(name: str, value: Any, arrays: Sequence[np.ndarray], used: List[bool]) -> Any:
    if is_frame_reference(value):
        array = resolve_frame_argument(value, arrays, used)
        if array.dtype.kind not in "fiu":
            raise BadRequest(f"{name} frame must hold numbers, got dtype {array.dtype}")
    elif isinstance(value, list):
        if not all(
            isinstance(p, list) and len(p) == 2 and all(_is_number(c) for c in p) for p in value
        ):
            raise BadRequest(f"{name} must be a list of [x, y] number pairs or an array frame")
        try:
            array = np.asarray(value, dtype=np.float64).reshape(len(value), 2)
        except OverflowError:
            raise OutOfRange(f"{name} holds a number far outside the scan field") from None
    else:
        raise BadRequest(f"{name} must be an (N, 2) array frame or a list of [x, y] pairs")
    if array.ndim != 2 or array.shape[1] != 2:
        raise BadRequest(f"{name} must have shape (N, 2), got {list(array.shape)}")
    return array.astype(np.float64, copy=False)


def _check_one(
    command: str, name: str, spec: Argument, value: Any, arrays: Sequence[Any], used: List[bool]
) -> Any:
    kind = spec.kind
    if kind == "number" and _is_number(value):
        if type(value) is int:
            _as_number(command, name, value)
        return value
    if kind == "integer" and _is_number(value) and (type(value) is int or value.is_integer()):
        number = as_integer(value)
        if number is None:  # an integer beyond 64 bits, or a float beyond 2**53
            raise OutOfRange(f"{command}: argument {name!r} is far outside any limit")
        return number
    if kind == "points":
        return _check_points(name, value, arrays, used)
    if kind == "signals" and (
        isinstance(value, str)
        or (isinstance(value, list) and all(isinstance(s, str) for s in value))
    ):
        return value
    if kind == "region" and (
        value is None
        or (isinstance(value, list) and len(value) == 4 and all(map(_is_number, value)))
    ):
        if value is not None:
            for v in value:
                _as_number(command, name, v)
        return value
    expected = {
        "number": "a number",
        "integer": "an integer",
        "signals": "a signal name or a list of names",
        "region": "[x0, y0, x1, y1] or null",
    }[kind]
    raise BadRequest(f"{command}: argument {name!r} must be {expected}, got {value!r}"[:300])


def check_arguments(
    command: str, args: Mapping[str, Any], arrays: Sequence[np.ndarray] = ()
) -> Dict[str, Any]:
    """Check a request's arguments against the table; resolve array frames.

    Args:
        command: the wire name.
        args: the header's ``args`` object.
        arrays: the request's decoded frames.

    Returns:
        The arguments, ready for :func:`run_command` (points as a float64 ``(N, 2)`` array).

    Raises:
        UnknownCommand: ``command`` is not in :data:`COMMANDS`.
        BadRequest: unknown or missing arguments, wrong types, frames not used exactly once.
    """
    spec = COMMANDS.get(command) if isinstance(command, str) else None
    if spec is None:
        raise UnknownCommand(f"unknown command {str(command)[:80]!r}; known: {sorted(COMMANDS)}")
    if not args and not arrays and command not in _NEEDS_ARGUMENTS:
        return {}  # the common no-argument call
    table = spec.args
    if not args.keys() <= table.keys():
        unknown = sorted(set(args) - set(table))
        raise BadRequest(
            f"{command}: unknown argument(s) {unknown[:10]}; allowed: {sorted(table) or 'none'}"
        )
    missing = [n for n, a in table.items() if a.required and n not in args]
    if missing:
        raise BadRequest(f"{command}: missing argument(s) {missing}")
    used = [False] * len(arrays)
    clean = {}
    for name, value in args.items():
        # plain numbers, the common case, without a call
        if table[name].kind == "number" and type(value) is float and value - value == 0.0:
            clean[name] = value
        else:
            clean[name] = _check_one(command, name, table[name], value, arrays, used)
    if not all(used):
        raise BadRequest(f"{command}: {used.count(False)} frame(s) not used by any argument")
    return clean


# ------------------------------------------------------------------------------------ results


def image_result(acq: ImageAcquisition) -> Dict[str, Any]:
    """Wire result of ``acquire_image`` (arrays stay arrays; the encoder makes them frames)."""
    return {
        "images": dict(acq.images),
        "pixel_size": float(acq.pixel_size),
        "origin": [float(acq.origin[0]), float(acq.origin[1])],
        "units": acq.units,
        "instrument_time": float(acq.instrument_time),
        "scan": acq.scan.to_dict() if acq.scan is not None else None,
        "metadata": dict(acq.metadata),
    }


def spectrum_result(acq: SpectrumAcquisition) -> Dict[str, Any]:
    """Wire result of the three spectrum acquisitions."""
    return {
        "spectra": acq.spectra,
        "energy_axis": acq.energy_axis,
        "positions": acq.positions,
        "instrument_time": float(acq.instrument_time),
        "eels": acq.eels.to_dict() if acq.eels is not None else None,
        "metadata": dict(acq.metadata),
    }


_FIELDS = {cls: frozenset(f.name for f in fields(cls)) for cls in (ScanParameters, EELSParameters)}


def _known(cls: Any, values: Mapping[str, Any]) -> Dict[str, Any]:
    # A newer server may add fields; keep the ones this dataclass knows.
    names = _FIELDS[cls]
    return {k: v for k, v in values.items() if k in names}


def image_from_result(result: Mapping[str, Any]) -> ImageAcquisition:
    """Rebuild the :class:`ImageAcquisition` a backend returned (client side)."""
    scan = result.get("scan")
    if scan is not None:
        scan = dict(_known(ScanParameters, scan))
        scan["signals"] = tuple(scan.get("signals", ()))
        scan = ScanParameters(**scan)
    return ImageAcquisition(
        images=dict(result["images"]),
        pixel_size=float(result["pixel_size"]),
        origin=(float(result["origin"][0]), float(result["origin"][1])),
        units=str(result.get("units", "nm")),
        instrument_time=float(result.get("instrument_time") or 0.0),
        scan=scan,
        metadata=dict(result.get("metadata") or {}),
    )


def spectrum_from_result(result: Mapping[str, Any]) -> SpectrumAcquisition:
    """Rebuild the :class:`SpectrumAcquisition` a backend returned (client side)."""
    eels = result.get("eels")
    return SpectrumAcquisition(
        spectra=result["spectra"],
        energy_axis=result["energy_axis"],
        positions=result.get("positions"),
        instrument_time=float(result.get("instrument_time") or 0.0),
        eels=EELSParameters(**_known(EELSParameters, eels)) if eels is not None else None,
        metadata=dict(result.get("metadata") or {}),
    )


def _position(xy: Tuple[float, float]) -> Dict[str, float]:
    return {"x": float(xy[0]), "y": float(xy[1])}


def _blank(backend: Backend, blank: bool) -> Dict[str, bool]:
    if blank:
        backend.blank_beam()
    else:
        backend.unblank_beam()
    return {"beam_blanked": backend.beam_blanked}


#: the only way from a wire name to a backend method (instrument commands only)
_RUNNERS: Dict[str, Callable[[Backend, Dict[str, Any]], Any]] = {
    "get_scan_parameters": lambda b, a: b.get_scan_parameters(),
    "set_scan_parameters": lambda b, a: b.set_scan_parameters(**a),
    "acquire_image": lambda b, a: image_result(b.acquire_image()),
    "get_beam_position": lambda b, a: _position(b.get_beam_position()),
    "set_beam_position": lambda b, a: _position(b.set_beam_position(a["x"], a["y"])),
    "blank_beam": lambda b, a: _blank(b, True),
    "unblank_beam": lambda b, a: _blank(b, False),
    "get_eels_parameters": lambda b, a: b.get_eels_parameters(),
    "set_eels_parameters": lambda b, a: b.set_eels_parameters(**a),
    "acquire_spectrum": lambda b, a: spectrum_result(b.acquire_spectrum()),
    "acquire_spectra_at_points": lambda b, a: spectrum_result(
        b.acquire_spectra_at_points(a["points"])
    ),
    "acquire_spectrum_image": lambda b, a: spectrum_result(
        b.acquire_spectrum_image(a["rows"], a["cols"], a.get("region"))
    ),
    "get_truth": lambda b, a: b.get_truth(),
}


def run_command(backend: Backend, command: str, args: Dict[str, Any]) -> Any:
    """Run an instrument command on ``backend``; return its wire result.

    ``args`` must come from :func:`check_arguments`. Errors of the backend propagate.
    """
    runner = _RUNNERS.get(command)
    if runner is None:  # immediate commands are the server's own business
        raise UnknownCommand(f"{command!r} is not an instrument command")
    return runner(backend, args)


# ------------------------------------------------------------------------------------ estimates


def _count(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return 0


def acquisition_estimate(
    command: str,
    args: Mapping[str, Any],
    scan: Optional[Mapping[str, Any]],
    eels: Optional[Mapping[str, Any]],
    timing: Optional[Mapping[str, Any]] = None,
) -> Tuple[float, int, int]:
    """Seconds, reply bytes and spectra count of a command, before running it.

    The server refuses acquisitions whose reply would exceed its size limit; the client adds
    the time to its timeout. Parameters it needs but lacks count as zero.

    Args:
        command: wire name.
        args: the command's arguments (points may be an array or a list).
        scan: current scan parameters as a dict (``get_scan_parameters``), or ``None``.
        eels: current EELS parameters as a dict, or ``None``.
        timing: the backend's fixed overheads and time scale (``hello``'s ``timing``); with
            them the seconds are the wall-clock time the command should take, without them
            the bare dwell and exposure times.
    """
    scan = scan or {}
    eels = eels or {}
    timing = timing or {}
    scale = float(timing.get("time_scale", 1.0))
    if command == "acquire_image":
        width, height = int(scan.get("width", 0)), int(scan.get("height", 0))
        seconds = (
            float(timing.get("image_overhead", 0.0))
            + height * (float(timing.get("line_overhead", 0.0)))
            + width * height * float(scan.get("dwell_time", 0.0))
        )
        signals = max(1, len(scan.get("signals", ())))
        return scale * seconds, 4 * width * height * signals, 0
    if command == "acquire_spectrum":
        n = 1
    elif command == "acquire_spectra_at_points":
        n = _count(args.get("points", ()))
    elif command == "acquire_spectrum_image":
        rows, cols = args.get("rows", 0), args.get("cols", 0)
        n = int(rows) * int(cols) if _is_number(rows) and _is_number(cols) else 0
    else:
        return 0.0, 0, 0
    channels = int(eels.get("channels", 0))
    per_spectrum = float(eels.get("exposure", 0.0)) + float(timing.get("spectrum_overhead", 0.0))
    seconds = float(timing.get("acquisition_overhead", 0.0)) + n * per_spectrum
    return scale * seconds, n * (4 * channels + 16) + 8 * channels, n
