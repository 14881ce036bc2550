"""Live views: what the agent sees, drawn from the documents, live and in replay alike.

:mod:`.figures` draws each workflow's figure from a run's documents; :mod:`.live` redraws it
as a Bluesky callback while a run goes (or while a recorded run is replayed).
"""

from .figures import draw, render, scalarizer_bands
from .live import LiveView

__all__ = ["LiveView", "draw", "render", "scalarizer_bands"]
