"""Spectra as a microscopist looks at them: a scalar that shows the contrast, and example
spectra chosen from that scalar's extremes rather than from fixed indices.

Without a scalarizer of its own, a set of spectra is summarised by the **relative
thickness** ``t/λ = ln(I_total / I_zero-loss)`` (the log-ratio method): vacuum is 0, a thin
support a few tenths, a thick or heavy particle above 1. The total intensity per position,
by contrast, is dominated by the zero-loss peak and shows a thick gold cap *dark* (its
electrons are scattered out of the spectrometer's aperture).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "EXAMPLE_COLOURS",
    "THICKNESS_LABEL",
    "example_indices",
    "plot_examples",
    "relative_thickness",
    "zero_loss_end",
]

#: what t/λ is, with its unit: the thickness in inelastic mean free paths
THICKNESS_LABEL = "thickness t/λ (inelastic mean free paths)"

#: colours of example spectra; the same colour marks where each was measured
EXAMPLE_COLOURS = ("tab:blue", "tab:green", "tab:orange", "tab:red", "tab:purple")


def zero_loss_end(energy: np.ndarray, spectra: np.ndarray, cap_ev: float = 5.0) -> float:
    """The energy (eV) where the zero-loss peak ends: the first minimum of the mean spectrum
    after its peak near 0 eV (at most ``cap_ev``)."""
    energy = np.asarray(energy, dtype=float)
    mean = np.asarray(spectra, dtype=float).reshape(-1, len(energy)).mean(axis=0)
    step = abs(energy[1] - energy[0]) if len(energy) > 1 else 1.0
    width = max(1, round(0.5 / step))  # smooth over 0.5 eV: noise makes no minimum
    smooth = np.convolve(mean, np.ones(width) / width, mode="same")
    # the peak of the smoothed curve, whose minimum is sought: the raw maximum can sit a
    # channel or two before it (a narrow or jittered peak), where the smoothed curve still
    # rises, and the window then ended at the peak (t/λ 7.6 in vacuum, `run zlp`)
    near = np.flatnonzero(np.abs(energy) <= 2.0)
    peak = int(near[np.argmax(smooth[near])]) if len(near) else int(np.argmax(smooth))
    stop = np.flatnonzero(energy <= energy[peak] + cap_ev)
    last = int(stop[-1]) if len(stop) else len(energy) - 1
    segment = smooth[peak : last + 1]
    if len(segment) < 3:
        return float(energy[last])
    rising = np.flatnonzero(np.diff(segment) > 0)
    end = peak + (int(rising[0]) if len(rising) else len(segment) - 1)
    return float(energy[end])


def relative_thickness(energy: np.ndarray | None, spectra: np.ndarray) -> np.ndarray | None:
    """``t/λ`` of every spectrum (log-ratio method); None without an energy axis or a
    zero-loss peak in the range."""
    spectra = np.asarray(spectra, dtype=float)
    if energy is None or spectra.ndim != 2 or len(energy) != spectra.shape[1]:
        return None
    energy = np.asarray(energy, dtype=float)
    if energy.min() > 0 or energy.max() < 1:
        return None  # a core-loss range: no zero-loss peak to divide by
    end = zero_loss_end(energy, spectra)
    clipped = np.clip(spectra, 0, None)
    total = clipped.sum(axis=1)
    zero_loss = clipped[:, energy <= end].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(zero_loss > 0, np.log(total / zero_loss), np.nan)


def example_indices(values: np.ndarray, k: int = 3) -> list[int]:
    """Up to ``k`` spectra that show the range of a scalar: the lowest, the highest, and
    between them the most typical member of each intermediate level (levels found by a
    one-dimensional k-means, so a vacuum / support / particle field gives one spectrum of
    each, not two of vacuum). Sorted by value; NaNs ignored."""
    values = np.asarray(values, dtype=float)
    finite = np.flatnonzero(np.isfinite(values))
    if not len(finite):
        return []
    v = values[finite]
    chosen = [int(finite[np.argmin(v)]), int(finite[np.argmax(v)])]
    k = max(int(k), 1)
    if k > 2 and len(np.unique(v)) > 2:
        centres = np.linspace(v.min(), v.max(), k)
        for _ in range(30):
            label = np.argmin(np.abs(v[:, None] - centres[None, :]), axis=1)
            centres = np.array(
                [np.median(v[label == j]) if np.any(label == j) else centres[j] for j in range(k)]
            )
        for j in np.argsort(centres)[1:-1]:
            members = np.flatnonzero(label == j)
            if len(members):
                best = members[np.argmin(np.abs(v[members] - centres[j]))]
                chosen.append(int(finite[best]))
    unique = list(dict.fromkeys(chosen))[:k]
    return sorted(unique, key=lambda i: values[i])


def plot_examples(
    ax: Any,
    energy: np.ndarray | None,
    spectra: np.ndarray,
    indices: list[int],
    labels: list[str],
    bands: list[tuple[float, float]] = (),
) -> None:
    """Example spectra in :data:`EXAMPLE_COLOURS` on a log scale, with the scalarizer's
    band(s) shaded."""
    spectra = np.asarray(spectra, dtype=float)
    axis_ev = energy is not None and len(energy) == spectra.shape[-1]
    x = np.asarray(energy, dtype=float) if axis_ev else np.arange(spectra.shape[-1], dtype=float)
    for n, (i, label) in enumerate(zip(indices, labels)):
        colour = EXAMPLE_COLOURS[n % len(EXAMPLE_COLOURS)]
        ax.plot(x, spectra[i], color=colour, lw=0.8, label=label, gid="spectrum")
    for lo, hi in bands:
        ax.axvspan(lo, hi, color="tab:orange", alpha=0.2, label=f"{lo:g}-{hi:g} eV")
    shown = spectra[indices] if len(indices) else spectra
    if np.any(shown > 0):
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(0.5, float(np.nanmin(np.where(shown > 0, shown, np.inf))) / 2))
    ax.set_xlabel("energy loss (eV)" if axis_ev else "channel")
    ax.set_ylabel("counts")
    if labels:
        ax.legend(fontsize=7, loc="upper right")
