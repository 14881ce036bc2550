"""Whatever a client sends, the server answers with a clear error and keeps serving."""

from __future__ import annotations

import json
import logging
from typing import Any, Dict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.client import BridgeClient
from dm_bridge.errors import ERROR_KINDS, InternalError
from dm_bridge.server import Server


def header(command: Any, args: Any = None, rid: Any = 1, **extra: Any) -> bytes:
    h: Dict[str, Any] = {"protocol": 1, "id": rid, "command": command, "args": args or {}}
    h.update(extra)
    return json.dumps(h).encode()


def points_header(shape, dtype="<f8", args=None, **extra):
    frames = [{"dtype": dtype, "shape": list(shape)}]
    return header(
        "acquire_spectra_at_points", args or {"points": {"__frame__": 0}}, frames=frames, **extra
    )


F8_3x2 = np.arange(6, dtype="<f8").tobytes()

# (case, frames after the delimiter, expected error kind, expected id in the reply)
MALFORMED = [
    ("no header at all", [], "bad_request", None),
    ("not JSON", [b"hello?"], "bad_request", None),
    ("not UTF-8", [b"\xff\xfe\x00"], "bad_request", None),
    ("empty header", [b""], "bad_request", None),
    ("JSON list", [b"[1, 2, 3]"], "bad_request", None),
    ("JSON string", [b'"hello"'], "bad_request", None),
    ("missing id", [b'{"protocol": 1, "command": "hello"}'], "bad_request", None),
    ("list id", [header("hello", rid=[1])], "bad_request", None),
    ("boolean id", [header("hello", rid=True)], "bad_request", None),
    ("huge id", [header("hello", rid="x" * 5000)], "bad_request", None),
    ("missing command", [b'{"protocol": 1, "id": 4}'], "bad_request", 4),
    ("numeric command", [header(5, rid=5)], "bad_request", 5),
    ("missing protocol", [b'{"id": 6, "command": "hello"}'], "bad_request", 6),
    ("future protocol", [header("hello", rid=7, protocol=2)], "version_mismatch", 7),
    ("args not an object", [header("hello", args=[1], rid=8)], "bad_request", 8),
    ("negative timeout", [header("hello", rid=9, timeout=-1)], "bad_request", 9),
    ("unknown command", [header("format_disk", rid="a")], "unknown_command", "a"),
    ("unknown argument", [header("set_beam_position", {"x": 1, "y": 1, "z": 2})], "bad_request", 1),
    ("missing argument", [header("set_beam_position", {"x": 1})], "bad_request", 1),
    ("string number", [header("set_beam_position", {"x": "1", "y": 2})], "bad_request", 1),
    ("boolean number", [header("set_beam_position", {"x": True, "y": 2})], "bad_request", 1),
    ("null number", [header("set_beam_position", {"x": None, "y": 2})], "bad_request", 1),
    ("fractional int", [header("set_scan_parameters", {"width": 100.5})], "bad_request", 1),
    ("signals number", [header("set_scan_parameters", {"signals": 3})], "bad_request", 1),
    (
        "region of 3",
        [header("acquire_spectrum_image", {"rows": 2, "cols": 2, "region": [1, 2, 3]})],
        "bad_request",
        1,
    ),
    (
        "NaN literal",
        [b'{"protocol":1,"id":1,"command":"set_beam_position","args":{"x":NaN,"y":1}}'],
        "bad_request",
        None,
    ),
    (
        "Infinity literal",
        [b'{"protocol":1,"id":1,"command":"set_beam_position","args":{"x":1,"y":-Infinity}}'],
        "bad_request",
        None,
    ),
    (
        "overflowing number",
        [b'{"protocol":1,"id":2,"command":"set_beam_position","args":{"x":1e400,"y":1}}'],
        "bad_request",
        2,
    ),
    (
        "deep nesting",
        [
            b'{"protocol":1,"id":1,"command":"hello","args":{"a":'
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}}"
        ],
        "bad_request",
        None,
    ),
    ("frame count: descriptor, no frame", [points_header((3, 2))], "bad_request", 1),
    ("frame count: frame, no descriptor", [header("hello"), F8_3x2], "bad_request", 1),
    ("truncated frame", [points_header((3, 2)), F8_3x2[:-3]], "bad_request", 1),
    ("oversized frame", [points_header((3, 2)), F8_3x2 + b"\0"], "bad_request", 1),
    ("complex dtype", [points_header((3,), "<c16"), F8_3x2], "bad_request", 1),
    ("big-endian dtype", [points_header((3, 2), ">f8"), F8_3x2], "bad_request", 1),
    ("negative shape", [points_header((-3, 2)), F8_3x2], "bad_request", 1),
    ("points of 3 columns", [points_header((2, 3)), F8_3x2], "bad_request", 1),
    ("points 1-D", [points_header((6,)), F8_3x2], "bad_request", 1),
    # (the page's other refusals, each tried by hand in the issue 16 audit)
    ("dtype of 2 bytes", [points_header((3, 2), "<f2"), F8_3x2[:12]], "bad_request", 1),
    ("boolean dtype", [points_header((3, 2), "|b1"), F8_3x2[:6]], "bad_request", 1),
    ("object dtype", [points_header((3, 2), "|O"), F8_3x2], "bad_request", 1),
    ("9 dimensions", [points_header((1,) * 9), F8_3x2[:8]], "bad_request", 1),
    (
        "descriptor with another key",
        [
            header(
                "acquire_spectra_at_points",
                {"points": {"__frame__": 0}},
                frames=[{"dtype": "<f8", "shape": [3, 2], "x": 1}],
            ),
            F8_3x2,
        ],
        "bad_request",
        1,
    ),
    (
        "frame reference with another key",
        [points_header((3, 2), args={"points": {"__frame__": 0, "y": 1}}), F8_3x2],
        "bad_request",
        1,
    ),
    (
        "UTF-8 byte order mark",
        [b'\xef\xbb\xbf{"protocol":1,"id":1,"command":"hello"}'],
        "bad_request",
        None,
    ),
    ("id of -2**63", [header("hello", rid=-(2**63))], "bad_request", None),
    (
        "signals repeated",
        [header("set_scan_parameters", {"signals": ["BF", "BF"]})],
        "bad_request",
        1,
    ),
    ("no signals", [header("set_scan_parameters", {"signals": []})], "bad_request", 1),
    ("unknown signal", [header("set_scan_parameters", {"signals": ["XYZ"]})], "out_of_range", 1),
    (
        "frame reference out of range",
        [points_header((3, 2), args={"points": {"__frame__": 4}}), F8_3x2],
        "bad_request",
        1,
    ),
    (
        "frame reference not an int",
        [points_header((3, 2), args={"points": {"__frame__": "0"}}), F8_3x2],
        "bad_request",
        1,
    ),
    ("frame unused", [points_header((3, 2), args={"points": [[1, 2]]}), F8_3x2], "bad_request", 1),
    (
        "frame where a number goes",
        [
            header(
                "set_beam_position",
                {"x": {"__frame__": 0}, "y": 1},
                frames=[{"dtype": "<f8", "shape": []}],
            ),
            F8_3x2[:8],
        ],
        "bad_request",
        1,
    ),
    (
        "NaN inside the points frame",
        [points_header((1, 2)), np.array([np.nan, 1.0]).tobytes()],
        "bad_request",
        1,
    ),
    (
        "points outside the field",
        [header("acquire_spectra_at_points", {"points": [[1e5, 0]]})],
        "out_of_range",
        1,
    ),
    ("no points", [header("acquire_spectra_at_points", {"points": []})], "bad_request", 1),
    (
        "ragged points",
        [header("acquire_spectra_at_points", {"points": [[1, 2], [3]]})],
        "bad_request",
        1,
    ),
    (
        "exposure above the cap",
        [header("set_eels_parameters", {"exposure": 1e3})],
        "out_of_range",
        1,
    ),
    ("absurd image", [header("set_scan_parameters", {"width": 10**9})], "out_of_range", 1),
    ("beam outside", [header("set_beam_position", {"x": -3, "y": 1})], "out_of_range", 1),
    (
        "too many points",
        [header("acquire_spectra_at_points", {"points": [[1, 1]] * 100_001})],
        "out_of_range",
        1,
    ),
]

