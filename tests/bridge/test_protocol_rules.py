"""One test per rule of docs/bridge-protocol.md that an independent client found unstated or
unenforced: a real server on loopback, raw DEALER sockets sending exactly the bytes a client
in another language would."""

from __future__ import annotations

import json
import time
from typing import Any, Dict

import numpy as np
import pytest
import zmq

from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.client import BridgeClient
from dm_bridge.commands import acquisition_estimate
from dm_bridge.keys import is_loopback
from dm_bridge.server import Server


def header(command: str = "get_beam_position", rid: Any = 1, **extra: Any) -> bytes:
    h: Dict[str, Any] = {"protocol": 1, "id": rid, "command": command}
    h.update(extra)
    return json.dumps(h).encode()


def error_kind(reply: Dict[str, Any]) -> str:
    assert reply["ok"] is False, reply
    return reply["error"]["kind"]


# ------------------------------------------------------------------------------ header fields


@pytest.mark.parametrize("rid", [7, -3, 2**63 - 1, "a-1", "x" * 256])
def test_ids_are_echoed_exactly(raw_peer, rid):
    assert raw_peer.exchange([header(rid=rid)])["id"] == rid


def test_an_integral_float_id_is_accepted_and_echoed_as_sent(raw_peer):
    reply = raw_peer.exchange([b'{"protocol": 1, "id": 7.0, "command": "get_beam_position"}'])
    assert reply["ok"] is True
    assert reply["id"] == 7.0
    assert isinstance(reply["id"], float)


@pytest.mark.parametrize("rid", [7.5, 2**63, 2.0**60, True, None, [1], {"a": 1}, "x" * 257])
def test_other_ids_are_bad_requests_answered_with_a_null_id(raw_peer, rid):
    reply = raw_peer.exchange([header(rid=rid)])
    assert error_kind(reply) == "bad_request"
    assert reply["id"] is None


@pytest.mark.parametrize(
    ("protocol", "kind"),
    [(1.0, None), (2, "version_mismatch"), ("1", "version_mismatch"), (True, "version_mismatch")],
)
def test_protocol_is_the_integer_1_also_written_as_a_float(raw_peer, protocol, kind):
    reply = raw_peer.exchange([header(protocol=protocol)])
    assert (reply["ok"] is True) if kind is None else error_kind(reply) == kind


@pytest.mark.parametrize("field", ["protocol", "args", "frames", "timeout"])
def test_null_is_no_value_for_any_header_field(raw_peer, field):
    reply = raw_peer.exchange([header(rid=3, **{field: None})])
    assert error_kind(reply) == "bad_request"
    assert reply["id"] == 3


def test_absent_optional_fields_take_their_defaults(raw_peer):
    assert raw_peer.exchange([b'{"protocol":1,"id":4,"command":"get_beam_position"}'])["ok"]


@pytest.mark.parametrize("timeout", [0, -1, True, "5", [5]])
def test_timeout_must_be_a_positive_number(raw_peer, timeout):
    assert error_kind(raw_peer.exchange([header(timeout=timeout)])) == "bad_request"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"protocol":1,"id":5,"command":"get_beam_position","timeout":1e999}',
        b'{"protocol":1,"id":5,"command":"get_beam_position","note":-1e400}',
        b'{"protocol":1,"id":5,"command":"set_beam_position","args":{"x":1e309,"y":1}}',
    ],
)
def test_numbers_too_large_for_a_float64_are_refused_everywhere_keeping_the_id(raw_peer, raw):
    reply = raw_peer.exchange([raw])
    assert error_kind(reply) == "bad_request"
    assert "finite" in reply["error"]["message"]
    assert reply["id"] == 5


@pytest.mark.parametrize(
    "raw",
    [
        b'{"protocol":1,"id":6,"command":"set_beam_position","command":"hello","args":{}}',
        b'{"protocol":1,"id":6,"command":"set_beam_position","args":{"x":1,"x":2,"y":1}}',
    ],
)
def test_repeated_keys_are_refused_keeping_the_id(raw_peer, raw):
    reply = raw_peer.exchange([raw])
    assert error_kind(reply) == "bad_request"
    assert "repeated" in reply["error"]["message"]
    assert reply["id"] == 6


def test_unknown_header_fields_are_ignored(raw_peer):
    assert raw_peer.exchange([header(trace={"span": [1, 2]}, note="hi")])["ok"] is True


def test_every_reply_names_the_server_instance(raw_peer, bridge_server):
    ok = raw_peer.exchange([header()])
    bad = raw_peer.exchange([header(timeout=-1)])
    assert ok["instance"] == bad["instance"] == bridge_server.instance


# ------------------------------------------------------------------------------ integers


def test_integers_may_be_written_as_integral_floats_everywhere(raw_peer):
    reply = raw_peer.exchange([header("set_scan_parameters", args={"width": 64.0})])
    assert reply["result"]["width"] == 64
    points = np.array([[1.0, 2.0]])
    frames = [{"dtype": "<f8", "shape": [1.0, 2.0]}]
    args = {"points": {"__frame__": 0.0}}
    reply = raw_peer.exchange(
        [header("acquire_spectra_at_points", args=args, frames=frames), points.tobytes()]
    )
    assert reply["ok"] is True, reply


