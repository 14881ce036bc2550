"""Where a command's messages go: the person reads ours, the log file keeps the libraries'.

Our own warnings say what happened, what is safe and what to do next (the catalog writer's
"the catalog is away; the documents are safe in the local spool"). The libraries under them
say the same thing in their own words -- bluesky-tiled-plugins' TiledWriter "Appending N rows
... forcing a retry", tiled's "Retrying…" written straight to stderr whenever a request of
the main thread is retried, httpx's connection errors -- which a microscopist cannot act on.
The same holds for the RunEngine's "Run aborted" and its traceback when a plan fails
(``--pixel-size fft`` on an image without the lattice, say): the command already says what
failed, in one line. :func:`route_library_logs` sends those to ``ophyd-stem.log`` in the
data directory (kept small: three files of 2 MB at most), with the times, for whoever looks
into an outage or a failed run.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

__all__ = ["LIBRARY_LOGGERS", "LOG_NAME", "route_library_logs"]

#: the log file, in the data directory
LOG_NAME = "ophyd-stem.log"
#: loggers of the libraries under the catalog, and the RunEngine's, whose messages go to the
#: log file only
LIBRARY_LOGGERS = ("bluesky_tiled_plugins", "tiled", "httpx", "httpcore", "stamina", "bluesky")

_log = logging.getLogger("tiled.client")


def _quiet_retry_indicator() -> None:
    """tiled shows "Retrying…" on stderr (or a spinner on a terminal) when a request of the
    main thread is retried, with no public switch; write it to tiled's logger instead."""
    try:
        from tiled.client.utils import StandaloneRetryIndicator
    except ImportError:  # tiled without the indicator: nothing prints, nothing to route
        return

    def show(self: StandaloneRetryIndicator) -> None:
        if not getattr(self, "_showing", False):
            self._showing = True
            _log.info("a catalog request failed; tiled retries it (its 'Retrying…')")

    def reset(self: StandaloneRetryIndicator) -> None:
        if getattr(self, "_showing", False):
            self._showing = False
            _log.info("the retried catalog request is settled")

    StandaloneRetryIndicator.show = show  # type: ignore[method-assign]
    StandaloneRetryIndicator.reset = reset  # type: ignore[method-assign]


def route_library_logs(data_dir: str | Path | None) -> Path | None:
    """Send the catalog libraries' messages to ``data_dir/ophyd-stem.log``, not the screen.

    Args:
        data_dir: the data directory (created if missing); None, or one that cannot be
            written, keeps the libraries' warnings off the screen all the same (lost rather
            than shown: ours say what matters).

    Returns:
        The log file, or None when there is none.
    """
    _quiet_retry_indicator()
    handler: logging.Handler = logging.NullHandler()
    path = None
    if data_dir is not None:
        try:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
            path = Path(data_dir) / LOG_NAME
            handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=2_000_000, backupCount=2, encoding="utf-8"
            )
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
        except OSError:
            path = None
    handler.setLevel(logging.INFO)
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.propagate = False  # never up to the console's handlers
        library.handlers = [h for h in library.handlers if not getattr(h, "_ophyd_stem", False)]
        library.addHandler(handler)
        library.setLevel(logging.INFO if name == "tiled" else logging.WARNING)
    handler._ophyd_stem = True  # type: ignore[attr-defined]
    return path
