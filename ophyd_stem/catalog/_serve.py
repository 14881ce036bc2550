"""The embedded catalog server's process: ``tiled serve config``, plus a stop when idle.

Run by :class:`~ophyd_stem.catalog.EmbeddedServer` as::

    python -m ophyd_stem.catalog._serve CONFIG --port PORT --log-config LOGGING
        --idle-timeout SECONDS --state-file server.json

It serves the Tiled app that ``tiled serve config CONFIG`` would (same configuration, the API
key from ``$TILED_SINGLE_USER_API_KEY``), and stops by itself when:

- no request has come for ``--idle-timeout`` seconds (0: never), so a server left by the
  last command of the day does not run for ever;
- its state file, once it named this process, no longer does: the data directory was
  deleted, or ``EmbeddedServer.stop`` already forgot it.

It touches ``activity`` beside the state file (at most every few seconds) when it serves
requests, so ``ophyd-stem serve --status`` can say how long it has been idle.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Optional

__all__ = ["main"]

logger = logging.getLogger("ophyd_stem.catalog.server")

#: how often the watcher looks at the clock and the state file, seconds
CHECK_PERIOD = 2.0


class ActivityTracker:
    """ASGI middleware: when the last request ended, and how many are in flight."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.in_flight = 0
        self.last = time.monotonic()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.last = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last request ended (0 while one is in flight)."""
        return 0.0 if self.in_flight else time.monotonic() - self.last


def _names_me(state_file: Path) -> Optional[bool]:
    """True/False whether the state file names this process; None if it cannot be read."""
    try:
        return int(json.loads(state_file.read_text())["pid"]) == os.getpid()
    except FileNotFoundError:
        return False
    except (OSError, ValueError, KeyError, TypeError):
        return None


def watch(server: Any, tracker: ActivityTracker, idle_timeout: float, state_file: Path) -> None:
    """Ask ``server`` (a ``uvicorn.Server``) to exit when idle or forgotten (a thread)."""
    activity = state_file.with_name("activity")
    named = False
    touched = tracker.last
    while not server.should_exit:
        time.sleep(CHECK_PERIOD)
        mine = _names_me(state_file)
        if mine:
            named = True
        elif mine is False and named:
            logger.warning("stopping: %s no longer names this server", state_file)
            server.should_exit = True
            return
        if tracker.last != touched:
            touched = tracker.last
            with contextlib.suppress(OSError):
                activity.touch()
        if idle_timeout > 0 and tracker.idle_for() >= idle_timeout:
            logger.warning("stopping: no request for %.0f s", idle_timeout)
            server.should_exit = True
            return


def main(argv: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-config", type=Path, required=True)
    parser.add_argument("--idle-timeout", type=float, default=0.0)
    parser.add_argument("--state-file", type=Path, required=True)
    args = parser.parse_args(argv)

    import uvicorn
    import yaml
    from tiled.config import parse_configs
    from tiled.server.app import build_app_from_config

    tracker = ActivityTracker(build_app_from_config(parse_configs(args.config)))
    log_config = yaml.safe_load(args.log_config.read_text())
    server = uvicorn.Server(
        uvicorn.Config(tracker, host=args.host, port=args.port, log_config=log_config)
    )
    watcher = threading.Thread(
        target=watch,
        args=(server, tracker, args.idle_timeout, args.state_file),
        name="idle-watch",
        daemon=True,
    )
    watcher.start()
    server.run()


if __name__ == "__main__":
    main()