FORBIDDEN = [
    "__init__",
    "__class__",
    "__dict__",
    "_do_acquire_image",
    "_do_set_beam_position",
    "close",
    "clear_abort",
    "check_abort",
    "spend",
    "describe",
    "validate_scan_parameters",
    "backend",
    "HELLO",
    " hello",
    "hello\x00",
]


@pytest.mark.parametrize(
    ("parts", "kind", "rid"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_requests_get_a_clear_error_and_the_server_keeps_serving(
    raw_peer, bridge_client, parts, kind, rid
):
    reply = raw_peer.exchange(parts)
    assert reply["ok"] is False
    assert reply["error"]["kind"] == kind, reply["error"]["message"]
    assert reply["error"]["message"]
    assert reply["id"] == rid
    assert reply["protocol"] == 1
    assert bridge_client.set_beam_position(3.5, 4.5) == (3.5, 4.5)


@pytest.mark.parametrize("name", FORBIDDEN)
def test_names_off_the_allow_list_reach_nothing(raw_peer, minimal_backend, name):
    reply = raw_peer.exchange([header(name, rid=name)])
    assert reply["error"]["kind"] == "unknown_command"
    assert reply["command"] is None  # the server never echoes arbitrary text as a command
    assert minimal_backend.instrument_time_total == 0.0


def test_a_message_without_delimiter_is_answered_not_dropped(raw_peer):
    reply = raw_peer.exchange([header("hello", rid=31)], delimiter=False)
    assert reply["error"]["kind"] == "bad_request"
    assert "delimiter" in reply["error"]["message"]
    assert reply["id"] == 31


@pytest.fixture
def small_server(minimal_backend):
    server = Server(minimal_backend, port=0, max_request_bytes=64 * 1024).start()
    yield server
    server.stop()


def test_too_large_requests_get_too_large(small_server, connect_raw):
    peer = connect_raw(small_server.endpoint)
    big = np.zeros((5000, 2))  # 80 kB, above the 64 kB limit, below the hard cap
    reply = peer.exchange([points_header(big.shape, rid=41), big.tobytes()])
    assert reply["error"]["kind"] == "too_large"
    assert reply["id"] == 41
    assert peer.exchange([header("hello", rid=42)])["ok"] is True


def test_frames_above_the_hard_cap_cost_the_sender_its_connection(small_server, connect_raw):
    rogue = connect_raw(small_server.endpoint)
    rogue.send([b"", header("hello"), bytes(4 << 20)])  # > 2 x limit + 1 MiB
    if rogue.stream:  # refused from its length prefix, with the reason, then closed
        refusal = rogue.receive(timeout=10)
        assert refusal["error"]["kind"] == "too_large"
        assert refusal["id"] is None
        assert str(2 * 64 * 1024 + 2**20) in refusal["error"]["message"]  # the limit
        assert rogue.receive(timeout=10) is None  # the server closed the connection
    else:
        assert rogue.receive(timeout=0.5) is None  # dropped by ZeroMQ, never reaches Python
    with BridgeClient(small_server.endpoint, timeout=5) as client:
        assert client.hello()["backend"] == "minimal"


class ExplodingBackend(MinimalBackend):
    """A backend with a bug: the server must survive it."""

    def _do_acquire_spectrum(self, eels, position):
        raise ZeroDivisionError("a bug in the backend")


def test_a_backend_bug_becomes_internal_error_and_is_logged(caplog):
    caplog.set_level(logging.ERROR, logger="dm_bridge.server")
    with Server(ExplodingBackend(), port=0) as server, BridgeClient(server.endpoint) as client:
        with pytest.raises(InternalError, match="ZeroDivisionError: a bug in the backend"):
            client.acquire_spectrum()
        assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)
        assert client.set_beam_position(1.0, 2.0) == (1.0, 2.0)
        assert "internal_error" in client.status()["last_error"]


@pytest.fixture(scope="module")
def module_server(bridge_transport):
    server = Server(MinimalBackend(), port=0, transport=bridge_transport).start()
    yield server
    server.stop()


@pytest.fixture
def module_peer(module_server, connect_raw):
    return connect_raw(module_server.endpoint)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)
