"""The small-call fast paths of the wire format say exactly what the general code says.

Small headers are written from cached pieces (``dm_bridge/protocol_requests.py`` and
``protocol_replies.py``) and read by the C JSON scanner without hooks
(``dm_bridge/protocol_header.py``); these tests hold them to the general encoder and to the
parser with hooks, which refuses repeated keys and numbers too large for a float64.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dm_bridge import protocol_frames, protocol_header, protocol_replies
from dm_bridge.errors import BadRequest
from dm_bridge.protocol import (
    RequestError,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
FLAT = st.dictionaries(st.text(max_size=8), SCALARS, max_size=5)
NESTED = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


def _hooked(raw: bytes):
    """What the parser with hooks makes of a header: (value, problem)."""
    value = protocol_header._parse_json(raw)
    return value, protocol_header._json_problem()


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.integers(0, 2**62), st.integers(-(2**62), -1)),
    st.sampled_from(["get_beam_position", "set_beam_position", "hello", 'x\u00e9"y']),
    FLAT | st.none(),
    st.none() | st.floats(min_value=1e-6, max_value=1e6),
)
def test_small_requests_are_the_general_header(rid, command, args, timeout):
    (fast,) = encode_request(rid, command, args, timeout)
    expected = {"protocol": 1, "id": rid, "command": command, "args": args or {}}
    if timeout is not None:
        expected["timeout"] = timeout
    assert json.loads(fast) == expected
    request = decode_request([fast])
    assert (request.id, request.command, request.args, request.timeout) == (
        rid,
        command,
        args or {},
        timeout,
    )


def test_requests_that_are_not_small_still_go_the_general_way():
    (header, frame) = encode_request(3, "acquire_spectra_at_points", {"points": np.zeros((2, 2))})
    assert json.loads(header)["frames"] == [{"dtype": "<f8", "shape": [2, 2]}]
    assert len(memoryview(frame).cast("B")) == 32
    assert json.loads(encode_request("id-7", "hello")[0])["id"] == "id-7"
    with pytest.raises(ValueError):  # JSON has no infinity, fast path or not
        encode_request(1, "hello", None, float("inf"))


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(2**62), 2**62) | st.text(max_size=20),
    st.sampled_from(["get_beam_position", None, "\u00b5"]),
    FLAT,
    st.floats(min_value=0, max_value=10),
    st.none() | st.text(min_size=1, max_size=12),
)
def test_small_replies_are_the_general_header(rid, command, result, elapsed, instance):
    (fast,) = encode_reply(rid, result, elapsed, command, instance)
    expected = {
        "protocol": 1,
        "id": rid,
        "ok": True,
        "command": command,
        "result": result,
        "frames": [],
        "elapsed": elapsed,
    }
    if instance is not None:
        expected["instance"] = instance
    assert json.loads(fast) == expected
    reply = decode_reply([fast])
    assert (reply.id, reply.ok, reply.result, reply.instance) == (rid, True, result, instance)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=6), NESTED, max_size=5), st.data())
def test_the_fast_header_parse_agrees_with_the_hooked_one(header, data):
    text = json.dumps(header, separators=(",", ":"))
    # Repeat a key, put a colon into a string or a literal too large for a float64, or not.
    edit = data.draw(st.sampled_from(["none", "repeat", "colon", "overflow", "space"]))
    if edit == "repeat" and header:
        key = data.draw(st.sampled_from(sorted(header)))
        text = text[:-1] + ("," if len(text) > 2 else "") + json.dumps(key) + ":1}"
    elif edit == "colon":
        text = text[:-1] + ("," if len(text) > 2 else "") + '"a:b":"c:d"}'
    elif edit == "overflow":
        text = text[:-1] + ("," if len(text) > 2 else "") + '"big":[1e400]}'
    elif edit == "space":
        text = " " + text + "\n"
    raw = text.encode()
    assert protocol_header._parse_header(raw) == _hooked(raw)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"id":1,"id":2}', "repeated"),
        (b'{"id":"a:b","x":{"y":1,"y":2}}', "repeated"),  # a colon in a string, and a repeat
        (b'{"id":1,"x":[{"t":1e400}]}', "too large"),
        (b'{"id":1,"x":-1e309}', "too large"),
    ],
)
def test_the_protocols_refusals_survive_the_fast_parse(raw, problem):
    assert problem in protocol_header._parse_header(raw)[1]


def test_a_reply_with_null_frames_is_still_refused():
    with pytest.raises(BadRequest):
        decode_reply([b'{"protocol":1,"id":1,"ok":true,"result":{},"frames":null}'])
    with pytest.raises(BadRequest):
        decode_reply([b'{"protocol":1,"id":1,"ok":true,"result":{},"frames":[]} x'])
    with pytest.raises(RequestError):
        decode_request([b'{"protocol":1,"id":1,"command":"hello","args":{}} x'])
    reply = decode_reply([b' {"protocol":1,"id":1,"ok":true,"result":{"x":1}} '])
    assert reply.result == {"x": 1}


def test_arrays_are_placed_wherever_the_result_refers_to_them():
    a, b = np.arange(6, dtype="<f4").reshape(2, 3), np.arange(4, dtype="<u2")
    result = {
        "images": {"HAADF": a},
        "scan": {"signals": ["HAADF", "__frame__"], "width": 3},
        "more": [1, {"deep": [b]}],
        "note": "__frame__",
    }
    reply = decode_reply(encode_reply(1, result, 0.5))
    assert np.array_equal(reply.result["images"]["HAADF"], a)
    assert np.array_equal(reply.result["more"][1]["deep"][0], b)
    assert reply.result["scan"] == {"signals": ["HAADF", "__frame__"], "width": 3}
    frame = bytes(memoryview(a).cast("B"))
    descriptor = {"dtype": "<f4", "shape": [2, 3]}
    for refs in ('{"a":{"__frame__":0},"b":{"__frame__":0}}', '{"a":{"__frame__":1}}', "{}"):
        header = {"protocol": 1, "id": 1, "ok": True, "result": json.loads(refs)}
        header["frames"] = [descriptor]
        with pytest.raises(BadRequest):  # used twice, out of range, not used
            decode_reply([json.dumps(header).encode(), frame])


# Results with arrays are written by the C encoder in one pass (arrays become frames as it
# meets them); what it cannot write as the general path would goes the general way.
ARRAYS = st.sampled_from(
    [
        np.arange(6, dtype="<f4").reshape(2, 3),
        np.arange(4, dtype="<u2"),
        np.zeros((0, 3), "<f8"),
        np.arange(12, dtype="<i8").reshape(3, 4)[:, ::2],  # not contiguous: copied
        np.array(2.5),  # 0-d
    ]
)
NUMPY_SCALARS = st.sampled_from(
    [np.float32(1.5), np.float64(-2.25), np.int64(7), np.bool_(True), np.float64("nan")]
)
WITH_ARRAYS = st.recursive(
    SCALARS | ARRAYS | NUMPY_SCALARS | st.sampled_from([float("inf"), float("nan")]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=2).map(tuple)
        | st.dictionaries(
            st.text(max_size=5) | st.sampled_from([1, 2.5, True, False, None]), inner, max_size=3
        )
    ),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.text(max_size=6), WITH_ARRAYS, max_size=5) | WITH_ARRAYS,
    st.integers(-(2**62), 2**62) | st.text(max_size=8),
    st.sampled_from(["acquire_image", None]),
    st.none() | st.text(min_size=1, max_size=12),
)
def test_replies_with_arrays_are_the_general_header_and_frames(result, rid, command, instance):
    try:
        general = protocol_replies._encode_reply_general(rid, result, 0.25, command, instance)
    except ValueError as refused:  # (keys that collide as text: both paths refuse alike)
        with pytest.raises(ValueError, match=str(refused)[:30]):
            encode_reply(rid, result, 0.25, command, instance)
        return
    fast = encode_reply(rid, result, 0.25, command, instance)
    assert bytes(fast[0]) == bytes(general[0])
    assert [bytes(memoryview(f).cast("B")) for f in fast[1:]] == [
        bytes(memoryview(f).cast("B")) for f in general[1:]
    ]
    decode_reply([bytes(p) for p in fast])  # and it reads back


def test_keys_that_collide_as_text_are_refused_instead_of_losing_an_array():
    # Found by the test above: None and 'None' are one JSON key, so the array under None was
    # dropped from the header while its frame was still sent (the reply did not read back).
    image = np.ones((2, 3), "<f4")
    for result in ({"": {None: [image], "None": None}}, {1: image, "1": 0}):
        with pytest.raises(ValueError, match="read the same once written as text"):
            encode_reply(7, result, 0.0, "acquire_image", "abc")
    # distinct keys of other types still go (written as their text, as before)
    reply = decode_reply(encode_reply(7, {"a": {1: image, None: 2}}, 0.0))
    assert np.array_equal(reply.result["a"]["1"], image)
    assert reply.result["a"]["None"] == 2


def test_what_the_array_encoder_cannot_write_still_goes_the_general_way():
    image = np.ones((2, 2), "<f4")
    reply = decode_reply(encode_reply(1, {"image": image, "dose": float("inf")}, 0.0))
    assert reply.result["dose"] is None
    assert np.array_equal(reply.result["image"], image)
    with pytest.raises(TypeError, match="set"):
        encode_reply(1, {"image": image, "bad": {1, 2}}, 0.0)
    with pytest.raises(BadRequest):  # complex numbers are not on the wire
        encode_reply(1, {"image": np.ones(2, complex)}, 0.0)
    loop: dict = {"image": image}
    loop["self"] = loop
    with pytest.raises(ValueError, match="nested too deeply"):
        encode_reply(1, loop, 0.0)


DIMS = st.integers(-1, 4) | st.sampled_from([2.0, 1.5, True, None, "2", 2**53, 2**53 + 1, 2**64])


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["<f4", "<u1", "|u1", "|f4", ">f4", "f4", "<c8", 4, None, ["<f4"]]),
    st.lists(DIMS, max_size=3) | st.none() | st.just("[2]"),
    st.integers(0, 40),
    st.sampled_from(["none", "extra", "missing"]),
    st.booleans(),
)
def test_the_fast_frame_check_agrees_with_the_general_one(dtype, shape, nbytes, keys, odd):
    descriptor = {"dtype": dtype, "shape": shape}
    if keys == "extra":
        descriptor["more"] = 1
    elif keys == "missing":
        del descriptor["shape"]
    raw = np.arange(nbytes + 1, dtype=np.uint8)
    buffer = memoryview(raw)[1:] if odd else memoryview(raw)[:nbytes]  # misaligned or not

    def outcome(check):
        try:
            array = check(buffer, descriptor)
        except BadRequest as exc:
            return "refused", exc.message
        return array.dtype.str, array.shape, array.tobytes(), array.flags.aligned

    assert outcome(protocol_frames.array_from_frame) == outcome(
        protocol_frames._array_from_frame_general
    )
