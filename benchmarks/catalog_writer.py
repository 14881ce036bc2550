"""The RunEngine-side cost of the catalog: decoupled ``CatalogWriter`` against ``TiledWriter``.

Every point acquires an image (512² or 1024², written to HDF5 by the detector and announced
with StreamResource/StreamDatum) and a 2048-channel float32 spectrum (inline in the event).
Each configuration runs the same ``bp.count`` in this process against the same embedded
Tiled server (a subprocess on loopback, SQLite + files in a temporary data directory):

- ``no catalog``: the RunEngine alone, the floor;
- ``TiledWriter sync``: ``bluesky_tiled_plugins.TiledWriter(client, batch_size=1)``
  subscribed directly, the synchronous baseline;
- ``TiledWriter batched``: its default batching (the whole run held until the stop);
- ``CatalogWriter``: spool + queue on the RunEngine thread, TiledWriter on a background
  thread, each point written as it comes (``b=50``: 50 points per request, for fast scans).

Columns: ``cb`` is the time spent inside the catalog callback per point (the documents of one
point: its StreamDatums and its Event), ``point`` the wall time between successive events,
``+point`` that minus the no-catalog floor (what the catalog adds, including a background
thread's share of the CPU), ``run`` the RunEngine's total, ``in catalog`` the time until the
catalog has the whole run (``flush`` for the decoupled writer). Goal: cb <= 10 ms per point.
Run::

    python benchmarks/catalog_writer.py               # 50 points per run, about 2 minutes
    python benchmarks/catalog_writer.py --points 20   # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import bluesky.plans as bp
import numpy as np
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from ophyd_async.core import (
    Array1D,
    AsyncStatus,
    DetectorDataLogic,
    PathProvider,
    StandardDetector,
    StandardReadable,
    StaticPathProvider,
    StreamableDataProvider,
    StreamResourceDataProvider,
    StreamResourceInfo,
    UUIDFilenameProvider,
    init_devices,
    soft_signal_r_and_setter,
)
from ophyd_async.core import StandardReadableFormat as Format
from ophyd_async.sim import PatternGenerator
from ophyd_async.sim._blob_acquire_logic import BlobAcquireLogic
from ophyd_async.sim._blob_trigger_logic import BlobTriggerLogic
from ophyd_async.sim._pattern_generator import DATA_PATH, SUM_PATH

from ophyd_stem.catalog import CatalogSettings, CatalogWriter, EmbeddedServer, open_catalog

SPECTRUM_CHANNELS = 2048


class _SizedImageLogic(DetectorDataLogic):
    """ophyd-async's blob detector data logic with a chosen frame size (it fixes 320x240)."""

    def __init__(self, path_provider: PathProvider, generator: PatternGenerator, size: int):
        self.path_provider = path_provider
        self.generator = generator
        self.size = size

    async def prepare_unbounded(self, datakey_name: str) -> StreamableDataProvider:
        info = self.path_provider(datakey_name)
        self.generator.open_file(info.directory_path / f"{info.filename}.h5", self.size, self.size)
        return StreamResourceDataProvider(
            uri=f"{info.directory_uri}{info.filename}.h5",
            resources=[
                StreamResourceInfo(
                    data_key=datakey_name,
                    shape=(self.size, self.size),
                    chunk_shape=(1, self.size, self.size),
                    dtype_numpy=np.dtype(np.uint8).str,
                    parameters={"dataset": DATA_PATH},
                ),
                StreamResourceInfo(
                    data_key=f"{datakey_name}-sum",
                    shape=(),
                    chunk_shape=(1024,),
                    dtype_numpy=np.dtype(np.int64).str,
                    parameters={"dataset": SUM_PATH},
                ),
            ],
            mimetype="application/x-hdf5",
            collections_written_signal=self.generator.images_written,
        )

    async def stop(self) -> None:
        self.generator.close_file()

    def get_hinted_fields(self, datakey_name: str):
        return [datakey_name]


class ImageDetector(StandardDetector):
    """Writes one size x size frame per point to HDF5, as fast as the file takes it."""

    def __init__(self, path_provider: PathProvider, size: int, name: str = "") -> None:
        async def no_wait(_seconds: float) -> None:
            await asyncio.sleep(0)

        generator = PatternGenerator(sleep=no_wait)
        self.add_detector_logics(
            BlobTriggerLogic(pattern_generator=generator),
            BlobAcquireLogic(pattern_generator=generator),
            _SizedImageLogic(path_provider, generator, size),
        )
        super().__init__(name=name)


