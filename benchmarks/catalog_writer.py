"""Does the catalog keep pace? ``CatalogWriter`` batching by count and time, against the writer
before batching (``batch_size=1``: every event and frame its own request), in one run.

Two workloads, each run with both writers against the same embedded Tiled server (a
subprocess on loopback, SQLite + files in a temporary data directory):

- ``spectra``: a spectrum image on the digital twin (``plans.spectrum_image``, in-process
  twin): a survey image, then ``--spectra`` spectra of 2048 channels at grid positions,
  event pages of 256 as ``ophyd-stem run grid`` makes them;
- ``images``: ``bp.count`` of ``--images`` frames of 512² (HDF5 written by the detector,
  announced with StreamResource/StreamDatum), as survey series make them.

One table, the two writers side by side for each workload. Columns: ``RE s`` the
RunEngine's time from start to stop; ``in catalog after stop`` how long after the stop
document the catalog held the whole run (``flush``); ``x RE`` that over the RunEngine's time;
``RE cost/item`` the time the RunEngine spent inside the writer per spectrum or per image
(median, p95); ``load`` the 1-minute load average at the end of the row. The ``batch_size=1``
writer needs many minutes for the big runs, so it is waited for ``--baseline-timeout``
seconds (60) after its stop, then stopped, and its completion estimated from the pace it
wrote events at (``> 60 s (~540 est.)``).
Targets (issue 11): the 2,000-spectrum run in the catalog within 2x the RunEngine's time of
its stop, 200 images of 512² within 1.5x, the RunEngine's cost per image <= 10 ms.

``--busy N`` starts N CPU-bound processes beside the runs (and stops them at the end), to
show the writer keeping pace on a machine busy with other work. The load average is printed
before and after. Run::

    python benchmarks/catalog_writer.py                  # 2000 spectra, 200 images (~4 min)
    python benchmarks/catalog_writer.py --busy 2         # with two CPU hogs beside it
    python benchmarks/catalog_writer.py --quick          # 500 spectra, 50 images (~1 min)
    python benchmarks/catalog_writer.py --baseline-timeout 1200   # wait for the baseline
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import numpy as np
from bluesky import RunEngine
from ophyd_async.core import (
    DetectorDataLogic,
    PathProvider,
    StandardDetector,
    StaticPathProvider,
    StreamableDataProvider,
    StreamResourceDataProvider,
    StreamResourceInfo,
    UUIDFilenameProvider,
    init_devices,
)
from ophyd_async.sim import PatternGenerator
from ophyd_async.sim._blob_acquire_logic import BlobAcquireLogic
from ophyd_async.sim._blob_trigger_logic import BlobTriggerLogic
from ophyd_async.sim._pattern_generator import DATA_PATH

from ophyd_stem.catalog import CatalogSettings, CatalogWriter, EmbeddedServer
from ophyd_stem.catalog._runs import per_document_writer_factory

TARGETS = {"spectra": 2.0, "images": 1.5}  # catalog behind / RunEngine time
IMAGE_COST_TARGET_MS = 10.0


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
                )
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


class Timed:
    """Wraps the writer: the time the RunEngine spends in it, per spectrum or image."""

    def __init__(self, callback: Callable) -> None:
        self.callback = callback
        self.per_item: List[float] = []
        self.stop_time: Optional[float] = None
        self._pending = 0.0

    def __call__(self, name: str, doc: dict) -> None:
        start = time.perf_counter()
        self.callback(name, doc)
        spent = time.perf_counter() - start
        if name == "stop":
            self.stop_time = time.perf_counter()
        if name in ("stream_datum", "event", "event_page"):
            self._pending += spent
        if name == "event":
            self.per_item.append(self._pending)
            self._pending = 0.0
        elif name == "event_page":
            rows = len(doc["seq_num"])
            self.per_item.extend([self._pending / rows] * rows)
            self._pending = 0.0


def _ms(values: List[float], q: float) -> float:
    return 1e3 * float(np.quantile(values, q)) if values else float("nan")


def measure(
    RE: RunEngine, plan: Callable[[], Any], writer: CatalogWriter, timeout: float
) -> Dict[str, Any]:
    """One run through ``writer``: the RunEngine's time, then how long after the stop
    document the catalog held it all (waiting at most ``timeout`` s; when that is not
    enough, the rest is estimated from the rate the writer wrote events at until then)."""
    timed = Timed(writer)
    token = RE.subscribe(timed)
    start = time.perf_counter()
    try:
        RE(plan())
    finally:
        RE.unsubscribe(token)
    stop = timed.stop_time or time.perf_counter()
    complete = writer.flush(timeout=timeout)
    behind = time.perf_counter() - stop
    status = writer.status()
    estimate = None
    if not complete and status.written_events:
        # events written per second since the run began, the rest at that pace
        rate = status.written_events / (time.perf_counter() - start)
        estimate = behind + (status.received_events - status.written_events) / rate
    return {
        "run": stop - start,
        "behind": behind,
        "estimate": estimate,
        "complete": complete,
        "events": f"{status.written_events}/{status.received_events}",
        "cb_med": _ms(timed.per_item, 0.5),
        "cb_p95": _ms(timed.per_item, 0.95),
        "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
    }


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on this platform
        return "n/a"


def start_hogs(n: int) -> List[subprocess.Popen]:
    return [
        subprocess.Popen([sys.executable, "-c", "while 1: pass"], stdin=subprocess.DEVNULL)
        for _ in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spectra", type=int, default=2000, help="spectra in the grid run")
    parser.add_argument("--images", type=int, default=200, help="images in the image run")
    parser.add_argument("--size", type=int, default=512, help="image side, px")
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound processes beside it")
    parser.add_argument(
        "--baseline-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the batch_size=1 writer after its stop; past that its "
        "completion is estimated from its pace (it needs many minutes for 2,000 spectra)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="500 spectra, 50 images, 20 s for the baseline (a first look in about a minute)",
    )
    args = parser.parse_args()
    if args.quick:
        args.spectra, args.images = min(args.spectra, 500), min(args.images, 50)
        args.baseline_timeout = min(args.baseline_timeout, 20.0)

    import plans
    from ophyd_stem.sim import twin_microscope

    data_dir = Path(tempfile.mkdtemp(prefix="ophyd-stem-bench-"))
    settings = CatalogSettings(data_dir)
    loads = [load_average()]
    hogs = start_hogs(args.busy)
    server = EmbeddedServer.start(settings, idle_timeout=0)
    RE = RunEngine({})
    rows: List[Dict[str, Any]] = []
    twin = None
    try:
        twin = twin_microscope("nanowire", mode="local", assets_dir=settings.assets_dir)
        provider = StaticPathProvider(UUIDFilenameProvider(), settings.assets_dir)
        with init_devices():
            camera = ImageDetector(provider, args.size)
        cols = 50
        grid = (max(args.spectra // cols, 1), min(args.spectra, cols))
        RE(bps.mv(twin.scan.width, 128, twin.scan.height, 128))  # as `ophyd-stem run grid`
        workloads = {
            "spectra": (
                lambda: plans.spectrum_image(twin.scan, twin.eels_points, *grid),
                grid[0] * grid[1],
            ),
            "images": (lambda: bp.count([camera], num=args.images), args.images),
        }
        # Warm up (imports, first files, first connections) outside the figures.
        warm = CatalogWriter(server.uri, server.api_key, settings=settings)
        token = RE.subscribe(warm)
        RE(plans.spectrum_image(twin.scan, twin.eels_points, 2, 2))
        RE(bp.count([camera], num=2))
        warm.close(timeout=120)
        RE.unsubscribe(token)
        writers = {
            "batching (default)": {},
            "batch_size=1 (before)": dict(batch_size=1, writer_factory=per_document_writer_factory),
        }
        for workload, (plan, count) in workloads.items():
            for label, options in writers.items():
                writer = CatalogWriter(server.uri, server.api_key, settings=settings, **options)
                timeout = args.baseline_timeout if "before" in label else 600.0
                try:
                    row = measure(RE, plan, writer, timeout)
                finally:
                    # A baseline cut short stops writing here (the writer would warn that its
                    # connection was cut with a document on its way: expected, not news).
                    quiet = logging.getLogger("ophyd_stem.catalog.writer")
                    level = quiet.level
                    quiet.setLevel(logging.ERROR)
                    # TiledWriter's "forcing a retry" from the request cut short, maybe later
                    logging.getLogger("bluesky_tiled_plugins").setLevel(logging.ERROR)
                    try:
                        writer.close(timeout=0)
                    finally:
                        quiet.setLevel(level)
                row.update(workload=workload, writer=label, count=count)
                rows.append(row)
                print(f"  {workload} ({count}) {label}: done", flush=True)
    finally:
        loads.append(load_average())
        for hog in hogs:
            hog.kill()
            hog.wait()
        if twin is not None:
            twin.sim_bridge.close()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    machine = platform.processor() or platform.machine()
    print(
        f"\n{machine}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"{args.busy} CPU-bound process(es) beside the runs; "
        f"load average (1, 5, 15 min) before: {loads[0]}, after: {loads[1]}"
    )
    header = (
        f"{'workload':<14} {'writer':<22} {'RE s':>7} {'in catalog after stop':>22} "
        f"{'x RE':>13} {'RE cost/item med':>16} {'p95':>8} {'load':>5} {'events':>11}  target"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = row["behind"] / row["run"] if row["run"] else float("nan")
        target = TARGETS[row["workload"]]
        if row["complete"]:
            behind, times = f"{row['behind']:.2f} s", f"{ratio:.2f}"
        else:  # cut short: at least this long; the estimate from the writer's pace
            estimate = row["estimate"]
            behind = f"> {row['behind']:.0f} s" + (
                f" (~{estimate:.0f} est.)" if estimate is not None else ""
            )
            times = f"> {ratio:.1f}" + (
                f" (~{estimate / row['run']:.0f})" if estimate is not None else ""
            )
        verdict = f"<= {target}x " + ("met" if row["complete"] and ratio <= target else "NOT met")
        print(
            f"{row['workload'] + ' ' + str(row['count']):<14} {row['writer']:<22} "
            f"{row['run']:>7.2f} {behind:>22} {times:>13} {row['cb_med']:>14.2f}ms "
            f"{row['cb_p95']:>6.2f}ms {row['load']:>5.1f} {row['events']:>11}  {verdict}"
        )
    image_cost = max(
        row["cb_p95"]
        for row in rows
        if row["workload"] == "images" and row["writer"] == "batching (default)"
    )
    print(
        f"\nRunEngine cost per image (batching writer, p95): {image_cost:.2f} ms, "
        f"target <= {IMAGE_COST_TARGET_MS:.0f} ms: "
        + ("met" if image_cost <= IMAGE_COST_TARGET_MS else "NOT met")
    )
    print(
        "in catalog after stop: from the stop document to the catalog holding the whole run; "
        "x RE: that over the RunEngine's time; RE cost/item: time the RunEngine spent in the "
        "writer per spectrum or image; load: 1-min load average when the row was measured"
    )


if __name__ == "__main__":
    main()
