"""The DM bridge against the existing DM server's way (Pyro5 sending ``array.tolist()``).

Both servers run in this process, each in a background thread, on loopback, in front of the
same kind of instrument: the minimal backend with ``time_scale=0`` and its arrays prepared
ahead, so that the table measures the transport and not the instrument. Run::

    python benchmarks/bridge.py            # about a minute
    python benchmarks/bridge.py --quick    # a few seconds; fewer repetitions

Targets (issue 2): small calls <= 150 µs median, a 512² float32 image <= 1 ms, and >= 500x
faster than Pyro5 + tolist() for images.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import threading
import time
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import Pyro5.api
import zmq

from dm_bridge.backends.base import (
    EELSParameters,
    ImageAcquisition,
    ScanParameters,
    SpectrumAcquisition,
    energy_axis,
)
from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.client import BridgeClient
from dm_bridge.server import Server


class PreparedBackend(MinimalBackend):
    """The minimal instrument with its arrays made once, so only the transport is timed."""

    def __init__(self) -> None:
        super().__init__(time_scale=0.0)
        self._images: Dict[Tuple[int, int], ImageAcquisition] = {}

    def _do_acquire_image(self, scan: ScanParameters) -> ImageAcquisition:
        key = (scan.width, scan.height)
        if key not in self._images:
            self._images[key] = super()._do_acquire_image(scan)
        return self._images[key]

    def _do_acquire_spectra_at_points(
        self, eels: EELSParameters, points: np.ndarray
    ) -> SpectrumAcquisition:
        axis = energy_axis(eels)
        height = 1000.0 + 10.0 * points[:, 0] + points[:, 1]
        spectra = (height[:, None] * np.exp(-0.5 * axis**2)[None, :]).astype(np.float32)
        return SpectrumAcquisition(spectra, axis, instrument_time=len(points) * eels.exposure)


@Pyro5.api.expose
class LegacyServer:
    """What the existing DM server offers, its way: one call per action, arrays as lists."""

    def __init__(self, backend: PreparedBackend) -> None:
        self.backend = backend

    def get_beam_position(self) -> List[float]:
        return list(self.backend.get_beam_position())

    def set_beam_position(self, x: float, y: float) -> None:
        self.backend.set_beam_position(x, y)

    def set_image_size(self, width: int, height: int) -> None:
        self.backend.set_scan_parameters(width=width, height=height)

    def acquire_image(self) -> list:
        return self.backend.acquire_image().images["HAADF"].tolist()

    def acquire_spectrum(self) -> list:
        return self.backend.acquire_spectrum().spectra.tolist()


def timings(call: Callable[[], Any], repeat: int, warmup: int = 3) -> List[float]:
    for _ in range(warmup):
        call()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def speedup(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:,.0f}x"


def p99(values: List[float]) -> float:
    return float(np.percentile(values, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (seconds)")
    args = parser.parse_args()
    q = args.quick
    logging.getLogger("dm_bridge").setLevel(logging.WARNING)

    bridge = Server(PreparedBackend(), port=0).start()
    dm = BridgeClient(bridge.endpoint, timeout=120)
    daemon = Pyro5.api.Daemon(host="127.0.0.1")
    uri = daemon.register(LegacyServer(PreparedBackend()))
    pyro_thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    pyro_thread.start()
    legacy = Pyro5.api.Proxy(uri)
    rows: List[Tuple[str, str, str, str, str]] = []

    def row(name: str, ours: float, theirs: float, target: str, unit: str = "time") -> None:
        if unit == "rate":
            ratio = ours / theirs
            rows.append((name, f"{ours:,.0f}/s", f"{theirs:,.0f}/s", speedup(ratio), target))
        else:
            rows.append((name, fmt(ours), fmt(theirs), speedup(theirs / ours), target))

    try:
        small = 300 if q else 3000
        small_pyro = 100 if q else 1000
        for name, ours, theirs in (
            ("get_beam_position", dm.get_beam_position, legacy.get_beam_position),
            (
                "set_beam_position",
                lambda: dm.set_beam_position(10.5, 20.25),
                lambda: legacy.set_beam_position(10.5, 20.25),
            ),
        ):
            a, b = timings(ours, small), timings(theirs, small_pyro)
            row(f"{name}, median", statistics.median(a), statistics.median(b), "<= 150 µs")
            row(f"{name}, p99", p99(a), p99(b), "")

        for size, n_ours, n_theirs in ((128, 200, 20), (512, 100, 5), (1024, 40, 3)):
            if q:
                n_ours, n_theirs = max(10, n_ours // 10), max(1, n_theirs // 3)
            dm.set_scan_parameters(width=size, height=size, signals=["HAADF"])
            legacy.set_image_size(size, size)
            a = timings(dm.acquire_image, n_ours)
            b = timings(lambda: np.asarray(legacy.acquire_image(), np.float32), n_theirs, 1)
            target = "<= 1 ms, >= 500x" if size == 512 else ">= 500x"
            row(f"image {size}² float32", statistics.median(a), statistics.median(b), target)

        a = timings(dm.acquire_spectrum, 100 if q else 1000)
        b = timings(lambda: np.asarray(legacy.acquire_spectrum(), np.float32), 30 if q else 300)
        row("spectrum 2048 ch", statistics.median(a), statistics.median(b), "")

        rng = np.random.default_rng(0)
        points = rng.uniform(0, 511, size=(1000, 2))
        dm.set_scan_parameters(width=512, height=512)
        legacy.set_image_size(512, 512)
        reps = 3 if q else 10
        a = timings(lambda: dm.acquire_spectra_at_points(points), reps, 1)
        few = points[: (30 if q else 200)]

        def legacy_points() -> None:
            for x, y in few:
                legacy.set_beam_position(float(x), float(y))
                np.asarray(legacy.acquire_spectrum(), np.float32)

        def bridge_point_by_point() -> None:
            for x, y in few:
                dm.set_beam_position(float(x), float(y))
                dm.acquire_spectrum()

        b = timings(legacy_points, 1, 0)
        c = timings(bridge_point_by_point, 1, 0)
        ours_rate = len(points) / statistics.median(a)
        theirs_rate = len(few) / statistics.median(b)
        row("spectra at points (1000/call)", ours_rate, theirs_rate, "", unit="rate")
        row("  same, one call per point", len(few) / c[0], theirs_rate, "", unit="rate")
    finally:
        dm.close()
        bridge.stop()
        legacy._pyroRelease()
        daemon.shutdown()
        pyro_thread.join(5)

    print(
        f"DM bridge vs Pyro5 + tolist() on loopback, servers in this process "
        f"(Python {platform.python_version()}, pyzmq {zmq.__version__}, "
        f"Pyro5 {Pyro5.__version__}, serializer {Pyro5.config.SERIALIZER})"
        + (", --quick" if q else "")
    )
    header = ("operation", "DM bridge", "Pyro5+tolist", "speed-up", "target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    line = " | ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(v.ljust(w) for v, w in zip(r, widths)))


if __name__ == "__main__":
    main()
