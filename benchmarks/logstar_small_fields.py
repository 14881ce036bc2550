"""LoG*'s pixel size on small fields: crops of the real graphene image, before and now.

Run from the repository root (under a minute)::

    python benchmarks/logstar_small_fields.py

The real ``G-Si-2nm.npy`` (graphene, 256 x 256, 0.00771 nm/px from its reference atoms' own
lattice: 28 px per 100 spacing) cropped to fields from 256 x 256 down to 48 x 48, each at
three places (top left, bottom right, centre). For each crop, side by side:

* **before**: what the agent used without a calibration until now: the FFT's reading
  through a Hann window, used whenever it found a scale, with a warning when doubtful;
* **now**: what the agent uses (``LoGStarAgent`` without a pixel size): the FFT through a
  Hann window, else a Tukey window; a reading that is not clear, or only seen through the
  Tukey window, is refused unless the atoms' spacing confirms it within 5 %, and the atoms'
  spacing (``agents.logstar.neighbours``) is used instead, reported; with neither, an error
  asking for the pixel size;
* **spacing**: the atoms' spacing alone.

Each entry: the error against 0.00771 nm/px and where the value came from (``fft``: a clear
reading; ``fft+nn``: a doubtful one the spacing confirmed; ``nn``: the spacing, the FFT
refused; ``!``: with a warning; ``ERR``: refused altogether). Prints the load average.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.logstar import LoGStarAgent, get_lattice  # noqa: E402
from agents.logstar.calibration import estimate_pixel_size  # noqa: E402
from agents.logstar.neighbours import estimate_from_neighbours  # noqa: E402
from agents.logstar.scalespace import prepare_image  # noqa: E402

DATA = REPO.parent / "shared" / "data"
SIZES = [(256, 256), (200, 200), (160, 160), (128, 256), (97, 256), (128, 128), (112, 112),
         (96, 96), (80, 80), (64, 64), (48, 48)]  # fmt: skip


def reference_pixel(atoms: np.ndarray) -> float:
    """nm/px from the reference atoms' second neighbours (one cell, 0.246 nm, apart)."""
    d, _ = cKDTree(atoms).query(atoms, k=10)
    nn = np.median(d[:, 1])
    return 0.246 / float(np.mean(d[(d > 1.5 * nn) & (d < 1.9 * nn)]))


def before(crop: np.ndarray, px: float) -> str:
    try:
        e = estimate_pixel_size(crop, get_lattice("graphene"), window="hann")
    except ValueError:
        return "ERR"
    doubtful = not e.clear or e.ambiguity > 0.8
    return f"{100 * (e.pixel_size_nm / px - 1):+.1f}% fft{'!' if doubtful else ''}"


def now(crop: np.ndarray, px: float) -> str:
    agent = LoGStarAgent("graphene")
    try:
        used = agent._pixel_for(None, crop)  # what observe() does first, without LoG*
    except ValueError:
        return "ERR"
    info = agent.pixel_size_info
    source = {"fft": "fft", "neighbours": "nn"}[info["source"]]
    if info.get("confirmed_by"):
        source += "+nn"
    return f"{100 * (used / px - 1):+.1f}% {source}{'!' if 'warning' in info else ''}"


def spacing(crop: np.ndarray, px: float) -> str:
    e = estimate_from_neighbours(crop, get_lattice("graphene"))
    return "-" if e is None else f"{100 * (e.pixel_size_nm / px - 1):+.1f}% (n {e.n_atoms})"


def main(argv: Optional[Sequence[str]] = None) -> int:
    if not (DATA / "G-Si-2nm.npy").is_file():
        print(f"G-Si-2nm.npy is not in {DATA}")
        return 1
    logging.disable(logging.WARNING)  # the agent logs each refusal; the table says it
    image = prepare_image(np.load(DATA / "G-Si-2nm.npy"))
    px = reference_pixel(np.load(DATA / "G-Si-2nm-coords.npy")[:, :2])
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} cores")
    print(f"real G-Si-2nm crops; reference {px:.5f} nm/px (error of each reading against it)\n")
    header = f"{'crop':>9s}  {'place':12s}  {'before':14s}  {'now':14s}  {'spacing':16s}"
    print(header)
    print("-" * len(header))
    counts = {"before": [0, 0, 0], "now": [0, 0, 0]}  # within 5 %, wrong by > 5 %, refused
    for rows, cols in SIZES:
        places = {
            "top left": (0, 0),
            "bottom right": (256 - rows, 256 - cols),
            "centre": ((256 - rows) // 2, (256 - cols) // 2),
        }
        for name, (r, c) in places.items():
            crop = image[r : r + rows, c : c + cols]
            cells: List[str] = [before(crop, px), now(crop, px), spacing(crop, px)]
            for key, text in zip(("before", "now"), cells):
                if text == "ERR":
                    counts[key][2] += 1
                else:
                    counts[key][0 if abs(float(text.split("%")[0])) <= 5 else 1] += 1
            print(
                f"{rows:>4d}x{cols:<4d}  {name:12s}  {cells[0]:14s}  {cells[1]:14s}  {cells[2]:16s}"
            )
    for key, (good, wrong, refused) in counts.items():
        print(f"{key:7s} within 5 %: {good}, wrong by more than 5 %: {wrong}, refused: {refused}")
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
