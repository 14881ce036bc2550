"""The long-lived catalog server from the shell: ``serve --catalog-only`` starts it (or
reuses the one running), ``serve --status`` says where it runs, ``serve --stop`` stops it,
and a server left without requests stops by itself ($OPHYD_STEM_CATALOG_IDLE)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from ophyd_stem.catalog import CatalogSettings, EmbeddedServer

from .test_command import ophyd_stem


def listening(port: int) -> bool:
    """A bare TCP connection: not an HTTP request, so it does not count as the server's use."""
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_serve_starts_reuses_says_and_stops_the_server_and_an_idle_one_stops_itself(app_env):
    settings = CatalogSettings(Path(app_env["OPHYD_STEM_DATA_DIR"]))
    started = ophyd_stem(app_env, "serve", "--catalog-only")
    assert started.returncode == 0, started.stderr
    server = EmbeddedServer.find(settings)
    assert server is not None
    again = ophyd_stem(app_env, "serve", "--catalog-only")
    assert again.returncode == 0, again.stderr
    assert EmbeddedServer.find(settings).pid == server.pid  # reused, not a second one

    status = ophyd_stem(app_env, "serve", "--status")
    assert f"catalog server: running at {server.uri} (pid {server.pid})" in status.stdout
    stopped = ophyd_stem(app_env, "serve", "--stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout
    assert not listening(int(server.uri.rsplit(":", 1)[1]))
    assert "catalog server: not running" in ophyd_stem(app_env, "serve", "--status").stdout

    idle = {**app_env, "OPHYD_STEM_CATALOG_IDLE": "1"}
    assert ophyd_stem(idle, "serve", "--catalog-only").returncode == 0
    port = int(EmbeddedServer.find(settings).uri.rsplit(":", 1)[1])
    deadline = time.monotonic() + 120  # a bound on a busy machine, not a speed goal
    while listening(port):
        assert time.monotonic() < deadline, "the idle server did not stop by itself"
        time.sleep(0.5)
    assert EmbeddedServer.find(settings) is None
