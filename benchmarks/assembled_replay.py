"""A spectrum image assembled from real recordings, for the DKL benchmark and the command.

The project has no real spectrum image recorded together with its survey image, so one is
assembled from the real data in ``../shared/data`` (none of it generated here):

* **survey**: the real STEM annular-bright-field image ``stem_abf_data.hspy`` (512², 0.0093
  nm/px), binned 4 x 4 to 0.0373 nm/px as a spectrum image's own survey would be, and cut to
  a ``rows x cols`` field (48 x 80 by default: not square, on purpose). Its columns come in
  two kinds, large dark discs and smaller, fainter ones between them.
* **spectra**: the real EELS spectra, on one energy axis (395-861 eV, 1 eV per channel):
  the SrTiO3 ones (line-scan positions 0-2 and the single spectrum ``EELS_STO.dm3``, whose
  energy calibration is 3 eV off and is aligned on its Ti L2,3 edge) and the
  La0.7Sr0.3MnO3 ones (line-scan positions 4-9). Each is scaled to the same pre-edge counts,
  and the SrTiO3 ones to the same Ti L2,3 signal, so their own noise, fine structure and the
  few small spikes they hold stay theirs while the Ti content is one number.
* **where each goes** (the structure-property rule, decided before any agent ran on it):
  the Ti L2,3 signal sits on the *small* columns, as in an atomic-resolution map of the
  B-site: every pixel gets the mixture ``w * SrTiO3 + (1 - w) * LSMO`` with
  ``w = 0.2 + 0.8 * max_k exp(-d_k**2 / (2 * 1.5**2))``, ``d_k`` its distance in pixels to
  the centre of small column ``k`` (found in the binned image by its local minimum and
  classed small/large by Otsu's threshold on the minima's depths, centres to sub-pixel by a
  parabola); 0.2 is the signal left between columns (delocalisation), 1.5 px (0.056 nm) the
  width of a column in an EELS map. Every small column holds the same Ti: nothing invented
  makes one column better than another. Which SrTiO3 and which LSMO spectrum a pixel gets is
  drawn at random (seeded), so neighbouring pixels carry different real noise.
* **spikes**: cosmic-ray hits as a raw spectrum image has them (the recordings themselves
  are already clean but for a few 2-3 % excursions): per spectrum a Poisson number (mean
  ``spikes_per_spectrum``) of hits, each 1 (60 %), 2 (30 %) or 3 (10 %) channels wide, of
  height 0.2-2 x the spectrum's median counts, at random energies.

**The true maximum**, honestly: the task is "find the strongest Ti L2,3 edge signal"
(``edge:420:450:455:475``: counts above a power-law background fitted at 420-450 eV,
integrated over 455-475 eV). The truth map is that scalarizer applied to every pixel's
spectrum *before the spikes were added*: what an exhaustive, spike-free scan of this
assembled field would give, real noise of the recordings included. Its maximum, over the
whole field, is the "true maximum"; a method's score after k spectra is the truth at the
best place it measured, over that maximum.

Held-out seeds: seeds draw the field from the *lower* half of the binned image (rows
64-127) when ``half="eval"`` and from the *upper* half (rows 0-63) when ``half="dev"``; the
DKL defaults were chosen on ``dev`` fields and twin seeds 100-109 only.

Run it to write one field as files the replay backend and the command read::

    python benchmarks/assembled_replay.py --seed 0 --out /tmp/assembled
    ophyd-stem run dkl --replay /tmp/assembled/si.npz --survey /tmp/assembled/survey.npz \\
        --scalarizer despike:edge:420:450:455:475
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agents.scalarizers import get_scalarizer  # noqa: E402
from dm_bridge.backends.recording import load_recording  # noqa: E402
from dm_bridge.backends.recording_arrays import write_array_file  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
FILES = {
    "survey": "stem_abf_data.hspy",
    "line_scan": "LSMO_STO_linescan.hspy",
    "sto": "EELS_STO.dm3",
}
#: the task: the Ti L2,3 edge signal above a power-law background (counts x eV)
SCALARIZER = "edge:420:450:455:475"
#: line-scan positions of each material (3 is the interface itself, not used)
STO_POSITIONS = (0, 1, 2)
LSMO_POSITIONS = (4, 5, 6, 7, 8, 9)
BIN = 4
ENERGY = np.arange(395.0, 862.0)  # eV, 1 eV per channel: the range all recordings share
COUNTS = 2.0e5  # counts per channel at 400-440 eV after scaling
FLOOR = 0.2  # Ti signal between columns, fraction of on-column
COLUMN_SIGMA = 1.5  # px of the binned image (0.056 nm)
HALVES = {"dev": (0, 64), "eval": (64, 128)}


@dataclass
class AssembledField:
    """One assembled field.

    Attributes:
        survey: ``(rows, cols)`` float32 survey image (real ABF counts, binned).
        spectra: ``(rows, cols, channels)`` float32 spectra as served (spikes included).
        clean: the same before the spikes were added.
        energy_axis: ``(channels,)`` eV.
        truth: ``(rows, cols)`` the task's scalar of the clean spectra.
        ti_weight: ``(rows, cols)`` the SrTiO3 fraction ``w`` of each pixel.
        pixel_size_nm: nm per pixel.
        info: how it was made (JSON-able).
    """

    survey: np.ndarray
    spectra: np.ndarray
    clean: np.ndarray
    energy_axis: np.ndarray
    truth: np.ndarray
    ti_weight: np.ndarray
    pixel_size_nm: float
    info: Dict[str, Any] = field(default_factory=dict)

    def write(self, out_dir: Any) -> Tuple[Path, Path]:
        """Write ``si.npz`` (spectra) and ``survey.npz`` (survey) in the replay's array
        layout; returns their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        si, survey = out / "si.npz", out / "survey.npz"
        write_array_file(
            si,
            {
                "spectra": self.spectra,
                "energy_axis": self.energy_axis,
                "spectrum_pixel_size": self.pixel_size_nm,
                "exposure": 0.5,  # the line scan's dwell time per spectrum
                "high_tension_kv": 200.0,
                "microscope": "assembled from real recordings: " + ", ".join(FILES.values()),
            },
        )
        write_array_file(
            survey,
            {
                "survey": self.survey,
                "signals": np.array(["ABF"]),
                "pixel_size": self.pixel_size_nm,
            },
        )
        return si, survey


