"""The embedded server (reuse, private key, configuration) and clear errors for bad input."""

from __future__ import annotations

import os
import socket
import stat
import time

import bluesky.plans as bp
import pytest
import yaml

from ophyd_stem.catalog import (
    CatalogAuthError,
    CatalogError,
    CatalogUnreachable,
    EmbeddedServer,
    open_catalog,
)
from ophyd_stem.catalog.spool import spooled_runs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_the_embedded_server_is_reused_not_started_twice(shared_server, shared_settings):
    again = EmbeddedServer.start(shared_settings)
    assert (again.pid, again.port, again.api_key) == (
        shared_server.pid,
        shared_server.port,
        shared_server.api_key,
    )
    assert again.owned is False
    assert shared_server.owned is True
    assert EmbeddedServer.find(shared_settings).pid == shared_server.pid

    catalog = open_catalog(settings=shared_settings)  # no URI: the embedded catalog
    try:
        assert [(s.name, s.version) for s in catalog.specs] == [("CatalogOfBlueskyRuns", "3.0")]
    finally:
        catalog.context.close()


@pytest.mark.slow
def test_the_api_key_stays_private_and_off_the_command_line(shared_server, shared_settings):
    key_file = shared_settings.server_dir / "api_key"
    assert key_file.read_text().strip() == shared_server.api_key
    if os.name == "posix":
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(shared_settings.server_dir.stat().st_mode) == 0o700
        cmdline = f"/proc/{shared_server.pid}/cmdline"
        if os.path.exists(cmdline):
            with open(cmdline, "rb") as file:
                assert shared_server.api_key.encode() not in file.read()
    config = yaml.safe_load((shared_settings.server_dir / "config.yml").read_text())
    assert shared_server.api_key not in (shared_settings.server_dir / "config.yml").read_text()
    (tree,) = config["trees"]
    assert tree["args"]["readable_storage"] == [str(shared_settings.assets_dir)]
    assert "json_seq_exporter" in config["media_types"]["BlueskyRun"]["application/json-seq"]


@pytest.mark.slow
def test_a_wrong_or_missing_api_key_is_a_clear_error(shared_server, monkeypatch):
    monkeypatch.delenv("TILED_API_KEY", raising=False)
    with pytest.raises(CatalogAuthError, match="refused the API key"):
        open_catalog(shared_server.uri, api_key="0123wrong")
    with pytest.raises(CatalogAuthError, match="requires an API key"):
        open_catalog(shared_server.uri)


@pytest.mark.parametrize(
    ("uri", "error", "message"),
    [
        ("ftp://localhost:21", CatalogError, "not an http"),
        ("localhost:8000", CatalogError, "not an http"),
        ("http://127.0.0.1:{port}", CatalogUnreachable, "no catalog server answers"),
    ],
)
def test_a_bad_uri_is_a_clear_error(uri, error, message):
    with pytest.raises(error, match=message):
        open_catalog(uri.format(port=free_port()), api_key="abc")


def test_an_unreachable_catalog_never_stops_the_run(RE, devices, settings, make_writer):
    """No server at all: the run completes and every document waits in the spool."""
    det, eels = devices
    writer = make_writer(f"http://127.0.0.1:{free_port()}", "abc", settings)
    RE.subscribe(writer)
    (uid,) = RE(bp.count([det, eels], num=3))
    assert not writer.flush(timeout=0.5)
    deadline = time.monotonic() + 60
    while writer.status().state != "retrying":  # the writer's first attempt has failed
        assert time.monotonic() < deadline
        time.sleep(0.02)
    status = writer.status()
    assert status.received == len(RE.documents)
    assert status.written == 0
    assert "no catalog server answers" in status.last_error
    assert status.spooled_runs == (uid,)
    writer.close(timeout=0)
    (spooled,) = spooled_runs(settings.spool_dir)
    assert (spooled.run_uid, spooled.documents, spooled.complete) == (uid, len(RE.documents), True)
