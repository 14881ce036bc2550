"""CurveZMQ: off loopback it is compulsory; wrong keys fail fast with BridgeAuthError."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import zmq

from dm_bridge.aio import AsyncBridgeClient
from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.client import BridgeClient
from dm_bridge.errors import BridgeAuthError
from dm_bridge.keys import HandshakeLog, check_key_permissions, generate_keys, load_key_pair
from dm_bridge.server import Server, is_loopback

from .test_concurrency import wait_for

# CurveZMQ is the ZeroMQ transport's (the stream transport refuses keys and off-loopback hosts)
pytestmark = pytest.mark.transport("zmq")

DM_BRIDGE = Path(sys.executable).parent / "dm-bridge"


@pytest.fixture
def keys(tmp_path: Path) -> Dict[str, Any]:
    """A server key pair, two allowed clients, and one stranger whose key is not allowed."""
    made = generate_keys(tmp_path / "keys", clients=2)
    stranger = generate_keys(tmp_path / "elsewhere", clients=1)
    made["stranger"] = stranger["clients"][0]["secret"]
    made["wrong_server"] = stranger["server_public"]
    return made


@pytest.fixture
def curve_server(keys: Dict[str, Any]) -> Iterator[Server]:
    """CurveZMQ forced on, on loopback (keys given turn it on wherever the server binds)."""
    server = Server(
        MinimalBackend(),
        port=0,
        server_secret_key=keys["server_secret"],
        allowed_clients=keys["allowed_clients"],
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "*", "192.168.1.20", "::", "microscope.lab"])
def test_binding_off_loopback_without_keys_is_refused(host):
    with pytest.raises(ValueError, match="CurveZMQ"):
        Server(MinimalBackend(), host=host, port=0)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("10.0.0.1", False), ("example.org", False)],
)  # fmt: skip
def test_loopback_detection(host, loopback):
    assert is_loopback(host) is loopback


def test_half_a_key_configuration_is_refused(keys):
    with pytest.raises(ValueError, match="both"):
        Server(MinimalBackend(), port=0, server_secret_key=keys["server_secret"])
    with pytest.raises(ValueError, match="secret"):  # a public key file is no secret key
        Server(
            MinimalBackend(),
            port=0,
            server_secret_key=keys["server_public"],
            allowed_clients=keys["allowed_clients"],
        )


def test_the_cli_refuses_to_serve_off_loopback_without_keys():
    result = subprocess.run(
        [str(DM_BRIDGE), "serve", "--backend", "minimal", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "requires CurveZMQ" in result.stderr
    assert "dm-bridge keys" in result.stderr


def test_off_loopback_with_keys_serves_allowed_clients(keys):
    server = Server(
        MinimalBackend(),
        host="0.0.0.0",
        port=0,
        server_secret_key=keys["server_secret"],
        allowed_clients=keys["allowed_clients"],
    ).start()
    try:
        port = server.endpoint.rsplit(":", 1)[1]
        with BridgeClient(
            f"tcp://127.0.0.1:{port}",
            server_public_key=keys["server_public"],
            client_secret_key=keys["clients"][1]["secret"],
        ) as client:
            assert client.hello()["server"]["curve"] is True
    finally:
        server.stop()


def test_an_allowed_client_works(curve_server, keys):
    with BridgeClient(
        curve_server.endpoint,
        server_public_key=keys["server_public"],
        client_secret_key=keys["clients"][0]["secret"],
    ) as client:
        assert client.set_beam_position(4.5, 5.5) == (4.5, 5.5)
        assert client.acquire_image().images["HAADF"].shape == (512, 512)


def test_keys_can_be_given_as_z85_text(curve_server, keys):
    _, secret = load_key_pair(keys["clients"][0]["secret"])
    server_public, _ = zmq.auth.load_certificate(str(keys["server_public"]))
    with BridgeClient(
        curve_server.endpoint, server_public_key=server_public, client_secret_key=secret
    ) as client:
        assert client.hello()["backend"] == "minimal"


@pytest.mark.parametrize(
    ("server_key", "client_key", "reason"),
    [
        ("server_public", "stranger", "refused this client's key"),
        ("wrong_server", "clients", "handshake failed"),
        (None, None, "handshake failed"),  # no keys at all against a CurveZMQ server
    ],
)
def test_wrong_keys_raise_bridge_auth_error_not_a_timeout(
    curve_server, keys, server_key, client_key, reason
):
    kwargs = {}
    if server_key is not None:
        secret = keys[client_key]
        kwargs = {
            "server_public_key": keys[server_key],
            "client_secret_key": secret[0]["secret"] if isinstance(secret, list) else secret,
        }
    # A generous timeout: the error must come from the handshake, long before it expires.
    with BridgeClient(curve_server.endpoint, timeout=60, **kwargs) as client:
        with pytest.raises(BridgeAuthError, match=reason):
            client.hello()
        with pytest.raises(BridgeAuthError):  # and again on the next call
            client.get_beam_position()


def test_a_curve_client_against_a_plain_server_raises_bridge_auth_error(bridge_server, keys):
    with BridgeClient(
        bridge_server.endpoint,
        timeout=60,
        server_public_key=keys["server_public"],
        client_secret_key=keys["clients"][0]["secret"],
    ) as client, pytest.raises(BridgeAuthError):
        client.hello()


async def test_the_async_client_reports_auth_failures_too(curve_server, keys):
    client = AsyncBridgeClient(
        curve_server.endpoint,
        timeout=60,
        server_public_key=keys["server_public"],
        client_secret_key=keys["stranger"],
    )
    try:
        with pytest.raises(BridgeAuthError, match="refused"):
            await client.hello()
    finally:
        client.close()


def test_clients_need_both_keys(keys):
    with pytest.raises(ValueError, match="both"):
        BridgeClient("tcp://127.0.0.1:1", server_public_key=keys["server_public"])


# ------------------------------------------------------------------------------ key hygiene

posix_only = pytest.mark.skipif(
    sys.platform.startswith("win"), reason="POSIX permission bits (Windows uses ACLs)"
)


@posix_only
def test_a_secret_key_other_users_can_read_is_refused(keys):
    os.chmod(keys["server_secret"], 0o644)
    with pytest.raises(ValueError, match="can be read by other users"):
        Server(
            MinimalBackend(),
            port=0,
            server_secret_key=keys["server_secret"],
            allowed_clients=keys["allowed_clients"],
        )


@posix_only
def test_a_secret_key_folder_other_users_can_write_is_refused(keys):
    # the key itself is private, but whoever can write its folder can put their own key there
    folder = Path(keys["server_secret"]).parent
    os.chmod(folder, 0o777)
    with pytest.raises(
        ValueError, match=r"folder of the secret key .* can be written .* by other users"
    ):
        Server(
            MinimalBackend(),
            port=0,
            server_secret_key=keys["server_secret"],
            allowed_clients=keys["allowed_clients"],
        )
    os.chmod(folder, 0o1777)  # sticky (as /tmp): others cannot replace a file they do not own
    Server(
        MinimalBackend(),
        port=0,
        server_secret_key=keys["server_secret"],
        allowed_clients=keys["allowed_clients"],
    ).stop()


@posix_only
def test_generated_key_folders_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o002)  # a group-writable default (user private groups)
    try:
        made = generate_keys(tmp_path / "keys", clients=1)
    finally:
        os.umask(old)
    assert check_key_permissions(made["server_secret"], made["allowed_clients"]) == []
    assert os.stat(tmp_path / "keys" / "private").st_mode & 0o077 == 0


@posix_only
def test_an_allow_list_other_users_can_write_is_refused(keys):
    os.chmod(keys["allowed_clients"], 0o777)
    with pytest.raises(
        ValueError, match=r"allowed-clients folder or key .* can be changed by other users"
    ):
        Server(
            MinimalBackend(),
            port=0,
            server_secret_key=keys["server_secret"],
            allowed_clients=keys["allowed_clients"],
        )


@posix_only
def test_a_key_file_in_the_allow_list_other_users_can_write_is_refused(keys):
    # the folder itself is fine: whoever can rewrite one of its keys admits themselves
    writable = sorted(Path(keys["allowed_clients"]).glob("*.key"))[0]
    os.chmod(writable, 0o666)
    with pytest.raises(ValueError, match=f"{writable.name} can be changed by other users"):
        Server(
            MinimalBackend(),
            port=0,
            server_secret_key=keys["server_secret"],
            allowed_clients=keys["allowed_clients"],
        )


@posix_only
def test_insecure_keys_start_with_a_loud_error_in_the_log(keys, caplog):
    os.chmod(keys["server_secret"], 0o644)
    caplog.set_level(logging.ERROR, logger="dm_bridge.server")
    server = Server(
        MinimalBackend(),
        port=0,
        server_secret_key=keys["server_secret"],
        allowed_clients=keys["allowed_clients"],
        insecure_keys=True,
    )
    assert server.curve
    assert any("INSECURE KEYS" in r.getMessage() for r in caplog.records)


@posix_only
def test_the_cli_refuses_insecure_keys_unless_told(keys):
    os.chmod(keys["server_secret"], 0o640)
    args = [
        str(DM_BRIDGE),
        "serve",
        "--backend",
        "minimal",
        "--port",
        "0",
        "--server-key",
        str(keys["server_secret"]),
        "--allowed-clients",
        str(keys["allowed_clients"]),
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "chmod 600" in result.stderr


def test_refused_handshakes_are_logged_once_then_summarised(curve_server, keys, caplog):
    caplog.set_level(logging.INFO, logger="dm_bridge")
    for _ in range(12):  # a hostile client retrying
        with BridgeClient(
            curve_server.endpoint,
            timeout=60,
            server_public_key=keys["server_public"],
            client_secret_key=keys["stranger"],
        ) as client, pytest.raises(BridgeAuthError):
            client.hello()
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1  # the first, with the key; repeats only counted
    assert curve_server._handshakes.total >= 12


def test_the_handshake_log_summarises_repeats_once_per_interval():
    records: List[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("test.handshakes")
    logger.addHandler(Collect())
    handshakes = HandshakeLog(logger, interval=0.0)  # summarise at every repeat
    handshakes.refused_key("A" * 40)
    handshakes.refused_key("A" * 40)
    handshakes.refused_key("B" * 40)
    assert records[0].startswith("refused a client with unknown public key AAAA")
    assert any("more refused" in r for r in records)
    assert sum("unknown public key BBBB" in r for r in records) == 1
    slow = HandshakeLog(logger, interval=3600.0)
    records.clear()
    for _ in range(500):
        slow.refused_key("C" * 40)
    assert len(records) == 1  # 500 attempts, one line


def test_the_last_repeats_are_said_when_the_interval_ends_or_the_log_closes():
    """No refusal after the last repeats: they are summarised all the same, when the interval
    is over (a timer) or at close (the server stopping), not left until a next refusal that
    may never come."""
    records: List[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("test.handshakes.quiet_after")
    logger.addHandler(Collect())
    handshakes = HandshakeLog(logger, interval=0.2)
    for _ in range(3):
        handshakes.refused_key("E" * 40)  # one named, two repeats; then nothing more
    wait_for(lambda: any("more refused" in r for r in records), "the summary at the interval's end")
    assert next(r for r in records if "more refused" in r).startswith("2 more refused")
    records.clear()
    slow = HandshakeLog(logger, interval=3600.0)
    slow.refused_key("F" * 40)
    slow.refused_key("F" * 40)
    assert not any("more refused" in r for r in records)  # (the hour is not over)
    slow.close()
    assert [r for r in records if "more refused" in r] == [
        "1 more refused CurveZMQ handshake(s) in the last 3600 s (1 distinct source(s))"
    ]
    assert slow._timer is None  # the hour's timer is cancelled with it


def test_a_stopping_server_says_the_refusals_it_has_not_summarised(curve_server, keys, caplog):
    caplog.set_level(logging.INFO, logger="dm_bridge")
    for _ in range(3):
        with BridgeClient(
            curve_server.endpoint,
            timeout=60,
            server_public_key=keys["server_public"],
            client_secret_key=keys["stranger"],
        ) as client, pytest.raises(BridgeAuthError):
            client.hello()
    wait_for(lambda: curve_server._handshakes.total >= 3, "the refusals counted")
    assert not any("more refused" in r.getMessage() for r in caplog.records)
    curve_server.stop()
    assert any("more refused" in r.getMessage() for r in caplog.records)


def test_a_fresh_key_for_every_attempt_costs_a_bounded_log_and_memory():
    """A hostile client that makes a new key pair per attempt: each key is new, so naming
    each one would be a line per attempt (and a key remembered per attempt)."""
    records: List[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("test.handshakes.fresh")
    logger.addHandler(Collect())
    handshakes = HandshakeLog(logger, interval=3600.0, first_lines=10, remembered=100)
    for k in range(500):
        handshakes.refused_key(f"{k:040d}")
    assert len(records) == 10  # the first ten named; the rest counted for the summary
    assert len(handshakes._seen) <= 100
    assert len(handshakes._sources) <= 100
    assert handshakes.total == 500
    handshakes.interval = 0.0
    handshakes.refused_key("D" * 40)
    assert records[-1].startswith("491 more refused CurveZMQ handshake(s)")
