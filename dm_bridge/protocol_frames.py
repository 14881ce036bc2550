"""Arrays on the DM bridge's wire: each array is one raw little-endian frame, described in
the header by ``{"dtype": "<f4", "shape": [h, w]}`` and referenced where it belongs by
``{"__frame__": i}``.

This module turns values holding arrays into JSON-able values plus frames (sending) and
frames plus references back into arrays (receiving), checking every descriptor, byte count
and reference. The messages around them are :mod:`dm_bridge.protocol`'s (which re-exports
the public names here); ``docs/bridge-protocol.md`` is the normative description.

Standard library and numpy only, Python 3.8 syntax: this module runs inside DigitalMicrograph.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import BadRequest

__all__ = [
    "DTYPES",
    "FRAME_REF",
    "MAX_DEPTH",
    "MAX_FLOAT_INTEGER",
    "MAX_INTEGER",
    "MAX_NDIM",
    "Buffer",
    "array_from_frame",
    "as_integer",
    "dtype_descriptor",
    "is_frame_reference",
    "resolve_frame_argument",
]

#: array element types allowed on the wire (numpy codes; always sent little-endian)
DTYPES = ("u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f4", "f8")

#: key of the object that stands for a binary frame inside a header
FRAME_REF = "__frame__"

#: more dimensions than this is certainly a mistake (a spectrum image has three)
MAX_NDIM = 8

#: nesting of JSON objects and lists in a header; deeper is refused, not recursed into
MAX_DEPTH = 32

#: integers on the wire (ids, shapes, integer arguments) fit in a signed 64-bit integer
MAX_INTEGER = 2**63 - 1

#: an integer sent as a float (``512.0``) is exact up to 2**53
MAX_FLOAT_INTEGER = 2**53

Buffer = Union[bytes, bytearray, memoryview, Any]

_ALLOWED = {np.dtype("<" + code): "<" + code for code in DTYPES}
#: the wire's dtype names (as :func:`_parse_dtype` accepts them) -> numpy dtypes
_WIRE_DTYPES = {
    **{"<" + code: np.dtype("<" + code) for code in DTYPES},
    **{"|" + code: np.dtype("<" + code) for code in DTYPES if code[1] == "1"},
}
#: the wire's byte order (little-endian) is this machine's
_NATIVE_WIRE = np.dtype("<f4").isnative


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
    if not isinstance(text, str):
        raise BadRequest(f"frame dtype must be a string such as '<f4', got {str(text)[:40]!r}")
    if len(text) != 3:
        raise BadRequest(
            f"frame dtype {text[:40]!r} is not allowed (byte order first, then kind and size: "
            f"'<f4'); allowed: {list(_ALLOWED.values())}"
        )
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
    if type(descriptor) is dict and len(descriptor) == 2:
        # The common frame (an image, spectra): the same checks in fewer calls; anything
        # else (or wrong) goes the general way below, which says what is wrong.
        name, shape = descriptor.get("dtype"), descriptor.get("shape")
        dtype = _WIRE_DTYPES.get(name) if type(name) is str else None
        if dtype is not None and type(shape) is list and 0 < len(shape) <= MAX_NDIM:
            count = dtype.itemsize
            for n in shape:
                if type(n) is not int or not 0 <= n <= MAX_FLOAT_INTEGER:
                    break
                count *= n
            else:
                view = memoryview(buffer)
                if view.nbytes == count and _NATIVE_WIRE:
                    try:
                        array = np.frombuffer(view, dtype=dtype).reshape(shape)
                    except ValueError:
                        pass
                    else:
                        if array.flags.aligned:
                            return array
    return _array_from_frame_general(buffer, descriptor)


def _array_from_frame_general(buffer: Buffer, descriptor: Any) -> np.ndarray:
    """:func:`array_from_frame` by the general path (its fast path must agree)."""
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
        copied = {
            (k if type(k) is str else str(k)): (
                v
                if type(v) in _SCALARS or (type(v) is float and v - v == 0.0)
                else _extract_arrays(v, frames, descriptors, strict, depth)
            )
            for k, v in value.items()
        }
        if len(copied) != len(value):
            # Two keys written alike (None and 'None', 1 and '1'): one value would be lost,
            # and with it any array in it (its frame would be sent without a reference).
            raise ValueError(
                "keys that read the same once written as text: "
                f"{sorted(map(repr, value))[:10]} (a dictionary to send needs distinct "
                "string keys)"
            )
        return copied
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


def _str_keys(value: Any, depth: int = 0) -> bool:
    """Whether every dict in ``value`` (a dict, list or tuple) has string keys only and
    is a plain dict, list or tuple, nested less than :data:`MAX_DEPTH` deep: then JSON's C
    encoder writes ``value`` as :func:`_extract_arrays` then the header's encoder would (it
    writes other keys its own way: ``True`` as ``true``, where ``str`` gives ``True``)."""
    if depth >= MAX_DEPTH:
        return False
    if type(value) is dict:
        for key in value:
            if type(key) is not str:
                return False
        value = value.values()
    for v in value:
        kind = type(v)
        if kind is dict or kind is list or kind is tuple:
            if not _str_keys(v, depth + 1):
                return False
        elif kind is not float and kind not in _SCALARS and isinstance(v, (dict, list, tuple)):
            return False  # (a subclass: the general way)
    return True


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
