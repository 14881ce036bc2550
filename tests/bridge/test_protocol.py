"""The wire format on its own (no sockets): frames, descriptors, headers, the allow-list table."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dm_bridge.backends.base import STANDARD_COMMANDS
from dm_bridge.commands import COMMANDS, acquisition_estimate, check_arguments
from dm_bridge.errors import BadRequest, TooLarge, UnknownCommand, VersionMismatch
from dm_bridge.protocol import (
    DTYPES,
    RequestError,
    array_from_frame,
    decode_reply,
    decode_request,
    dtype_descriptor,
    encode_error,
    encode_reply,
    encode_request,
)

RNG = np.random.default_rng(1234)


def _random(code: str, shape) -> np.ndarray:
    dtype = np.dtype("<" + code)
    if dtype.kind == "f":
        return np.asarray(RNG.normal(size=shape), dtype=dtype)
    info = np.iinfo(dtype)
    return np.asarray(RNG.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True))


@pytest.mark.parametrize("code", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 5), (2, 3, 4), (0, 2)])
def test_arrays_survive_a_reply_bit_exact(code, shape):
    array = _random(code, shape)
    parts = encode_reply("abc", {"data": array, "nested": [{"x": array.copy()}]}, 0.5, "status")
    reply = decode_reply([bytes(p) for p in parts])
    for got in (reply.result["data"], reply.result["nested"][0]["x"]):
        assert got.dtype == np.dtype("<" + code)
        assert got.shape == shape
        assert got.tobytes() == array.tobytes()
    assert reply.id == "abc"
    assert reply.ok


def test_non_contiguous_and_big_endian_arrays_travel_as_little_endian():
    base = np.arange(24, dtype=">f8").reshape(4, 6)
    view = base[:, ::2]
    reply = decode_reply([bytes(p) for p in encode_reply(1, {"a": view}, 0.0)])
    assert reply.result["a"].dtype.str == "<f8"
    np.testing.assert_array_equal(reply.result["a"], view)


@pytest.mark.parametrize("dtype", [np.complex64, np.bool_, "U3", object, np.float16])
def test_types_off_the_whitelist_are_refused(dtype):
    with pytest.raises(BadRequest, match="cannot be sent"):
        dtype_descriptor(dtype)


@pytest.mark.parametrize(
    ("descriptor", "nbytes", "message"),
    [
        ({"dtype": "<f8", "shape": [4, 2]}, 60, "truncated"),
        ({"dtype": "<f8", "shape": [4, 2]}, 72, "truncated"),
        ({"dtype": ">f8", "shape": [8]}, 64, "not allowed"),
        ({"dtype": "<c8", "shape": [8]}, 64, "not allowed"),
        ({"dtype": "object", "shape": [8]}, 64, "dtype"),
        ({"dtype": 8, "shape": [8]}, 64, "dtype"),
        ({"dtype": "<f8", "shape": [-1]}, 8, "integers in"),
        ({"dtype": "<f8", "shape": [1.5]}, 8, "integers in"),
        ({"dtype": "<f8", "shape": [True]}, 8, "integers in"),
        ({"dtype": "<f8", "shape": [2**64, 0]}, 0, "integers in"),
        ({"dtype": "f8", "shape": [1]}, 8, "dtype"),
        ({"dtype": "|f8", "shape": [1]}, 8, "not allowed"),
        ({"dtype": "<f8", "shape": "8"}, 64, "list"),
        ({"dtype": "<u1", "shape": [1] * 9}, 1, "list"),
        ({"dtype": "<f8"}, 8, "descriptor"),
        ({"dtype": "<f8", "shape": [1], "order": "F"}, 8, "descriptor"),
    ],
)
def test_bad_frame_descriptors_are_refused(descriptor, nbytes, message):
    with pytest.raises(BadRequest, match=message):
        array_from_frame(bytes(nbytes), descriptor)


@pytest.mark.parametrize("spelling", ["<u1", "|u1", "<i1", "|i1"])
def test_one_byte_types_accept_numpys_spellings(spelling):
    assert array_from_frame(b"\x01\x02", {"dtype": spelling, "shape": [2]}).tolist() == [1, 2]


def test_shapes_may_be_integral_floats():
    assert array_from_frame(bytes(16), {"dtype": "<f8", "shape": [2.0]}).shape == (2,)


def test_request_round_trip_keeps_points_frame_and_timeout():
    points = RNG.uniform(0, 100, size=(5, 2))
    parts = encode_request("r-1", "acquire_spectra_at_points", {"points": points}, timeout=3.0)
    header = json.loads(parts[0])
    assert header["args"] == {"points": {"__frame__": 0}}
    assert header["frames"] == [{"dtype": "<f8", "shape": [5, 2]}]
    request = decode_request([bytes(p) for p in parts])
    assert request.timeout == 3.0
    args = check_arguments(request.command, request.args, request.arrays)
    assert args["points"].tobytes() == points.tobytes()


def test_request_refuses_non_finite_numbers_before_sending():
    with pytest.raises(ValueError, match="finite"):
        encode_request(1, "set_beam_position", {"x": float("nan"), "y": 1.0})


def test_results_turn_non_finite_numbers_into_null():
    reply = decode_reply(encode_reply(1, {"dose": float("inf"), "ok": 1.5}, 0.0))
    assert reply.result == {"dose": None, "ok": 1.5}


def test_error_replies_carry_kind_and_message():
    reply = decode_reply(encode_error(9, "busy", "queue full", 0.1, "acquire_image"))
    assert (reply.ok, reply.id, reply.error_kind, reply.error_message) == (
        False,
        9,
        "busy",
        "queue full",
    )
    assert reply.command == "acquire_image"


@pytest.mark.parametrize(
    ("raw", "kind", "rid"),
    [
        (b'{"protocol": 2, "id": 5, "command": "hello"}', VersionMismatch, 5),
        (b'{"protocol": true, "id": 5, "command": "hello"}', VersionMismatch, 5),
        (b'{"id": 5, "command": "hello"}', BadRequest, 5),
        (b'{"protocol": 1, "id": 5.5, "command": "hello"}', BadRequest, None),
        (b'{"protocol": 1, "id": 5, "command": "hello", "timeout": 0}', BadRequest, 5),
    ],
)
def test_header_errors_keep_the_id_when_readable(raw, kind, rid):
    with pytest.raises(RequestError) as info:
        decode_request([raw])
    assert isinstance(info.value.error, kind)
    assert info.value.request_id == rid


def test_size_limit_reports_too_large_with_the_id():
    parts = encode_request(77, "acquire_spectra_at_points", {"points": np.zeros((1000, 2))})
    with pytest.raises(RequestError) as info:
        decode_request([bytes(p) for p in parts], max_request_bytes=1000)
    assert isinstance(info.value.error, TooLarge)
    assert info.value.request_id == 77


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=0, max_size=4))
def test_decoding_random_bytes_only_ever_raises_request_error(parts):
    kinds = {"bad_request", "version_mismatch", "too_large"}
    try:
        request = decode_request(parts, max_request_bytes=1 << 20)
    except RequestError as exc:
        kind = exc.error.kind
    else:  # astonishingly valid: then the command table must judge it
        kind = "bad_request" if isinstance(request.args, dict) else "not a dict"
    assert kind in kinds


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([*sorted(COMMANDS), "__init__", "close", ""]), JSON)
def test_checking_random_arguments_only_ever_raises_bridge_errors(command, args):
    if not isinstance(args, dict):
        args = {"value": args}
    with contextlib.suppress(BadRequest, UnknownCommand):
        check_arguments(command, args, [])


def test_the_command_table_is_exactly_the_standard_commands_and_get_truth():
    assert set(COMMANDS) == set(STANDARD_COMMANDS) | {"get_truth"}
    assert {c for c, spec in COMMANDS.items() if spec.immediate} == {"hello", "status", "abort"}


@pytest.mark.parametrize("name", ["__init__", "_do_acquire_image", "close", "clear_abort", "spend"])
def test_names_off_the_table_are_unknown_commands(name):
    with pytest.raises(UnknownCommand):
        check_arguments(name, {})


def test_estimates_follow_the_parameters():
    scan = {"width": 100, "height": 50, "dwell_time": 1e-5, "signals": ["HAADF", "BF"]}
    eels = {"exposure": 0.5, "channels": 1024}
    seconds, size, _ = acquisition_estimate("acquire_image", {}, scan, eels)
    assert seconds == pytest.approx(100 * 50 * 1e-5)
    assert size == 100 * 50 * 4 * 2
    seconds, size, n = acquisition_estimate(
        "acquire_spectrum_image", {"rows": 3, "cols": 4}, scan, eels
    )
    assert (seconds, n) == (pytest.approx(6.0), 12)
    assert size >= 12 * 1024 * 4
    assert acquisition_estimate("get_beam_position", {}, scan, eels) == (0.0, 0, 0)
