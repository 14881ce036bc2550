"""Wire format of the DM bridge: one JSON header frame, then raw array frames.

A request is the multipart ZeroMQ message ``[b"", header, frame0, frame1, ...]``; a reply has
the same shape. The empty first frame is the REQ/REP delimiter, so a plain REQ socket in any
language can talk to the server. The header is a UTF-8 JSON object; arrays never travel inside
it: each array is one raw little-endian frame, described by ``{"dtype": "<f4", "shape": [h, w]}``
in the header's ``frames`` list and referenced where it belongs by ``{"__frame__": i}``.

``docs/bridge-protocol.md`` is the normative description; this module implements it for both
ends. It knows nothing about commands (see :mod:`dm_bridge.commands`).

Standard library and numpy only, Python 3.8 syntax: this module runs inside DigitalMicrograph.

Example:
    >>> import numpy as np
    >>> parts = encode_request(7, "acquire_spectra_at_points",
    ...                        {"points": np.array([[1.5, 2.0]])})
    >>> request = decode_request(parts)
    >>> request.command, request.arrays[0].dtype.str
    ('acquire_spectra_at_points', '<f8')
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import BadRequest, BridgeError, TooLarge, VersionMismatch

__all__ = [
    "DTYPES",
    "FRAME_REF",
    "MAX_NDIM",
    "PROTOCOL_VERSION",
    "Reply",
    "Request",
    "RequestError",
    "array_from_frame",
    "decode_reply",
    "decode_request",
    "dtype_descriptor",
    "encode_error",
    "encode_reply",
    "encode_request",
    "peek_request_id",
]

#: version of this wire protocol; a server answers ``version_mismatch`` to any other
PROTOCOL_VERSION = 1

#: array element types allowed on the wire (numpy codes; always sent little-endian)
DTYPES = ("u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f4", "f8")

#: key of the object that stands for a binary frame inside a header
FRAME_REF = "__frame__"

#: more dimensions than this is certainly a mistake (a spectrum image has three)
MAX_NDIM = 8

#: nesting of JSON objects and lists in a header; deeper is refused, not recursed into
MAX_DEPTH = 32

#: a request id is a short string or an integer
MAX_ID_LENGTH = 256

Buffer = Union[bytes, bytearray, memoryview, Any]

_ALLOWED = {np.dtype("<" + code): "<" + code for code in DTYPES}


class RequestError(Exception):
    """A request that cannot be served, with the id to answer to (``None`` if unreadable).

    Attributes:
        error: the :class:`~dm_bridge.errors.BridgeError` to report.
        request_id: the client's id, when the header was readable enough to find it.
        command: the command name, when known.
    """

    def __init__(
        self, error: BridgeError, request_id: Any = None, command: Optional[str] = None
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.request_id = request_id
        self.command = command


@dataclass
class Request:
    """A decoded request; its arrays are still separate from its arguments.

    Attributes:
        id: the client's request id (string or integer), echoed in the reply.
        command: the command's wire name.
        args: JSON arguments; an argument sent as a frame is still ``{"__frame__": i}``.
        arrays: the binary frames, decoded, in order.
        timeout: seconds the client waits for the reply, if it said so (optional field).
    """

    id: Any
    command: str
    args: Dict[str, Any]
    arrays: List[np.ndarray] = field(default_factory=list)
    timeout: Optional[float] = None


@dataclass
class Reply:
    """A decoded reply.

    Attributes:
        id: the request id it answers.
        ok: whether the command succeeded.
        result: the result, arrays in place (``ok`` only).
        error_kind: the stable error kind (not ``ok`` only).
        error_message: the server's explanation (not ``ok`` only).
        command: the command the server says it answered, if it said.
        elapsed: seconds between the server receiving the request and replying.
    """

    id: Any
    ok: bool
    result: Any = None
    error_kind: Optional[str] = None
    error_message: Optional[str] = None
    command: Optional[str] = None
    elapsed: Optional[float] = None


# ------------------------------------------------------------------------------------ dtypes


def dtype_descriptor(dtype: Any) -> str:
    """The wire name (``"<f4"``) of a numpy dtype.

    Raises:
        BadRequest: the type is not on the wire (complex, bool, strings, objects).
    """
    dt = np.dtype(dtype)
    name = _ALLOWED.get(dt.newbyteorder("<"))
    if name is None:
        raise BadRequest(f"arrays of dtype {dt} cannot be sent; allowed: {list(_ALLOWED.values())}")
    return name


def _parse_dtype(text: Any) -> np.dtype:
    # numpy writes one-byte types as "|u1"; accept that spelling and the bare code too.
    if not isinstance(text, str) or len(text) > 4:
        raise BadRequest(f"frame dtype must be a string such as '<f4', got {text!r}")
    code = text[1:] if text[:1] in ("<", "|") else text
    if code not in DTYPES:
        raise BadRequest(f"frame dtype {text!r} is not allowed; allowed: {list(_ALLOWED.values())}")
    return np.dtype("<" + code)


def _parse_shape(shape: Any) -> Tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise BadRequest(f"frame shape must be a list of <= {MAX_NDIM} integers, got {shape!r}")
    for n in shape:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise BadRequest(f"frame shape must hold non-negative integers, got {shape!r}")
    return tuple(shape)


def array_from_frame(buffer: Buffer, descriptor: Any) -> np.ndarray:
    """Check a frame against its ``{"dtype", "shape"}`` descriptor and view it as an array.

    The array shares the frame's memory (no copy) when it is aligned.

    Raises:
        BadRequest: unknown dtype, bad shape, or a byte count that does not match.
    """
    if not isinstance(descriptor, dict) or set(descriptor) != {"dtype", "shape"}:
        raise BadRequest(
            f"a frame descriptor is {{'dtype': ..., 'shape': [...]}}, got {descriptor!r}"
        )
    dtype = _parse_dtype(descriptor["dtype"])
    shape = _parse_shape(descriptor["shape"])
    view = memoryview(buffer)
    expected = math.prod(shape) * dtype.itemsize
    if view.nbytes != expected:
        raise BadRequest(
            f"frame of {view.nbytes} bytes does not match dtype {dtype.str} and shape "
            f"{list(shape)} ({expected} bytes): truncated or mis-described"
        )
    array = np.frombuffer(view, dtype=dtype).reshape(shape)
    if not array.flags.aligned:
        array = array.copy()
    if not array.dtype.isnative:  # a big-endian host; the wire is little-endian
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _frame_of(array: np.ndarray) -> Tuple[Any, Dict[str, Any]]:
    name = dtype_descriptor(array.dtype)
    if array.dtype.str != name and array.dtype.itemsize > 1:
        array = array.astype(name)  # a big-endian host: the wire is little-endian
    if not array.flags.c_contiguous:
        array = array.copy(order="C")  # (not ascontiguousarray: it makes 0-d arrays 1-d)
    return memoryview(array.reshape(-1)).cast("B"), {"dtype": name, "shape": list(array.shape)}


# ------------------------------------------------------------------------------------ JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


# Made once: json.loads/dumps with options build a new decoder/encoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _parse_json(raw: Buffer) -> Any:
    try:
        text = bytes(raw).decode("utf-8")
        # NaN and Infinity literals are refused here; numbers too large for a float64 (1e400)
        # parse as inf and are refused where a value is checked (the backend, the id check).
        return _DECODER.decode(text)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"header is not UTF-8: {exc}") from None
    except RecursionError:
        raise BadRequest("header is nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise BadRequest(f"header is not valid JSON: {exc}") from None


def _dump(header: Dict[str, Any]) -> bytes:
    return _ENCODER.encode(header).encode("utf-8")


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and len(value) <= MAX_ID_LENGTH


def _extract_arrays(
    value: Any, frames: List[Any], descriptors: List[Any], strict: bool, depth: int = 0
) -> Any:
    """Copy of ``value`` where arrays became frame references; numpy scalars become Python.

    JSON has no NaN: in a request (``strict``) a non-finite number is an error; in a result
    it becomes ``None``, so that a result is always sendable.
    """
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply to send")
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value  # the common case first: plain JSON scalars pass unchanged
    if isinstance(value, np.ndarray):
        frame, descriptor = _frame_of(value)
        frames.append(frame)
        descriptors.append(descriptor)
        return {FRAME_REF: len(frames) - 1}
    if isinstance(value, dict):
        return {
            str(k): _extract_arrays(v, frames, descriptors, strict, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_extract_arrays(v, frames, descriptors, strict, depth + 1) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        if strict:
            raise ValueError(f"{value} cannot be sent: JSON numbers are finite")
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot send a value of type {type(value).__name__}: {value!r}")


def _is_frame_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and FRAME_REF in value


def _insert_arrays(
    value: Any, arrays: Sequence[np.ndarray], used: List[bool], depth: int = 0
) -> Any:
    if depth > MAX_DEPTH:
        raise BadRequest("reply nested too deeply")
    if _is_frame_ref(value):
        i = value[FRAME_REF]
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(arrays) or used[i]:
            raise BadRequest(f"bad frame reference {value!r} ({len(arrays)} frames)")
        used[i] = True
        return arrays[i]
    if isinstance(value, dict):
        return {k: _insert_arrays(v, arrays, used, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_insert_arrays(v, arrays, used, depth + 1) for v in value]
    return value


def _decode_frames(descriptors: Any, raw: Sequence[Buffer]) -> List[np.ndarray]:
    if descriptors is None:
        descriptors = []
    if not isinstance(descriptors, list):
        raise BadRequest("'frames' must be a list of {dtype, shape} descriptors")
    if len(descriptors) != len(raw):
        raise BadRequest(
            f"header describes {len(descriptors)} frame(s) but {len(raw)} binary frame(s) came"
        )
    return [array_from_frame(buf, d) for buf, d in zip(raw, descriptors)]


# ------------------------------------------------------------------------------------ requests


def encode_request(
    request_id: Union[int, str],
    command: str,
    args: Optional[Dict[str, Any]] = None,
    timeout: Optional[float] = None,
) -> List[Any]:
    """Frames of a request, ``[header, frames...]`` (the sender puts the delimiter first).

    Arrays anywhere in ``args`` travel as raw frames.

    Args:
        request_id: echoed in the reply; unique among the sender's calls in flight.
        command: wire name of the command.
        args: keyword arguments of the command.
        timeout: seconds the caller will wait; the server drops the request unexecuted if it
            is still queued after that long.
    """
    frames: List[Any] = []
    descriptors: List[Dict[str, Any]] = []
    header: Dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "id": request_id,
        "command": command,
        "args": _extract_arrays(args or {}, frames, descriptors, strict=True),
    }
    if descriptors:
        header["frames"] = descriptors
    if timeout is not None:
        header["timeout"] = float(timeout)
    return [_dump(header), *frames]


def peek_request_id(raw_header: Buffer) -> Any:
    """The request id of a header that may be otherwise broken, or ``None``."""
    try:
        header = _parse_json(raw_header)
    except BadRequest:
        return None
    if isinstance(header, dict) and _valid_id(header.get("id")):
        return header["id"]
    return None


def decode_request(parts: Sequence[Buffer], max_request_bytes: Optional[int] = None) -> Request:
    """Decode ``[header, frames...]`` (the part after the delimiter).

    Checks everything the wire format promises: a JSON object header, protocol version, id,
    command and args types, one valid descriptor per frame, byte counts, size limit. Argument
    names and types are the command table's business (:mod:`dm_bridge.commands`).

    Raises:
        RequestError: with the error to report and the request id when it could be read.
    """
    if not parts:
        raise RequestError(BadRequest("empty request: no header frame"))
    header_raw = parts[0]
    if max_request_bytes is not None:
        size = sum(memoryview(p).nbytes for p in parts)
        if size > max_request_bytes:
            rid = peek_request_id(header_raw) if len(header_raw) <= 65536 else None
            raise RequestError(
                TooLarge(f"request of {size} bytes exceeds the limit of {max_request_bytes} bytes"),
                rid,
            )
    try:
        header = _parse_json(header_raw)
    except BadRequest as exc:
        raise RequestError(exc) from None
    if not isinstance(header, dict):
        raise RequestError(BadRequest("header must be a JSON object"))
    rid = header.get("id")
    if not _valid_id(rid):
        raise RequestError(
            BadRequest(f"'id' must be an integer or a string of <= {MAX_ID_LENGTH} characters")
        )
    command = header.get("command")
    if not isinstance(command, str):
        raise RequestError(BadRequest("'command' must be a string"), rid)
    version = header.get("protocol")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        if version is None:
            error: BridgeError = BadRequest("'protocol' is missing")
        else:
            error = VersionMismatch(
                f"this server speaks protocol {PROTOCOL_VERSION}, the request says {version!r}"
            )
        raise RequestError(error, rid, command)
    args = header.get("args", {})
    if not isinstance(args, dict):
        raise RequestError(BadRequest("'args' must be a JSON object"), rid, command)
    timeout = header.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise RequestError(BadRequest("'timeout' must be a positive number"), rid, command)
    try:
        arrays = _decode_frames(header.get("frames"), parts[1:])
    except BadRequest as exc:
        raise RequestError(exc, rid, command) from None
    return Request(rid, command, args, arrays, None if timeout is None else float(timeout))


# ------------------------------------------------------------------------------------ replies


def encode_reply(
    request_id: Any, result: Any, elapsed: float, command: Optional[str] = None
) -> List[Any]:
    """Frames ``[header, frames...]`` of a successful reply; arrays in ``result`` become frames.

    Raises:
        TypeError, ValueError: ``result`` holds something that cannot be sent (a bug in the
            caller; the server turns it into an ``internal_error`` reply).
    """
    frames: List[Any] = []
    descriptors: List[Dict[str, Any]] = []
    header: Dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "id": request_id,
        "ok": True,
        "command": command,
        "result": _extract_arrays(result, frames, descriptors, strict=False),
        "frames": descriptors,
        "elapsed": elapsed,
    }
    return [_dump(header), *frames]


def encode_error(
    request_id: Any, kind: str, message: str, elapsed: float = 0.0, command: Optional[str] = None
) -> List[bytes]:
    """Frames ``[header]`` of an error reply."""
    header = {
        "protocol": PROTOCOL_VERSION,
        "id": request_id if _valid_id(request_id) else None,
        "ok": False,
        "command": command,
        "error": {"kind": kind, "message": message},
        "frames": [],
        "elapsed": elapsed,
    }
    return [_dump(header)]


def decode_reply(parts: Sequence[Buffer]) -> Reply:
    """Decode ``[header, frames...]`` of a reply (the part after the delimiter).

    Arrays come back as numpy arrays that share the received frames' memory (writable, no copy).

    Raises:
        BadRequest: the reply does not follow the protocol (a wrong or broken server).
    """
    if not parts:
        raise BadRequest("empty reply from the server")
    header = _parse_json(parts[0])
    if not isinstance(header, dict) or "ok" not in header:
        raise BadRequest(f"reply header is not a bridge reply: {str(header)[:200]}")
    rid = header.get("id")
    command = header.get("command")
    elapsed = header.get("elapsed")
    if header.get("protocol") != PROTOCOL_VERSION:
        raise BadRequest(f"server replied with protocol {header.get('protocol')!r}")
    if not header["ok"]:
        error = header.get("error")
        if not isinstance(error, dict):
            raise BadRequest("error reply without an 'error' object")
        return Reply(
            rid,
            False,
            error_kind=str(error.get("kind", "error")),
            error_message=str(error.get("message", "")),
            command=command,
            elapsed=elapsed,
        )
    arrays = _decode_frames(header.get("frames"), parts[1:])
    result = header.get("result")
    if arrays:  # (most small replies carry none: no need to walk the result)
        used = [False] * len(arrays)
        result = _insert_arrays(result, arrays, used)
        if not all(used):
            raise BadRequest("reply carries frames its result does not use")
    return Reply(rid, True, result=result, command=command, elapsed=elapsed)


def resolve_frame_argument(value: Any, arrays: Sequence[np.ndarray], used: List[bool]) -> Any:
    """Replace a top-level ``{"__frame__": i}`` argument by its array (server side).

    Raises:
        BadRequest: out-of-range or repeated reference.
    """
    if not _is_frame_ref(value):
        return value
    return _insert_arrays(value, arrays, used)


def is_frame_reference(value: Any) -> bool:
    """Whether ``value`` is a ``{"__frame__": i}`` reference."""
    return _is_frame_ref(value)
