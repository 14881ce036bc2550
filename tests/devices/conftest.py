from __future__ import annotations

import importlib.util


def bridge_modes() -> list:
    """Bridge modes to test devices over: in-process always; a real loopback bridge (in a
    thread and in a subprocess) once the server exists."""
    modes = ["local"]
    ready = all(importlib.util.find_spec(m) for m in ("dm_bridge.server", "dm_bridge.client"))
    if ready:
        modes += ["thread", "subprocess"]
    return modes


def backend_name() -> str:
    """The twin when it is there, else the minimal backend."""
    return "twin" if importlib.util.find_spec("dm_bridge.backends.twin") else "minimal"