class Spectrometer(StandardReadable):
    """A float32 spectrum per trigger (inline in the event document)."""

    def __init__(self, name: str = "") -> None:
        self._rng = np.random.default_rng(0)
        with self.add_children_as_readables(Format.HINTED_SIGNAL):
            self.spectrum, self._set = soft_signal_r_and_setter(Array1D[np.float32], units="counts")
        super().__init__(name=name)

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        self._set(self._rng.poisson(100.0, SPECTRUM_CHANNELS).astype(np.float32))


class Timed:
    """Wraps a RunEngine callback: the time spent in it, attributed to each point."""

    def __init__(self, callback: Optional[Callable]) -> None:
        self.callback = callback
        self.per_point: List[float] = []
        self.event_times: List[float] = []
        self._pending = 0.0

    def __call__(self, name: str, doc: dict) -> None:
        start = time.perf_counter()
        if self.callback is not None:
            self.callback(name, doc)
        spent = time.perf_counter() - start
        if name in ("stream_datum", "event"):
            self._pending += spent
        if name == "event":
            self.per_point.append(self._pending)
            self._pending = 0.0
            self.event_times.append(start)


def _ms(values: List[float], q: float) -> float:
    return 1e3 * float(np.quantile(values, q)) if values else float("nan")


def run_config(label, RE, detectors, points, make_callback, finish) -> Dict[str, float]:
    callback = make_callback()
    timed = Timed(callback)
    token = RE.subscribe(timed)
    start = time.perf_counter()
    RE(bp.count(detectors, num=points))
    run_s = time.perf_counter() - start
    finish(callback)
    in_catalog_s = time.perf_counter() - start
    RE.unsubscribe(token)
    steps = np.diff(timed.event_times).tolist()
    return {
        "label": label,
        "cb_med": _ms(timed.per_point, 0.5),
        "cb_p95": _ms(timed.per_point, 0.95),
        "pt_med": _ms(steps, 0.5),
        "pt_p95": _ms(steps, 0.95),
        "run": run_s,
        "catalog": in_catalog_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=50, help="points per run (default 50)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="ophyd-stem-bench-"))
    settings = CatalogSettings(data_dir)
    server = EmbeddedServer.start(settings)
    client = open_catalog(server.uri, server.api_key)
    RE = RunEngine({})
    rows = []
    writers: List[CatalogWriter] = []
    try:
        live = CatalogWriter(server.uri, server.api_key, settings=settings)
        writers.append(live)
        batched = CatalogWriter(server.uri, server.api_key, settings=settings, batch_size=50)
        writers.append(batched)
        for size in args.sizes:
            provider = StaticPathProvider(UUIDFilenameProvider(), settings.assets_dir)
            with init_devices():
                camera = ImageDetector(provider, size)
                eels = Spectrometer()
            detectors = [camera, eels]
            RE(bp.count(detectors, num=2))  # warm up: imports, first file, first connection
            nothing = lambda _cb: None  # noqa: E731
            configs = [
                ("no catalog", lambda: None, nothing),
                ("TiledWriter sync", lambda: TiledWriter(client, batch_size=1), nothing),
                ("TiledWriter batched", lambda: TiledWriter(client), nothing),
                ("CatalogWriter", lambda: live, lambda w: w.flush(600)),
                ("CatalogWriter b=50", lambda: batched, lambda w: w.flush(600)),
            ]
            for label, make, finish in configs:
                row = run_config(label, RE, detectors, args.points, make, finish)
                row["size"] = size
                rows.append(row)
                print(f"  {size}² {label}: done", flush=True)
    finally:
        for writer in writers:
            writer.close()
        client.context.close()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    machine = platform.processor() or platform.machine()
    print(f"\n{machine}, Python {platform.python_version()}, {args.points} points per run, "
          f"image + {SPECTRUM_CHANNELS}-channel spectrum per point")  # fmt: skip
    header = (f"{'image':>6} {'writer':<20} {'cb med':>8} {'cb p95':>8} {'point med':>10} "
              f"{'p95':>8} {'+point':>8} {'run s':>7} {'in catalog s':>13}")  # fmt: skip
    print(header)
    print("-" * len(header))
    floors = {row["size"]: row["pt_med"] for row in rows if row["label"] == "no catalog"}
    for row in rows:
        added = row["pt_med"] - floors[row["size"]]
        print(
            f"{row['size']:>5}² {row['label']:<20} {row['cb_med']:>6.2f}ms {row['cb_p95']:>6.2f}ms "
            f"{row['pt_med']:>8.2f}ms {row['pt_p95']:>6.2f}ms {added:>6.2f}ms "
            f"{row['run']:>7.2f} {row['catalog']:>13.2f}"
        )
    decoupled = [row for row in rows if row["label"].startswith("CatalogWriter")]
    worst = max(row["cb_p95"] for row in decoupled)
    print(f"\ngoal: <= 10 ms per point on the RunEngine side; CatalogWriter p95 {worst:.2f} ms: "
          f"{'met' if worst <= 10 else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
