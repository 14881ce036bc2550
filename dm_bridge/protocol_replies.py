"""Replies of the DM bridge's wire format: written by the server, decoded by the client.

A reply is ``[header, frame0, frame1, ...]`` after the REQ/REP delimiter, like a request: its
JSON header echoes the request id and says whether the command succeeded, with its result
(arrays in it travel as raw frames) or the error's stable kind and message. The server's
replies are written from cached pieces and one C encoder pass where it can (a flat result, or
one holding arrays), by the general path otherwise; both write the same header. Requests are
:mod:`dm_bridge.protocol_requests`; both are re-exported by :mod:`dm_bridge.protocol`, the
place to import them from.

Standard library and numpy only, Python 3.8 syntax: this module runs inside DigitalMicrograph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .errors import BadRequest
from .protocol_frames import (
    FRAME_REF,
    Buffer,
    _decode_frames,
    _extract_arrays,
    _insert_arrays,
    _is_frame_ref,
    _place_arrays,
    _plain,
    _str_keys,
)
from .protocol_header import (
    _C_ENCODE,
    PROTOCOL_VERSION,
    _cached,
    _dump,
    _make_array_encoder,
    _parse_json,
    _plain_scan,
    _valid_id,
)

__all__ = [
    "Reply",
    "decode_reply",
    "encode_error",
    "encode_reply",
]


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


# Pieces of small reply headers by command and server instance: a handful in practice.
_REPLY_HEADS: Dict[Tuple[Any, Any], Tuple[str, str]] = {}

_NO_FRAMES: List[Any] = []


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