@pytest.mark.parametrize(("value", "kind"), [(1e308, "out_of_range"), (10**400, "out_of_range")])
def test_integer_arguments_far_beyond_64_bits_are_out_of_range(raw_peer, value, kind):
    for args in ({"rows": 1, "cols": value}, {"rows": value, "cols": 1}):
        reply = raw_peer.exchange([header("acquire_spectrum_image", args=args)])
        assert error_kind(reply) == kind


def test_an_integer_of_more_than_4300_digits_makes_the_header_unreadable(raw_peer):
    raw = b'{"protocol":1,"id":3,"command":"acquire_spectrum_image","args":{"rows":1,"cols":'
    reply = raw_peer.exchange([raw + b"9" * 4301 + b"}}"])
    assert error_kind(reply) == "bad_request"
    assert reply["id"] is None
    assert error_kind(raw_peer.exchange([raw + b"9" * 4300 + b"}}"])) == "out_of_range"


def test_a_huge_integer_where_a_number_goes_is_out_of_range(raw_peer):
    reply = raw_peer.exchange([header("set_beam_position", args={"x": 10**400, "y": 1})])
    assert error_kind(reply) == "out_of_range"


# ------------------------------------------------------------------------------ frames


@pytest.mark.parametrize(
    ("descriptor", "payload"),
    [
        ({"dtype": "<f8", "shape": [18446744073709551616, 0]}, b""),
        ({"dtype": "<f8", "shape": [2**53 + 1, 0]}, b""),
        ({"dtype": "f8", "shape": [1, 2]}, bytes(16)),
        ({"dtype": "|f8", "shape": [1, 2]}, bytes(16)),
        ({"dtype": "=f8", "shape": [1, 2]}, bytes(16)),
        ({"dtype": "<f8", "shape": [1.5, 2]}, bytes(16)),
    ],
)
def test_frame_descriptors_off_the_page_are_bad_requests(raw_peer, descriptor, payload):
    args = {"points": {"__frame__": 0}}
    reply = raw_peer.exchange(
        [header("acquire_spectra_at_points", args=args, frames=[descriptor]), payload]
    )
    assert error_kind(reply) == "bad_request"


@pytest.mark.parametrize("dtype", ["<u1", "|u1", "<i1", "|i1", "<f4"])
def test_the_page_s_dtype_spellings_are_accepted(raw_peer, dtype):
    data = np.array([[1, 2]], dtype=dtype.replace("|", "<"))
    args = {"points": {"__frame__": 0}}
    frames = [{"dtype": dtype, "shape": [1, 2]}]
    reply = raw_peer.exchange(
        [header("acquire_spectra_at_points", args=args, frames=frames), data.tobytes()]
    )
    assert reply["ok"] is True, reply


# ------------------------------------------------------------------------------ envelope, size


def test_frames_before_the_delimiter_are_an_envelope_echoed_back(raw_peer):
    raw_peer.send([b"hop-1", b"hop-2", b"", header(rid=9)])
    frames = raw_peer.receive_frames(10)
    assert frames[:3] == [b"hop-1", b"hop-2", b""]
    assert json.loads(frames[3])["id"] == 9


@pytest.fixture
def small_server():
    server = Server(MinimalBackend(), port=0, max_request_bytes=4096).start()
    yield server
    server.stop()


def test_the_header_counts_toward_the_request_size_limit(small_server, connect_raw):
    peer = connect_raw(small_server.endpoint)
    reply = peer.exchange([header(rid=11, note="x" * 5000)])  # header alone above 4 kB
    assert error_kind(reply) == "too_large"
    assert reply["id"] == 11
    reply = peer.exchange([b"{not json" + b" " * 5000])  # the size is checked first
    assert error_kind(reply) == "too_large"


def test_envelope_frames_count_toward_the_request_size_limit(small_server, connect_raw):
    peer = connect_raw(small_server.endpoint)
    peer.send([b"e" * 4050, b"", header(rid=12)])  # 4050 + the header > 4096
    assert json.loads(peer.receive_frames(10)[2])["error"]["kind"] == "too_large"
    peer.send([b"e" * 3000, b"", header(rid=13)])
    assert json.loads(peer.receive_frames(10)[2])["ok"] is True


def test_too_large_is_checked_before_the_instrument_limits(connect_raw):
    server = Server(MinimalBackend(), port=0, max_reply_bytes=1 << 20).start()
    try:
        peer = connect_raw(server.endpoint)
        # Both too many positions (> 262144) and a reply above 1 MiB: too_large wins.
        args = {"rows": 1000, "cols": 1000}
        reply = peer.exchange([header("acquire_spectrum_image", args=args)])
        assert error_kind(reply) == "too_large"
        assert str(1 << 20) in reply["error"]["message"]  # the limit, stated
        assert "rows per call" in reply["error"]["message"]
        # Within the size limit, the instrument limit speaks.
        reply = peer.exchange([header("acquire_spectrum_image", args={"rows": 0, "cols": 1})])
        assert error_kind(reply) == "out_of_range"
        assert server.backend.instrument_time_total == 0.0  # nothing was acquired
    finally:
        server.stop()


