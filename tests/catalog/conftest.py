"""Fixtures for the catalog tests: a real Tiled server subprocess, a real RunEngine, and
ophyd-async sim devices (a blob detector writing HDF5 under the assets directory, announced
with StreamResource/StreamDatum; a spectrometer whose spectra travel inline)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path
from typing import Iterator, List

import h5py
import numpy as np
import pytest
from ophyd_async.core import (
    Array1D,
    AsyncStatus,
    StandardReadable,
    StaticPathProvider,
    UUIDFilenameProvider,
    init_devices,
    soft_signal_r_and_setter,
    soft_signal_rw,
)
from ophyd_async.core import StandardReadableFormat as Format
from ophyd_async.sim import PatternGenerator, SimBlobDetector

from ophyd_stem.catalog import CatalogSettings, CatalogWriter, EmbeddedServer
from ophyd_stem.catalog.server import ensure_catalog_initialized

SPECTRUM_CHANNELS = 256


class SimSpectrometer(StandardReadable):
    """A 1-D spectrum per trigger, reproducible from its seed; remembers what it produced."""

    def __init__(self, seed: int = 0, name: str = "") -> None:
        self._rng = np.random.default_rng(seed)
        self.produced: List[np.ndarray] = []
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.spectrum, self._set_spectrum = soft_signal_r_and_setter(
                Array1D[np.float64], units="counts"
            )
        with self.add_children_as_readables(Format.CONFIG_SIGNAL):
            self.energy_offset = soft_signal_rw(float, 280.0, units="eV")
        super().__init__(name=name)

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        spectrum = self._rng.poisson(50.0, SPECTRUM_CHANNELS).astype(np.float64)
        self.produced.append(spectrum)
        self._set_spectrum(spectrum)


async def _no_wait(_seconds: float) -> None:
    await asyncio.sleep(0)  # frames as fast as the file takes them: tests stay quick


@pytest.fixture
def devices(RE, settings):
    """``(blob_detector, spectrometer)``: images to HDF5 in ``settings.assets_dir``."""
    provider = StaticPathProvider(UUIDFilenameProvider(), settings.assets_dir)
    with init_devices():
        det = SimBlobDetector(provider, PatternGenerator(sleep=_no_wait))
        eels = SimSpectrometer(seed=1234)
    return det, eels


@pytest.fixture(scope="session")
def initialized_catalog(tmp_path_factory) -> Path:
    """A catalog database made once with ``tiled catalog init`` (seconds on a busy machine);
    data directories start from a copy of it."""
    settings = CatalogSettings(tmp_path_factory.mktemp("catalog-template"))
    ensure_catalog_initialized(settings)
    return settings.catalog_db


@pytest.fixture(scope="session")
def new_settings(initialized_catalog):
    """Make the settings of a fresh data directory whose catalog is already initialised."""

    def make(directory: Path) -> CatalogSettings:
        settings = CatalogSettings(directory).ensure_dirs()
        shutil.copyfile(initialized_catalog, settings.catalog_db)
        return settings

    return make


@pytest.fixture(scope="session")
def shared_settings(tmp_path_factory, new_settings) -> CatalogSettings:
    """One data directory for the whole session, served by ``shared_server``."""
    return new_settings(tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="session")
def shared_server(shared_settings) -> Iterator[EmbeddedServer]:
    """A real Tiled server subprocess shared by the tests (starting one takes seconds); tests
    that share it tell their runs apart by uid."""
    server = EmbeddedServer.start(shared_settings, stop_at_exit=False)
    yield server
    server.stop()


@pytest.fixture
def settings(request, tmp_path, new_settings) -> CatalogSettings:
    """The module's shared data directory when the test uses ``shared_server``, else its own."""
    if "shared_server" in request.fixturenames:
        return request.getfixturevalue("shared_settings")
    return new_settings(tmp_path / "data")


@pytest.fixture
def writers() -> Iterator[list]:
    """Collects writers made by a test and closes them at its end (no thread left behind)."""
    made: list = []
    yield made
    for writer in made:
        with contextlib.suppress(Exception):
            writer.close(timeout=5.0)


@pytest.fixture
def make_writer(writers):
    def make(uri, api_key, settings, **kwargs) -> CatalogWriter:
        kwargs.setdefault("retry_delay", (0.2, 1.0))
        writer = CatalogWriter(uri, api_key, settings=settings, **kwargs)
        writers.append(writer)
        return writer

    return make


def hdf5_frames(uri: str, dataset: str) -> np.ndarray:
    """The frames a detector wrote, read straight from its file (the ground truth)."""
    path = uri.replace("file://localhost", "", 1).replace("file://", "", 1)
    with h5py.File(Path(path), "r", swmr=True) as file:
        return file[dataset][()]


@pytest.fixture
def read_hdf5():
    return hdf5_frames
