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
import threading
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
    "as_integer",
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

#: integers on the wire (ids, shapes, integer arguments) fit in a signed 64-bit integer
MAX_INTEGER = 2**63 - 1

#: an integer sent as a float (``512.0``) is exact up to 2**53
MAX_FLOAT_INTEGER = 2**53

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
        instance: the server's instance name, if it said (changes when it restarts).
    """

    id: Any
    ok: bool
    result: Any = None
    error_kind: Optional[str] = None
    error_message: Optional[str] = None
    command: Optional[str] = None
    elapsed: Optional[float] = None
    instance: Optional[str] = None


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
    # Byte order is part of the wire name: "<" always; numpy's "|" too for one-byte types.
    if not isinstance(text, str) or len(text) != 3:
        raise BadRequest(f"frame dtype must be a string such as '<f4', got {str(text)[:40]!r}")
    order, code = text[0], text[1:]
    if code not in DTYPES or not (order == "<" or (order == "|" and code[1] == "1")):
        raise BadRequest(f"frame dtype {text!r} is not allowed; allowed: {list(_ALLOWED.values())}")
    return np.dtype("<" + code)


def as_integer(value: Any, limit: int = MAX_INTEGER) -> Optional[int]:
    """``value`` as a Python int if it is a JSON integer (or a float with an integral value)
    within ``[-limit, limit]``; ``None`` otherwise (booleans, fractions, non-numbers)."""
    kind = type(value)
    if kind is int:
        return value if -limit <= value <= limit else None
    if kind is float and value.is_integer() and abs(value) <= min(limit, MAX_FLOAT_INTEGER):
        return int(value)
    return None


def _parse_shape(shape: Any) -> Tuple[int, ...]:
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise BadRequest(
            f"frame shape must be a list of <= {MAX_NDIM} integers, got {str(shape)[:80]}"
        )
    dims = []
    for n in shape:
        dim = as_integer(n, MAX_FLOAT_INTEGER)
        if dim is None or dim < 0:
            raise BadRequest(f"frame shape must hold integers in [0, 2**53], got {str(shape)[:80]}")
        dims.append(dim)
    return tuple(dims)


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
    try:
        array = np.frombuffer(view, dtype=dtype).reshape(shape)
    except ValueError as exc:  # e.g. a zero-size array with a dimension numpy cannot hold
        raise BadRequest(f"frame shape {list(shape)} cannot be an array: {exc}") from None
    if not array.flags.aligned:
        array = array.copy()
    if not array.dtype.isnative:  # a big-endian host; the wire is little-endian
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _frame_of(array: np.ndarray) -> Tuple[Any, Dict[str, Any]]:
    name = _ALLOWED.get(array.dtype)  # the common case: a native little-endian dtype
    if name is None:
        name = dtype_descriptor(array.dtype)
        if array.dtype.itemsize > 1:
            array = array.astype(name)  # a big-endian host: the wire is little-endian
    if not array.flags.c_contiguous:
        array = array.copy(order="C")  # (not ascontiguousarray: it makes 0-d arrays 1-d)
    return memoryview(array.reshape(-1)).cast("B"), {"dtype": name, "shape": list(array.shape)}


# ------------------------------------------------------------------------------------ JSON


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


# What the parser saw that JSON allows but the protocol does not; per thread, because the
# server decodes in two threads. Flagged rather than raised so the reply keeps the id.
_seen = threading.local()


def _no_repeats(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        _seen.repeat = next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i]))
    return obj


def _finite(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):  # a literal too large for a float64 (1e400)
        _seen.overflow = text[:40]
    return value


# Made once: json.loads/dumps with options build a new decoder/encoder on every call.
_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_finite, object_pairs_hook=_no_repeats
)
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_scan = _DECODER.scan_once  # the C scanner: decode() without its Python wrapper
# Replies are the server's, checked by the client only for what it uses: no hooks.
_REPLY_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_plain_scan = _REPLY_DECODER.scan_once
_JSON_SPACE = " \t\n\r"


def _not_json(value: Any) -> Any:
    raise TypeError(f"cannot send a value of type {type(value).__name__}")


try:  # JSONEncoder.encode builds a C encoder per call; keep one (it holds no call state)
    from json.encoder import c_make_encoder, encode_basestring_ascii

    _C_ENCODE = c_make_encoder(
        None, _not_json, encode_basestring_ascii, None, ":", ",", False, False, False
    )
except (ImportError, TypeError):  # a Python without the C accelerator
    _C_ENCODE = None


def _parse_json(raw: Buffer, scan: Any = None) -> Any:
    """Parse a header. JSON that the protocol refuses although JSON allows it (a repeated
    key, a number too large for a float64) is flagged for :func:`_json_problem` (request
    headers only: another ``scan`` has no such checks)."""
    if scan is None:
        _seen.repeat = _seen.overflow = None
    try:
        text = bytes(raw).decode("utf-8")
        start = 0
        if text[:1] in _JSON_SPACE:
            start = len(text) - len(text.lstrip(_JSON_SPACE))
        try:
            value, end = (scan or _scan)(text, start)
        except StopIteration as exc:
            raise ValueError(f"expecting a value at character {exc.value}") from None
        if end != len(text) and text[end:].strip(_JSON_SPACE):
            raise ValueError(f"extra data at character {end}")
        # NaN and Infinity literals are refused by _reject_constant.
        return value
    except UnicodeDecodeError as exc:
        raise BadRequest(f"header is not UTF-8: {exc}") from None
    except RecursionError:
        raise BadRequest("header is nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise BadRequest(f"header is not valid JSON: {exc}") from None


def _pairs(value: Any, depth: int = 0) -> int:
    """Key-value pairs in the objects of a parsed header; -1 if it holds a non-finite float
    (a literal too large for a float64) or nests deeper than the fast path looks."""
    if depth > 8:
        return -1
    n = 0
    if type(value) is dict:
        n = len(value)
        value = value.values()
    for v in value:
        kind = type(v)
        if kind is float:
            if v - v != 0.0:  # inf (NaN literals are refused while parsing)
                return -1
        elif kind is dict or kind is list:
            m = _pairs(v, depth + 1)
            if m < 0:
                return -1
            n += m
    return n


def _parse_header(raw: Buffer) -> Tuple[Any, Optional[str]]:
    """Parse a request header: the value, and what the protocol refuses in it although JSON
    allows it (a repeated key, a number too large for a float64), or ``None``.

    The common header is parsed by the C scanner without hooks (they cost more than the
    parse itself) and then checked: its objects hold as many pairs as the text has colons
    (so no key repeats: a repeated key makes fewer pairs than colons; colons inside strings
    also send the header the slow way) and no float is infinite. Anything else goes through
    the parser with hooks, which says exactly what is wrong.
    """
    try:
        text = str(raw, "utf-8")
        value, end = _plain_scan(text, 0)
        if end == len(text) and type(value) is dict and text.count(":") == _pairs(value):
            return value, None
    except (UnicodeDecodeError, ValueError, StopIteration, RecursionError):
        pass  # the slow path says what is wrong
    value = _parse_json(raw)
    return value, _json_problem()


def _json_problem() -> Optional[str]:
    """What the last :func:`_parse_json` in this thread flagged, if anything."""
    if _seen.repeat is not None:
        return f"key {_seen.repeat[:40]!r} is repeated in one object"
    if _seen.overflow is not None:
        return f"number {_seen.overflow} is too large for a float64 (numbers must be finite)"
    return None


def _dump(header: Dict[str, Any]) -> bytes:
    if _C_ENCODE is not None:
        return "".join(_C_ENCODE(header, 0)).encode("ascii")
    return _ENCODER.encode(header).encode("utf-8")


# Pieces of small headers by command (and server instance): a handful in practice; bounded
# all the same, since a client may send any command name.
_REQUEST_HEADS: Dict[str, str] = {}
_REPLY_HEADS: Dict[Tuple[Any, Any], Tuple[str, str]] = {}


def _cached(cache: Dict[Any, Any], key: Any, value: Any) -> Any:
    if len(cache) >= 256:
        cache.clear()
    cache[key] = value
    return value


def _valid_id(value: Any) -> bool:
    kind = type(value)
    if kind is int:
        return -MAX_INTEGER <= value <= MAX_INTEGER
    if kind is str:
        return len(value) <= MAX_ID_LENGTH
    return as_integer(value) is not None


_SCALARS = (str, int, bool, type(None))


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
    if kind in _SCALARS:
        return value  # the common case first: plain JSON scalars pass unchanged
    if kind is float and value - value == 0.0:
        return value  # (inf - inf and nan - nan are nan)
    if kind is dict:
        if _plain(value):
            return value  # nothing to convert (the common small result): no copy
        depth += 1
        # Scalars are copied inline: a call per value would cost more than the rest.
        return {
            (k if type(k) is str else str(k)): (
                v
                if type(v) in _SCALARS or (type(v) is float and v - v == 0.0)
                else _extract_arrays(v, frames, descriptors, strict, depth)
            )
            for k, v in value.items()
        }
    if kind is list or kind is tuple:
        depth += 1
        return [
            v
            if type(v) in _SCALARS or (type(v) is float and v - v == 0.0)
            else _extract_arrays(v, frames, descriptors, strict, depth)
            for v in value
        ]
    if isinstance(value, np.ndarray):
        frame, descriptor = _frame_of(value)
        frames.append(frame)
        descriptors.append(descriptor)
        return {FRAME_REF: len(frames) - 1}
    if isinstance(value, dict):  # a dict subclass
        return _extract_arrays(dict(value), frames, descriptors, strict, depth)
    if isinstance(value, (list, tuple)):
        return _extract_arrays(list(value), frames, descriptors, strict, depth)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        if strict:
            raise ValueError(f"{value} cannot be sent: JSON numbers are finite")
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot send a value of type {type(value).__name__}: {value!r}")


def _plain(mapping: Dict[Any, Any]) -> bool:
    """Whether a dict holds only string keys and finite JSON scalars (sent as it is)."""
    for key, value in mapping.items():
        kind = type(value)
        if type(key) is not str:
            return False
        if kind is float:
            if value - value != 0.0:  # inf or nan
                return False
        elif kind is not str and kind is not int and kind is not bool and value is not None:
            return False
    return True


def _is_frame_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and FRAME_REF in value


def _insert_arrays(
    value: Any, arrays: Sequence[np.ndarray], used: List[bool], depth: int = 0
) -> Any:
    if depth > MAX_DEPTH:
        raise BadRequest("reply nested too deeply")
    kind = type(value)
    if kind is dict:
        if len(value) == 1 and FRAME_REF in value:
            i = as_integer(value[FRAME_REF])
            if i is None or not 0 <= i < len(arrays) or used[i]:
                raise BadRequest(f"bad frame reference {value!r} ({len(arrays)} frames)")
            used[i] = True
            return arrays[i]
        depth += 1
        return {
            k: v if type(v) in _SCALARS_OR_FLOAT else _insert_arrays(v, arrays, used, depth)
            for k, v in value.items()
        }
    if kind is list:
        depth += 1
        return [
            v if type(v) in _SCALARS_OR_FLOAT else _insert_arrays(v, arrays, used, depth)
            for v in value
        ]
    return value


_SCALARS_OR_FLOAT = (str, int, bool, float, type(None))


def _decode_frames(descriptors: Any, raw: Sequence[Buffer]) -> List[np.ndarray]:
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
    if (
        type(request_id) is int
        and (not args or (type(args) is dict and _plain(args)))
        and (timeout is None or (type(timeout) is float and timeout - timeout == 0.0))
        and _C_ENCODE is not None
    ):
        # The common small request (integer id, no arrays), written from cached pieces:
        # the same header as below, without building and walking a dict.
        head = _REQUEST_HEADS.get(command)
        if head is None:
            head = _cached(_REQUEST_HEADS, command, '"command":' + "".join(_C_ENCODE(command, 0)))
        text = "".join(_C_ENCODE(args, 0)) if args else "{}"
        tail = "}" if timeout is None else f',"timeout":{float.__repr__(timeout)}}}'
        return [
            f'{{"protocol":1,"id":{int.__repr__(request_id)},{head},"args":{text}{tail}'.encode()
        ]
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
        header = _parse_header(raw_header)[0]
    except BadRequest:
        return None
    if isinstance(header, dict) and _valid_id(header.get("id")):
        return header["id"]
    return None


_NO_FRAMES: List[Any] = []


def decode_request(
    parts: Sequence[Buffer], max_request_bytes: Optional[int] = None, envelope_bytes: int = 0
) -> Request:
    """Decode ``[header, frames...]`` (the part after the delimiter).

    Checks everything the wire format promises: a JSON object header without repeated keys
    or overflowing numbers, protocol version, id, command, args and timeout types (``null``
    is no value for any header field), one valid descriptor per frame, byte counts, size
    limit. Argument names and types are the command table's business
    (:mod:`dm_bridge.commands`).

    Args:
        parts: the header frame and the binary frames.
        max_request_bytes: the size limit of the whole request.
        envelope_bytes: bytes the request carried before its header (envelope frames and
            the delimiter); they count toward the limit.

    Raises:
        RequestError: with the error to report and the request id when it could be read.
    """
    if not parts:
        raise RequestError(BadRequest("empty request: no header frame"))
    header_raw = parts[0]
    if max_request_bytes is not None:
        if len(parts) == 1 and type(header_raw) is not memoryview:
            size = envelope_bytes + len(header_raw)  # (bytes or zmq.Frame: len is bytes)
        else:
            size = envelope_bytes + sum(memoryview(p).nbytes for p in parts)
        if size > max_request_bytes:
            rid = peek_request_id(header_raw) if len(header_raw) <= 65536 else None
            raise RequestError(
                TooLarge(
                    f"request of {size} bytes (header and frames) exceeds the limit of "
                    f"{max_request_bytes} bytes"
                ),
                rid,
            )
    try:
        header, problem = _parse_header(header_raw)
    except BadRequest as exc:
        raise RequestError(exc) from None
    if type(header) is not dict:
        raise RequestError(BadRequest("header must be a JSON object"))
    rid = header.get("id")
    if not _valid_id(rid):
        raise RequestError(
            BadRequest(
                f"'id' must be an integer of at most 63 bits (or a float with an integral "
                f"value up to 2**53) or a string of <= {MAX_ID_LENGTH} characters"
            )
        )
    command = header.get("command")
    if type(command) is not str:
        raise RequestError(BadRequest("'command' must be a string"), rid)
    if problem is not None:
        raise RequestError(BadRequest(f"header refused: {problem}"), rid, command)
    version = header.get("protocol")
    if version != PROTOCOL_VERSION or (type(version) is not int and as_integer(version) != 1):
        if version is None:
            error: BridgeError = BadRequest("'protocol' is missing (or null)")
        else:
            error = VersionMismatch(
                f"this server speaks protocol {PROTOCOL_VERSION}, the request says "
                f"{str(version)[:40]!r}"
            )
        raise RequestError(error, rid, command)
    args = header.get("args", _NO_ARGS)
    if type(args) is not dict:
        raise RequestError(BadRequest("'args' must be a JSON object (or absent)"), rid, command)
    timeout = header.get("timeout", _ABSENT)
    if timeout is not _ABSENT:
        if type(timeout) not in (int, float) or not 0 < timeout < math.inf:
            raise RequestError(
                BadRequest("'timeout' must be a finite number > 0 of seconds (or absent)"),
                rid,
                command,
            )
        timeout = float(timeout)
    else:
        timeout = None
    descriptors = header.get("frames", _NO_FRAMES)
    if len(parts) == 1 and descriptors is _NO_FRAMES:
        return Request(rid, command, args, [], timeout)
    try:
        arrays = _decode_frames(descriptors, parts[1:])
    except BadRequest as exc:
        raise RequestError(exc, rid, command) from None
    return Request(rid, command, args, arrays, timeout)


_NO_ARGS: Dict[str, Any] = {}
_ABSENT = object()


# ------------------------------------------------------------------------------------ replies


def encode_reply(
    request_id: Any,
    result: Any,
    elapsed: float,
    command: Optional[str] = None,
    instance: Optional[str] = None,
) -> List[Any]:
    """Frames ``[header, frames...]`` of a successful reply; arrays in ``result`` become frames.

    Args:
        request_id: the request's id.
        result: the command's result (arrays anywhere in it become frames).
        elapsed: seconds since the server received the request.
        command: the command answered.
        instance: the server's instance name (changes when the server restarts).

    Raises:
        TypeError, ValueError: ``result`` holds something that cannot be sent (a bug in the
            caller; the server turns it into an ``internal_error`` reply).
    """
    if (
        type(result) is dict
        and type(elapsed) is float
        and elapsed - elapsed == 0.0
        and (type(request_id) is int or type(request_id) is str)
        and _C_ENCODE is not None
        and _plain(result)
    ):
        # The common small result (a flat dict of scalars), written from cached pieces: the
        # same header as below, without building and walking a dict.
        key = (command, instance)
        head = _REPLY_HEADS.get(key)
        if head is None:
            tail = "" if instance is None else ',"instance":' + "".join(_C_ENCODE(instance, 0))
            cmd = "".join(_C_ENCODE(command, 0))
            head = _cached(_REPLY_HEADS, key, (f',"ok":true,"command":{cmd},"result":', tail))
        rid = "".join(_C_ENCODE(request_id, 0))
        text = "".join(_C_ENCODE(result, 0))
        return [
            f'{{"protocol":1,"id":{rid}{head[0]}{text},"frames":[],'
            f'"elapsed":{float.__repr__(elapsed)}{head[1]}}}'.encode()
        ]
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
    if instance is not None:
        header["instance"] = instance
    return [_dump(header), *frames]


def encode_error(
    request_id: Any,
    kind: str,
    message: str,
    elapsed: float = 0.0,
    command: Optional[str] = None,
    instance: Optional[str] = None,
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
    if instance is not None:
        header["instance"] = instance
    return [_dump(header)]


def decode_reply(parts: Sequence[Buffer]) -> Reply:
    """Decode ``[header, frames...]`` of a reply (the part after the delimiter).

    Arrays come back as numpy arrays that share the received frames' memory (writable, no copy).

    Raises:
        BadRequest: the reply does not follow the protocol (a wrong or broken server).
    """
    if not parts:
        raise BadRequest("empty reply from the server")
    text = ""
    try:
        text = str(parts[0], "utf-8")
        header, end = _plain_scan(text, 0)  # (the common reply: no wrapper, no whitespace)
        if end != len(text):
            header = None
    except (UnicodeDecodeError, ValueError, StopIteration, RecursionError):
        header = None
    if header is None:
        header = _parse_json(parts[0], _plain_scan)  # says what is wrong, if anything
    if type(header) is not dict or "ok" not in header:
        raise BadRequest(f"reply header is not a bridge reply: {str(header)[:200]}")
    get = header.get
    rid, command, elapsed, instance = get("id"), get("command"), get("elapsed"), get("instance")
    if get("protocol") != PROTOCOL_VERSION:
        raise BadRequest(f"server replied with protocol {get('protocol')!r}")
    if header["ok"] is True and len(parts) == 1 and get("frames", _NO_FRAMES) == []:
        # the common small reply: no frames to match with the result
        return Reply(rid, True, get("result"), None, None, command, elapsed, instance)
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
            instance=instance,
        )
    arrays = _decode_frames(header.get("frames", _NO_FRAMES), parts[1:])
    result = header.get("result")
    if arrays:  # (most small replies carry none: no need to walk the result)
        used = [False] * len(arrays)
        kind = type(result)
        if (
            (kind is dict or kind is list)
            and not _is_frame_ref(result)
            and text.count(f'"{FRAME_REF}"') == len(arrays)
        ):
            # Each reference is in the text once: stop walking once all are placed (an
            # image's scan and metadata come after its images). The header is this reply's
            # own, so the arrays go in place.
            _place_arrays(result, arrays, used, len(arrays))
        else:
            result = _insert_arrays(result, arrays, used)
        if not all(used):
            raise BadRequest("reply carries frames its result does not use")
    return Reply(rid, True, result=result, command=command, elapsed=elapsed, instance=instance)


def _place_arrays(
    value: Any, arrays: Sequence[np.ndarray], used: List[bool], todo: int, depth: int = 0
) -> int:
    """Replace frame references in ``value`` (a dict or list) by their arrays, in place,
    until ``todo`` of them are placed; returns how many are left to place."""
    if depth > MAX_DEPTH:
        raise BadRequest("reply nested too deeply")
    for key, v in value.items() if type(value) is dict else enumerate(value):
        kind = type(v)
        if kind is dict:
            if len(v) == 1 and FRAME_REF in v:
                i = as_integer(v[FRAME_REF])
                if i is None or not 0 <= i < len(arrays) or used[i]:
                    raise BadRequest(f"bad frame reference {v!r} ({len(arrays)} frames)")
                used[i] = True
                value[key] = arrays[i]
                todo -= 1
            else:
                todo = _place_arrays(v, arrays, used, todo, depth + 1)
        elif kind is list:
            todo = _place_arrays(v, arrays, used, todo, depth + 1)
        if not todo:
            return 0
    return todo


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
