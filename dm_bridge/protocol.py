"""Wire format of the DM bridge: one JSON header frame, then raw array frames.

A request is the multipart ZeroMQ message ``[b"", header, frame0, frame1, ...]``; a reply has
the same shape. The empty first frame is the REQ/REP delimiter, so a plain REQ socket in any
language can talk to the server. The header is a UTF-8 JSON object; arrays never travel inside
it: each array is one raw little-endian frame, described by ``{"dtype": "<f4", "shape": [h, w]}``
in the header's ``frames`` list and referenced where it belongs by ``{"__frame__": i}``.

``docs/bridge-protocol.md`` is the normative description; the ``protocol_*`` modules implement
it for both ends and this module is the place to import it from, re-exporting their public
names: the requests (written by the client, decoded and checked by the server) are
:mod:`dm_bridge.protocol_requests`, the replies :mod:`dm_bridge.protocol_replies`, the JSON
header's text and the fields every header has :mod:`dm_bridge.protocol_header`, arrays as
frames :mod:`dm_bridge.protocol_frames`. It knows nothing about commands (see
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

from .protocol_frames import (
    DTYPES,
    FRAME_REF,
    MAX_DEPTH,
    MAX_FLOAT_INTEGER,
    MAX_INTEGER,
    MAX_NDIM,
    array_from_frame,
    as_integer,
    dtype_descriptor,
    is_frame_reference,
    resolve_frame_argument,
)
from .protocol_header import MAX_ID_LENGTH, PROTOCOL_VERSION
from .protocol_replies import Reply, decode_reply, encode_error, encode_reply
from .protocol_requests import (
    Request,
    RequestError,
    decode_request,
    encode_request,
    peek_request_id,
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
