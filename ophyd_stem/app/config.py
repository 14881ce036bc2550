"""Where the session's bridge and catalog are: arguments, then environment, then a file.

The same settings serve the console and the ``ophyd-stem`` command. In order of precedence:

1. explicit arguments (``--bridge``, ``configure_session(bridge=...)``);
2. environment variables ``OPHYD_STEM_BRIDGE``, ``OPHYD_STEM_SERVER_KEY`` (the bridge's public
   key file), ``OPHYD_STEM_CLIENT_KEY`` (this client's secret key file), ``OPHYD_STEM_CATALOG``,
   ``OPHYD_STEM_API_KEY``, ``OPHYD_STEM_DATA_DIR``, ``OPHYD_STEM_OPERATOR``,
   ``OPHYD_STEM_SAMPLE``, ``OPHYD_STEM_DEVICE``, ``OPHYD_STEM_COMPUTE``;
3. the file ``$OPHYD_STEM_CONFIG`` or ``~/.config/ophyd-stem/config.toml``::

       [bridge]
       address = "tcp://microscope-pc:5555"
       server_key = "~/keys/server.key"
       client_key = "~/keys/client.key_secret"

       [catalog]
       uri = "https://tiled.example.org/api"
       api_key = "..."

       [session]
       data_dir = "~/stem-data"
       operator = "A. Microscopist"

       [compute]
       device = "auto"                  # where agents compute: auto, cpu, cuda, cuda:N
       cluster = "tcp://scheduler:8786"  # Dask cluster for fan-out work, or "local"

With no bridge address the session runs the digital twin; with no catalog URI it starts the
embedded local catalog in the data directory; with no cluster, agent work stays in-process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["SessionConfig", "load_config"]

ENV = {
    "bridge": "OPHYD_STEM_BRIDGE",
    "server_key": "OPHYD_STEM_SERVER_KEY",
    "client_key": "OPHYD_STEM_CLIENT_KEY",
    "catalog": "OPHYD_STEM_CATALOG",
    "api_key": "OPHYD_STEM_API_KEY",
    "data_dir": "OPHYD_STEM_DATA_DIR",
    "operator": "OPHYD_STEM_OPERATOR",
    "sample": "OPHYD_STEM_SAMPLE",
    "device": "OPHYD_STEM_DEVICE",
    "compute": "OPHYD_STEM_COMPUTE",
}

FILE_KEYS = {
    "bridge": ("bridge", "address"),
    "server_key": ("bridge", "server_key"),
    "client_key": ("bridge", "client_key"),
    "catalog": ("catalog", "uri"),
    "api_key": ("catalog", "api_key"),
    "data_dir": ("session", "data_dir"),
    "operator": ("session", "operator"),
    "sample": ("session", "sample"),
    "device": ("compute", "device"),
    "compute": ("compute", "cluster"),
}


@dataclass
class SessionConfig:
    """Resolved settings of a session. ``None`` means "use the embedded default".

    Attributes:
        bridge: ZeroMQ address of a DM bridge; ``None`` runs the digital twin.
        server_key: the bridge's CurveZMQ public key file (needed off loopback).
        client_key: this client's CurveZMQ secret key file.
        catalog: Tiled URI; ``None`` starts the embedded local catalog.
        api_key: Tiled API key for ``catalog``.
        data_dir: where the embedded catalog and the survey images live.
        operator: recorded in every run.
        sample: the twin's sample when no bridge is given; recorded in every run.
        device: where agents compute (``auto``, ``cpu``, ``cuda``, ``cuda:N``); ``None``:
            each agent's default (``auto``).
        compute: Dask cluster for agent work that fans out (``local``, ``local:N`` or a
            scheduler address such as ``tcp://scheduler:8786``); ``None``: in-process.
        sources: where each setting came from (for ``ophyd-stem`` to show).
    """

    bridge: str | None = None
    server_key: str | None = None
    client_key: str | None = None
    catalog: str | None = None
    api_key: str | None = None
    data_dir: str | None = None
    operator: str | None = None
    sample: str = "graphene"
    device: str | None = None
    compute: str | None = None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def uses_twin(self) -> bool:
        return self.bridge is None


def _config_file() -> Path:
    explicit = os.environ.get("OPHYD_STEM_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    return Path("~/.config/ophyd-stem/config.toml").expanduser()


def load_config(**explicit: Any) -> SessionConfig:
    """Resolve the session's settings; keyword arguments win over environment and file.

    Raises:
        ValueError: the configuration file is not valid TOML (the message says where), or
            ``device``/``compute`` is malformed (the message says which and where from).
    """
    path = _config_file()
    from_file: dict[str, Any] = {}
    if path.is_file():
        try:
            from_file = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML: {exc}") from None
    config = SessionConfig()
    names = {f.name for f in fields(SessionConfig)} - {"sources"}
    unknown = set(explicit) - names
    if unknown:
        raise TypeError(f"unknown session setting(s): {sorted(unknown)}")
    for name in names:
        value, source = explicit.get(name), "argument"
        if value is None and name in ENV:
            value, source = os.environ.get(ENV[name]) or None, f"${ENV[name]}"
        if value is None and name in FILE_KEYS:
            section, key = FILE_KEYS[name]
            value, source = from_file.get(section, {}).get(key), str(path)
        if value is not None:
            setattr(config, name, value)
            config.sources[name] = source
    _check_compute_settings(config)
    return config


def _check_compute_settings(config: SessionConfig) -> None:
    """Fail early, saying where a bad ``device`` or ``compute`` came from."""
    from agents.compute import check_compute
    from agents.device import check_device

    for name, check in (("device", check_device), ("compute", check_compute)):
        value = getattr(config, name)
        if value is None:
            continue
        try:
            setattr(config, name, check(value))
        except ValueError as exc:
            raise ValueError(f"{name} from {config.sources.get(name)}: {exc}") from None
