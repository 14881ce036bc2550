"""Requests of the DM bridge's wire format: written by the client, checked by the server.

A request is ``[header, frame0, frame1, ...]`` after the REQ/REP delimiter: the JSON header
names the protocol version, the request id, the command and its arguments (and, optionally, how
long the client waits); arrays among the arguments travel as raw frames. The checks here are
everything the wire format promises; argument names and types are the command table's
(:mod:`dm_bridge.commands`). Replies are :mod:`dm_bridge.protocol_replies`; both are
re-exported by :mod:`dm_bridge.protocol`, the place to import them from.

Standard library and numpy only, Python 3.8 syntax: this module runs inside DigitalMicrograph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from .errors import BadRequest, BridgeError, TooLarge, VersionMismatch
from .protocol_frames import Buffer, _decode_frames, _extract_arrays, _plain, as_integer
from .protocol_header import (
    _C_ENCODE,
    MAX_ID_LENGTH,
    PROTOCOL_VERSION,
    _cached,
    _dump,
    _parse_header,
    _valid_id,
)

__all__ = [
    "Request",
    "RequestError",
    "decode_request",
    "encode_request",
    "peek_request_id",
]


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


# Pieces of small request headers by command: a handful in practice (bounded all the same,
# since a client may send any command name).
_REQUEST_HEADS: Dict[str, str] = {}


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
