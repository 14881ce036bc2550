"""The JSON header of a DM bridge message: parsed strictly but fast, written compactly.

A request header is parsed by the C scanner without hooks when it is the common small kind,
and by a parser with hooks otherwise, which says exactly what the protocol refuses although
JSON allows it (a repeated key, a number too large for a float64). Headers are written by one
C encoder made once. The fields every header has (protocol version, request id) are checked
here; the messages themselves are :mod:`dm_bridge.protocol_requests`' and
:mod:`dm_bridge.protocol_replies`' (both re-exported by :mod:`dm_bridge.protocol`).

Standard library only, Python 3.8 syntax: this module runs inside DigitalMicrograph.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .errors import BadRequest
from .protocol_frames import FRAME_REF, MAX_INTEGER, Buffer, _frame_of, as_integer

# --------------------------------------------------------------------------- header fields

#: version of this wire protocol; a server answers ``version_mismatch`` to any other
PROTOCOL_VERSION = 1

#: a request id is a short string or an integer
MAX_ID_LENGTH = 256


def _valid_id(value: Any) -> bool:
    """Whether ``value`` may be a request id: an integer of at most 63 bits (or a float with
    an integral value up to 2**53) or a string of at most :data:`MAX_ID_LENGTH` characters."""
    kind = type(value)
    if kind is int:
        return -MAX_INTEGER <= value <= MAX_INTEGER
    if kind is str:
        return len(value) <= MAX_ID_LENGTH
    return as_integer(value) is not None


def _cached(cache: Dict[Any, Any], key: Any, value: Any) -> Any:
    """Keep ``value`` (a piece of a small header) under ``key``; the cache is bounded, since
    a client may send any command name."""
    if len(cache) >= 256:
        cache.clear()
    cache[key] = value
    return value


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
    from json.encoder import c_make_encoder as _c_make_encoder
    from json.encoder import encode_basestring_ascii as _encode_basestring_ascii

    _C_ENCODE = _c_make_encoder(
        None, _not_json, _encode_basestring_ascii, None, ":", ",", False, False, False
    )
except (ImportError, TypeError):  # a Python without the C accelerator
    _C_ENCODE = None


def _make_array_encoder(frames: List[Any], descriptors: List[Any]) -> Any:
    """A C encoder (``encoder(value, 0)`` gives the text's pieces) that writes each numpy
    array it meets as a frame reference, appending the frame to ``frames`` and its descriptor
    to ``descriptors``, and numpy scalars as Python ones: what
    :func:`~dm_bridge.protocol_frames._extract_arrays` then :func:`_dump` write, in one pass.

    It raises ``ValueError`` for a non-finite number and ``TypeError`` for anything else
    it cannot write (where the general path writes ``null``, or says what is wrong).
    """

    def array_or_scalar(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            frame, descriptor = _frame_of(value)
            frames.append(frame)
            descriptors.append(descriptor)
            return {FRAME_REF: len(frames) - 1}
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(f"cannot send a value of type {type(value).__name__}")

    return _c_make_encoder(
        None, array_or_scalar, _encode_basestring_ascii, None, ":", ",", False, False, False
    )


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