COMMAND_SAMPLE = ["hello", "set_beam_position", "acquire_spectra_at_points", "set_scan_parameters"]
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "protocol": st.sampled_from([1, 1, 1, 2, "1", None]),
        "id": st.one_of(st.integers(), st.text(max_size=4), JSON_VALUES),
        "command": st.sampled_from([*FORBIDDEN, *COMMAND_SAMPLE]),
        "args": st.one_of(
            st.dictionaries(st.sampled_from(["x", "y", "points", "width"]), JSON_VALUES),
            JSON_VALUES,
        ),
        "frames": JSON_VALUES,
        "timeout": JSON_VALUES,
    },
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    header_value=st.one_of(HEADERS, JSON_VALUES),
    frames=st.lists(st.binary(max_size=48), max_size=2),
    garbage=st.one_of(st.none(), st.binary(max_size=40)),
)
def test_random_requests_always_get_a_reply(module_peer, header_value, frames, garbage):
    raw = garbage if garbage is not None else json.dumps(header_value).encode()
    reply = module_peer.exchange([raw, *frames])
    assert reply["protocol"] == 1
    if not reply["ok"]:
        assert reply["error"]["kind"] in ERROR_KINDS
        assert reply["error"]["kind"] != "internal_error", reply["error"]["message"]
    probe = module_peer.exchange([header("get_beam_position", rid="probe")])
    assert probe["ok"], probe
