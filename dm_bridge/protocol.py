"""Wire format of the DM bridge: one JSON header frame, then raw array frames.

A request is the multipart ZeroMQ message ``[b"", header, frame0, frame1, ...]``; a reply has
the same shape. The empty first frame is the REQ/REP delimiter, so a plain REQ socket in any
language can talk to the server. The header is a UTF-8 JSON object; arrays never travel inside
it: each array is one raw little-endian frame, described by ``{"dtype": "<f4", "shape": [h, w]}``
in the header's ``frames`` list and referenced where it belongs by ``{"__frame__": i}``.

``docs/bridge-protocol.md`` is the normative description; this module implements it for both
ends: the messages (requests, replies, errors) and their checks. Arrays as frames are
:mod:`dm_bridge.protocol_frames`, the JSON header's text :mod:`dm_bridge.protocol_header`;
their public names are re-exported here. It knows nothing about commands (see
:mod:`dm_bridge.commands`).

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

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import BadRequest, BridgeError, TooLarge, VersionMismatch
from .protocol_frames import (
    DTYPES,
    FRAME_REF,
    MAX_DEPTH,
    MAX_FLOAT_INTEGER,
    MAX_INTEGER,
    MAX_NDIM,
    Buffer,
    _decode_frames,
    _extract_arrays,
    _insert_arrays,
    _is_frame_ref,
    _place_arrays,
    _plain,
    _str_keys,
    array_from_frame,
    as_integer,
    dtype_descriptor,
    is_frame_reference,
    resolve_frame_argument,
)
from .protocol_header import (
    _C_ENCODE,
    _dump,
    _make_array_encoder,
    _parse_header,
    _parse_json,
    _plain_scan,
)

__all__ = [
    "DTYPES",
    "FRAME_REF",
    "MAX_DEPTH",
    "MAX_FLOAT_INTEGER",
    "MAX_ID_LENGTH",
    "MAX_INTEGER",
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
    "is_frame_reference",
    "peek_request_id",
    "resolve_frame_argument",
]

#: version of this wire protocol; a server answers ``version_mismatch`` to any other
PROTOCOL_VERSION = 1

#: a request id is a short string or an integer
MAX_ID_LENGTH = 256


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
        type(elapsed) is float
        and elapsed - elapsed == 0.0
        and (type(request_id) is int or type(request_id) is str)
        and _C_ENCODE is not None
    ):
        # The general path's header, written from cached pieces without building a dict:
        # a flat dict of scalars (the common small result) as it is; a result with arrays
        # (an image, spectra) by the C encoder in one pass, arrays becoming frames as it
        # meets them (walking it first cost more than the rest of a 128² image's reply).
        # What that encoder would not write as the general path does (keys other than
        # strings, deep nesting, a non-finite number, an unknown type) goes the general way.
        frames: List[Any] = []
        descriptors: List[Dict[str, Any]] = []
        try:
            if type(result) is dict and _plain(result):
                text = "".join(_C_ENCODE(result, 0))
            elif (type(result) is dict or type(result) is list) and _str_keys(result):
                text = "".join(_make_array_encoder(frames, descriptors)(result, 0))
            else:
                text = None
        except (TypeError, ValueError):
            text = None
        if text is not None:
            key = (command, instance)
            head = _REPLY_HEADS.get(key)
            if head is None:
                tail = "" if instance is None else ',"instance":' + "".join(_C_ENCODE(instance, 0))
                cmd = "".join(_C_ENCODE(command, 0))
                head = _cached(_REPLY_HEADS, key, (f',"ok":true,"command":{cmd},"result":', tail))
            rid = "".join(_C_ENCODE(request_id, 0))
            described = "".join(_C_ENCODE(descriptors, 0)) if descriptors else "[]"
            return [
                f'{{"protocol":1,"id":{rid}{head[0]}{text},"frames":{described},'
                f'"elapsed":{float.__repr__(elapsed)}{head[1]}}}'.encode(),
                *frames,
            ]
    return _encode_reply_general(request_id, result, elapsed, command, instance)


def _encode_reply_general(
    request_id: Any, result: Any, elapsed: Any, command: Optional[str], instance: Optional[str]
) -> List[Any]:
    """:func:`encode_reply` by the general path (its fast paths must write the same)."""
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
