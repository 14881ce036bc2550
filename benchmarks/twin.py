"""How long the digital twin takes to compute each acquisition, beside the real instrument.

The baseline is the microscope itself: the instrument time the twin reports for the same
acquisition (its timing model, from the first paper's timing table). The twin must never be
the slowest part of a plan, so every row should show a large speed-up. Run::

    python benchmarks/twin.py            # about a minute
    python benchmarks/twin.py --quick    # fewer repetitions, no 1024² images

Rows: survey images at 256², 512² and 1024² pixels (32 µs dwell) for an atomic-resolution
sample (graphene, SrTiO3; field of view grows with the image so the sampling stays that of
the default 256² field) and a nanoscale one (nanowire, nanoparticles; fixed field of view),
one spectrum, and spectra at 137 points (the first paper's edge workflow) and at 128×128 =
16384 points (its full-grid baseline) with 2048 channels. Sample construction and the first
(cache-filling) acquisition are timed separately.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import Callable, List, Tuple

import numpy as np

from dm_bridge.backends.twin import TwinBackend


def _time(fn: Callable[[], float], repeat: int) -> Tuple[float, float]:
    """(median compute seconds, instrument seconds of one call)."""
    walls: List[float] = []
    instrument = 0.0
    for _ in range(repeat):
        t = time.perf_counter()
        instrument = fn()
        walls.append(time.perf_counter() - t)
    return statistics.median(walls), instrument


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, no 1024²")
    args = parser.parse_args()
    repeat = 2 if args.quick else 5
    sizes = (256, 512) if args.quick else (256, 512, 1024)
    rows: List[Tuple[str, str, str, float, float]] = []

    for name in ("graphene", "srtio3", "nanowire", "nanoparticles"):
        t = time.perf_counter()
        twin = TwinBackend(name, seed=0)
        build = time.perf_counter() - t
        t = time.perf_counter()
        first = twin.acquire_image().instrument_time
        rows.append(
            (name, "build sample + first image", "default", build + time.perf_counter() - t, first)
        )
        atomic = name in ("graphene", "srtio3")
        base_fov = twin.scan.field_of_view
        base_width = twin.scan.width
        for n in sizes:
            fov = base_fov * n / base_width if atomic else base_fov
            twin.set_scan_parameters(width=n, height=n, field_of_view=fov, dwell_time=32e-6)
            twin.acquire_image()  # fill caches for this field
            wall, inst = _time(lambda t=twin: t.acquire_image().instrument_time, repeat)
            rows.append((name, "image", f"{n}² over {fov:g} nm", wall, inst))

    twin = TwinBackend("nanowire", seed=0)
    twin.set_eels_parameters(exposure=0.01, channels=2048)
    twin.acquire_spectrum()
    wall, inst = _time(lambda: twin.acquire_spectrum().instrument_time, repeat)
    rows.append(("nanowire", "spectrum", "1 × 2048 ch", wall, inst))
    rng = np.random.default_rng(0)
    for n in (137, 16384):
        pts = rng.uniform(0, 127, size=(n, 2))
        twin.acquire_spectra_at_points(pts[:10])
        reps = repeat if n < 1000 else max(1, repeat // 2)
        wall, inst = _time(lambda p=pts: twin.acquire_spectra_at_points(p).instrument_time, reps)
        rows.append(("nanowire", "spectra at points", f"{n} × 2048 ch", wall, inst))
    twin = TwinBackend("nanoparticles", seed=0)
    pts = rng.uniform(0, 127, size=(16384, 2))
    twin.acquire_spectra_at_points(pts[:10])
    wall, inst = _time(lambda: twin.acquire_spectra_at_points(pts).instrument_time, 1)
    rows.append(("nanoparticles", "spectra at points", "16384 × 2048 ch", wall, inst))
    twin.acquire_image()
    t = time.perf_counter()
    twin.get_truth()  # not an instrument command: no microscope time to compare with
    rows.append(
        ("nanoparticles", "get_truth (with target map)", "128²", time.perf_counter() - t, 0.0)
    )

    print(
        f"twin benchmark on {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )
    head = (
        f"{'sample':<14} {'acquisition':<29} {'size':<22} {'twin (s)':>9} "
        f"{'microscope (s)':>15} {'speed-up':>9}"
    )
    print(head)
    print("-" * len(head))
    for sample, what, size, wall, inst in rows:
        speed = f"{inst / wall:9.0f}" if inst > 0 else f"{'-':>9}"
        print(f"{sample:<14} {what:<29} {size:<22} {wall:9.4f} {inst:15.2f} {speed}")


if __name__ == "__main__":
    main()