def _on_axis(spectrum: np.ndarray, energy: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """Counts per 1 eV channel of :data:`ENERGY` (integrated, so finer channels add up)."""
    width = np.gradient(energy)
    lower = np.concatenate([energy - width / 2, [energy[-1] + width[-1] / 2]]) + shift
    cumulative = np.concatenate([[0.0], np.cumsum(spectrum * width)])
    edges = np.concatenate([ENERGY - 0.5, [ENERGY[-1] + 0.5]])
    return np.diff(np.interp(edges, lower, cumulative)) / 1.0  # 1 eV channels


def _ti_alignment(sto: np.ndarray, reference: np.ndarray) -> float:
    """Energy shift (eV) that puts a SrTiO3 spectrum's Ti L2,3 edge on the reference's."""
    shifts = np.arange(-6.0, 6.01, 0.25)
    band = (ENERGY >= 450) & (ENERGY <= 475)
    ref = np.gradient(reference[band])
    best, score = 0.0, -np.inf
    for dz in shifts:
        trial = np.interp(ENERGY, ENERGY + dz, sto)[band]
        c = np.corrcoef(np.gradient(trial), ref)[0, 1]
        if c > score:
            best, score = float(dz), c
    return best


def reference_spectra(data_dir: Any = SHARED) -> Dict[str, Any]:
    """The real spectra on :data:`ENERGY`, scaled: ``{"sto": (4, C), "lsmo": (6, C), ...}``."""
    data = Path(data_dir)
    line = load_recording(data / FILES["line_scan"])
    single = load_recording(data / FILES["sto"])
    rows = line.spectra.reshape(-1, line.spectra.shape[-1]).astype(np.float64)
    on_axis = [_on_axis(s, line.energy_axis) for s in rows]
    sto_line = np.array([on_axis[i] for i in STO_POSITIONS])
    raw_single = _on_axis(single.spectra.reshape(-1).astype(np.float64), single.energy_axis)
    shift = _ti_alignment(raw_single, sto_line.mean(axis=0))
    aligned = _on_axis(single.spectra.reshape(-1).astype(np.float64), single.energy_axis, shift)
    sto = np.vstack([sto_line, aligned[None]])
    lsmo = np.array([on_axis[i] for i in LSMO_POSITIONS])
    pre = (ENERGY >= 400) & (ENERGY <= 440)
    sto = COUNTS * sto / sto[:, pre].mean(axis=1, keepdims=True)
    lsmo = COUNTS * lsmo / lsmo[:, pre].mean(axis=1, keepdims=True)
    scalarize = get_scalarizer(SCALARIZER)
    ti = np.asarray(scalarize(sto, ENERGY))
    # same Ti everywhere: scale each SrTiO3 spectrum's edge signal to their mean (the
    # background scales with it, which keeps its pre-edge within 20 % of the others')
    sto = sto * (ti.mean() / ti)[:, None]
    return {
        "sto": sto,
        "lsmo": lsmo,
        "sto_alignment_ev": shift,
        "ti_signal_before_scaling": ti.tolist(),
    }


def small_columns(binned: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Centres ``(row, col)`` (sub-pixel) of the small and of the large columns."""
    from skimage.feature import peak_local_max
    from skimage.filters import threshold_otsu

    smooth = ndimage.gaussian_filter(binned, 0.75)
    peaks = peak_local_max(-smooth, min_distance=2, exclude_border=False)
    depth = np.median(smooth) - smooth[peaks[:, 0], peaks[:, 1]]
    small = depth < threshold_otsu(depth)
    # a parabola through each minimum and its neighbours: the centre to a fraction of a pixel
    centres = peaks.astype(np.float64)
    padded = np.pad(smooth, 1, mode="edge")
    for k, (r, c) in enumerate(peaks):
        r1, c1 = r + 1, c + 1
        for axis, (lo, mid, hi) in enumerate(
            (
                (padded[r1 - 1, c1], padded[r1, c1], padded[r1 + 1, c1]),
                (padded[r1, c1 - 1], padded[r1, c1], padded[r1, c1 + 1]),
            )
        ):
            curvature = lo - 2 * mid + hi
            if curvature > 0:
                centres[k, axis] += float(np.clip(0.5 * (lo - hi) / curvature, -0.5, 0.5))
    return centres[small], centres[~small]


def assemble(
    seed: int,
    half: str = "eval",
    rows: int = 48,
    cols: int = 80,
    spikes_per_spectrum: float = 1.0,
    data_dir: Any = SHARED,
) -> AssembledField:
    """Assemble one field (see the module docstring): seed -> crop, per-pixel spectra, spikes.

    Args:
        seed: draws where the field lies in its half, which real spectrum each pixel gets,
            and the spikes.
        half: ``"eval"`` (lower half of the image, the benchmark's held-out fields) or
            ``"dev"`` (upper half, for choosing settings).
        rows, cols: field size in pixels (up to 64 x 128).
        spikes_per_spectrum: mean number of cosmic-ray hits per spectrum (0: none).
    """
    if half not in HALVES:
        raise ValueError(f"half must be one of {sorted(HALVES)}, got {half!r}")
    lo, hi = HALVES[half]
    if not (8 <= rows <= hi - lo and 8 <= cols <= 512 // BIN):
        raise ValueError(f"field must be 8..{hi - lo} rows and 8..{512 // BIN} columns")
    data = Path(data_dir)
    abf = load_recording(data / FILES["survey"])
    image = next(iter(abf.survey.values())).astype(np.float64)
    n = image.shape[0] // BIN
    binned = image[: n * BIN, : n * BIN].reshape(n, BIN, n, BIN).mean(axis=(1, 3))
    pixel = abf.survey_x.scale * BIN
    rng = np.random.default_rng(seed)
    r0 = int(rng.integers(lo, hi - rows + 1))
    c0 = int(rng.integers(0, n - cols + 1))
    survey = binned[r0 : r0 + rows, c0 : c0 + cols].astype(np.float32)

    centres, _ = small_columns(binned)
    yy, xx = np.mgrid[r0 : r0 + rows, c0 : c0 + cols]
    nearest = np.full((rows, cols), np.inf)
    for cr, cc in centres:
        nearest = np.minimum(nearest, (yy - cr) ** 2 + (xx - cc) ** 2)
    weight = FLOOR + (1.0 - FLOOR) * np.exp(-nearest / (2 * COLUMN_SIGMA**2))

    refs = reference_spectra(data)
    pick_sto = rng.integers(0, len(refs["sto"]), size=(rows, cols))
    pick_lsmo = rng.integers(0, len(refs["lsmo"]), size=(rows, cols))
    w = weight[..., None]
    clean = w * refs["sto"][pick_sto] + (1.0 - w) * refs["lsmo"][pick_lsmo]

    spectra = clean.copy()
    channels = len(ENERGY)
    hits = rng.poisson(spikes_per_spectrum, size=(rows, cols))
    n_hits = 0
    for (r, c), count in np.ndenumerate(hits):
        median = float(np.median(clean[r, c]))
        for _ in range(int(count)):
            width = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
            start = int(rng.integers(0, channels - width + 1))
            spectra[r, c, start : start + width] += rng.uniform(0.2, 2.0) * median
            n_hits += 1

    truth = np.asarray(get_scalarizer(SCALARIZER)(clean, ENERGY))
    best = np.unravel_index(int(np.argmax(truth)), truth.shape)
    info = {
        "seed": int(seed),
        "half": half,
        "origin_px_of_binned_image": [r0, c0],
        "shape": [rows, cols],
        "pixel_size_nm": pixel,
        "scalarizer": SCALARIZER,
        "true_max": float(truth.max()),
        "true_max_at_xy": [int(best[1]), int(best[0])],
        "fraction_within_90pct": float(np.mean(truth >= 0.9 * truth.max())),
        "spikes": n_hits,
        "spikes_per_spectrum": spikes_per_spectrum,
        "sto_alignment_ev": refs["sto_alignment_ev"],
        "ti_signal_before_scaling": refs["ti_signal_before_scaling"],
    }
    return AssembledField(
        survey=survey,
        spectra=spectra.astype(np.float32),
        clean=clean.astype(np.float32),
        energy_axis=ENERGY.copy(),
        truth=truth,
        ti_weight=weight,
        pixel_size_nm=pixel,
        info=info,
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--half", choices=sorted(HALVES), default="eval")
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--cols", type=int, default=80)
    parser.add_argument("--spikes", type=float, default=1.0, help="mean hits per spectrum")
    parser.add_argument("--out", required=True, help="folder for si.npz and survey.npz")
    args = parser.parse_args(argv)
    scene = assemble(args.seed, args.half, args.rows, args.cols, args.spikes)
    si, survey = scene.write(args.out)
    print(f"spectrum image: {si}\nsurvey:         {survey}")
    for key, value in scene.info.items():
        print(f"  {key:28s} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