# ------------------------------------------------------------------------------ queueing


def test_an_expired_queued_request_is_answered_busy_at_its_turn_not_executed(connect_raw):
    backend = MinimalBackend(time_scale=1.0)
    backend.set_eels_parameters(exposure=0.05)
    server = Server(backend, port=0).start()
    try:
        slow, late = connect_raw(server.endpoint), connect_raw(server.endpoint)
        points = [[float(i), 1.0] for i in range(20)]  # 1 s on the instrument
        slow.send([b"", header("acquire_spectra_at_points", rid="slow", args={"points": points})])
        with BridgeClient(server.endpoint) as operator:
            deadline = time.monotonic() + 10
            while operator.status()["current_command"] != "acquire_spectra_at_points":
                assert time.monotonic() < deadline
            args = {"x": 5.0, "y": 6.0}
            late.send([b"", header("set_beam_position", rid="late", args=args, timeout=0.05)])
            assert slow.receive(30)["ok"] is True
            reply = late.receive(30)
            assert error_kind(reply) == "busy"
            assert "not executed" in reply["error"]["message"]
            assert operator.get_beam_position() == (19.0, 1.0)  # where the points left it
    finally:
        server.stop()


# ------------------------------------------------------------------------------ instrument


@pytest.mark.parametrize("backend", ["minimal", "twin"])
def test_the_energy_axis_starts_at_energy_offset_whatever_the_binning(backend):
    if backend == "twin":
        instrument = pytest.importorskip("dm_bridge.backends.twin").TwinBackend("graphene")
    else:
        instrument = MinimalBackend()
    with Server(instrument, port=0) as server, BridgeClient(server.endpoint) as dm:
        eels = dm.set_eels_parameters(energy_offset=-12.5, dispersion=0.5, binning=4, channels=64)
        for acquisition in (dm.acquire_spectrum(), dm.acquire_spectrum_image(1, 2)):
            axis = acquisition.energy_axis
            assert axis[0] == eels["energy_offset"] == -12.5
            np.testing.assert_allclose(np.diff(axis), 0.5 * 4)


def test_hello_states_the_rotation_limit_and_the_server_enforces_it(bridge_client):
    low, high = bridge_client.hello()["instrument"]["limits"]["rotation"]
    assert bridge_client.set_scan_parameters(rotation=high)["rotation"] == high
    with pytest.raises(Exception, match="rotation") as info:
        bridge_client.set_scan_parameters(rotation=high + 1)
    assert info.value.kind == "out_of_range"
    assert low == -high


def test_hello_states_the_overheads_the_timeout_formula_needs(bridge_client):
    timing = bridge_client.hello()["timing"]
    assert set(timing) == {
        "image_overhead",
        "line_overhead",
        "spectrum_overhead",
        "acquisition_overhead",
        "time_scale",
    }


def test_the_timeout_formula_with_hello_s_overheads_covers_the_twin_s_time():
    twin_module = pytest.importorskip("dm_bridge.backends.twin")
    twin = twin_module.TwinBackend("graphene", time_scale=0.0)
    with Server(twin, port=0) as server, BridgeClient(server.endpoint, timeout=60) as dm:
        timing = dict(dm.hello()["timing"], time_scale=1.0)  # as a real-time twin would say
        eels = dm.set_eels_parameters(exposure=0.01, channels=64)
        scan = dm.set_scan_parameters(width=64, height=64)
        points = np.zeros((50, 2)) + 10.0
        took = dm.acquire_spectra_at_points(points).instrument_time  # ~14 s on the instrument
        expected = acquisition_estimate(
            "acquire_spectra_at_points", {"points": points}, scan, eels, timing
        )[0]
        assert took <= expected  # so timeout + 2 x expected never cuts it short
        took = dm.acquire_image().instrument_time
        assert took <= acquisition_estimate("acquire_image", {}, scan, eels, timing)[0]
        took = dm.acquire_spectrum().instrument_time  # one spectrum: DM's set-up included
        assert took <= acquisition_estimate("acquire_spectrum", {}, scan, eels, timing)[0]


# ------------------------------------------------------------------------------ loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("::ffff:127.0.0.1", False),
        ("LOCALHOST", False),
        ("microscope.lab", False),
        ("", False),
    ],
)
def test_exactly_the_loopback_addresses_are_exempt_from_curvezmq(host, loopback):
    assert is_loopback(host) is loopback
    if not loopback:
        with pytest.raises(ValueError, match="without authentication"):
            Server(MinimalBackend(), host=host or "*", port=0)


def test_another_loopback_address_serves_without_keys():
    try:
        server = Server(MinimalBackend(), host="127.0.0.2", port=0).start()
    except (zmq.ZMQError, OSError) as exc:  # a system without 127.0.0.2 configured
        pytest.skip(f"127.0.0.2 cannot be bound here: {exc}")
    try:
        with BridgeClient(server.endpoint) as dm:
            assert dm.hello()["server"]["curve"] is False
    finally:
        server.stop()
