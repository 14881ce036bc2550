from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.fixture
def app_env(tmp_path):
    """Environment for a fresh user: own data dir, no config file, headless matplotlib."""
    env = dict(os.environ)
    env.update(
        OPHYD_STEM_DATA_DIR=str(tmp_path / "data"),
        OPHYD_STEM_CONFIG=str(tmp_path / "no-config.toml"),
        MPLBACKEND="Agg",
        PYTHONWARNINGS="ignore",
    )
    for name in ("OPHYD_STEM_BRIDGE", "OPHYD_STEM_CATALOG", "OPHYD_STEM_API_KEY", "TILED_API_KEY"):
        env.pop(name, None)
    yield env
    # Stop the embedded catalog server this test's data dir started.
    from ophyd_stem.catalog import CatalogSettings, EmbeddedServer

    server = EmbeddedServer.find(CatalogSettings(data_dir=tmp_path / "data"))
    if server is not None:
        server.stop()
