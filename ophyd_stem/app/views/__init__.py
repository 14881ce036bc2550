"""Live views: what the agent sees, drawn from the documents, live and in replay alike.

:mod:`.figures` draws each workflow's figure from a run's documents; :mod:`.live` redraws it
as a Bluesky callback while a run goes (or while a recorded run is replayed).
"""

from typing import Any

from .figures import draw, render, scalarizer_bands


def __getattr__(name: str) -> Any:
    # LiveView on first use: it imports bluesky's callbacks, which a static figure
    # (`ophyd-stem show`) does not need
    if name == "LiveView":
        from .live import LiveView

        return LiveView
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LiveView", "draw", "render", "scalarizer_bands"]
