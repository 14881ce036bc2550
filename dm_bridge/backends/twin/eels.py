"""EELS spectrum formation: zero-loss peak, Poisson plural scattering, channels, noise.

A spectrum at a beam position depends on the local weights ``tau_m`` of the sample's
components (t/λ of each material, the strength of an interface or surface plasmon, the
core-loss probability of an element). With normalised single-scattering shapes ``S_m``, the
spectrum of ``N0`` electrons is the Poisson compound (Egerton, *EELS in the Electron
Microscope*, ch. 3)::

    J(E) = N0 · Z(E) ⊛ Σ_α  e^{-Σ τ} Π_m τ_m^{α_m} / α_m!  ·  S_1^{⊛α_1} ⊛ … ⊛ S_M^{⊛α_M}

where ``α`` runs over the numbers of events in each component and ``Z`` is the zero-loss
peak. The sums of convolutions (the *basis*) depend only on the spectrometer settings, so they
are computed once per setting (FFT convolutions on a fine grid, integrated over each channel)
and every spectrum becomes a small matrix product: ``coefficients (N × B) @ basis (B × C)``.
128×128 positions × 2048 channels take about a second, mostly Poisson sampling.

Terms whose coefficient is below ``tol`` at every requested position are dropped, so thick
regions get high orders (plural scattering) and trace components (a dopant's edge, a surface
plasmon) only the orders that matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import fft as sfft
from scipy.special import gammaln

from .materials import Component

__all__ = ["SpectrometerGrid", "SpectrumModel"]

_MAX_FINE = 1 << 17
_MAX_ORDER = 12
_NORMAL_ABOVE = 200.0  # expected counts above which Poisson noise is drawn as normal


@dataclass(frozen=True)
class SpectrometerGrid:
    """The fine energy grid behind a spectrometer setting.

    Fine cells of width ``step`` are aligned with the channels: ``cells_per_channel`` of
    them make one returned channel. ``first`` is the centre of fine cell 0 (below 0 eV, so the
    whole zero-loss peak is on the grid); ``start`` is the fine index where channel 0 begins.
    """

    step: float
    first: float
    start: int
    cells_per_channel: int
    channels: int
    size: int

    @classmethod
    def for_settings(
        cls, energy_offset: float, dispersion: float, binning: int, channels: int, zlp_fwhm: float
    ) -> SpectrometerGrid:
        width = dispersion * binning
        # The zero-loss peak must be sampled at least four times per FWHM when it is in view;
        # far from it (core loss only) a coarser grid still resolves white lines (~1 eV).
        top = energy_offset + width * (channels - 0.5)
        target = zlp_fwhm / 4.0 if energy_offset < 50 * zlp_fwhm else min(0.25, width)
        per_channel = max(1, math.ceil(width / target))
        step = width / per_channel
        low = min(energy_offset - width / 2.0, -6.0 * zlp_fwhm - 2.0)
        span = top - low
        if span / step > _MAX_FINE:
            per_channel = max(1, math.floor(width / (span / _MAX_FINE)))
            step = width / per_channel
        channel_edge0 = energy_offset - width / 2.0
        pre = math.ceil((channel_edge0 - low) / step)
        first = channel_edge0 + step / 2.0 - pre * step
        size = pre + per_channel * channels
        return cls(step, first, pre, per_channel, channels, size)

    @property
    def energies(self) -> np.ndarray:
        return self.first + self.step * np.arange(self.size)

    def to_channels(self, fine: np.ndarray) -> np.ndarray:
        """Integrate fine densities (last axis) into channel counts (midpoint rule)."""
        body = fine[..., self.start : self.start + self.cells_per_channel * self.channels]
        shape = (*body.shape[:-1], self.channels, self.cells_per_channel)
        return body.reshape(shape).sum(axis=-1) * self.step


class SpectrumModel:
    """Noise-free and noisy spectra of a sample's components.

    Args:
        components: the sample's EELS components (order = columns of ``tau``).
        zlp_fwhm: energy resolution, FWHM of the zero-loss peak, eV.
        zlp_tail: share of the zero-loss peak in its Lorentzian tails (cold FEG-like).
        tol: drop plural-scattering terms below this probability at every position.

    Example:
        >>> from dm_bridge.backends.twin.materials import MATERIALS, material_component
        >>> model = SpectrumModel([material_component(MATERIALS["GaAs"])], zlp_fwhm=0.5)
        >>> axis, spectra = model.expected(np.array([[0.3]]), 1e6, -10.0, 0.1, 1, 512)
        >>> spectra.shape, round(float(spectra.sum()) / 1e6, 2)
        ((1, 512), 0.98)
    """

    def __init__(
        self,
        components: Sequence[Component],
        zlp_fwhm: float = 0.5,
        zlp_tail: float = 2e-3,
        tol: float = 1e-7,
    ) -> None:
        if zlp_fwhm <= 0:
            raise ValueError("zlp_fwhm must be > 0 eV")
        self.components = tuple(components)
        self.zlp_fwhm = float(zlp_fwhm)
        self.zlp_tail = float(zlp_tail)
        self.tol = float(tol)
        self._settings: Optional[Tuple] = None
        self._grid: Optional[SpectrometerGrid] = None
        self._single_ft: List[np.ndarray] = []
        self._zlp_ft: Optional[np.ndarray] = None
        self._nfft = 0
        self._loss: Dict[Tuple[int, ...], np.ndarray] = {}
        self._channels: Dict[Tuple[int, ...], np.ndarray] = {}

    # ------------------------------------------------------------------ basis

    def _prepare(
        self, energy_offset: float, dispersion: float, binning: int, channels: int
    ) -> SpectrometerGrid:
        key = (float(energy_offset), float(dispersion), int(binning), int(channels))
        if self._settings == key and self._grid is not None:
            return self._grid
        grid = SpectrometerGrid.for_settings(*key, zlp_fwhm=self.zlp_fwhm)
        h = grid.step
        # Losses live on the grid k·h (k >= 0), so n-fold convolutions stay on it; the
        # zero-loss peak, sampled at the channel-aligned cell centres, brings them onto the
        # channel grid in the last step.
        top = grid.first + h * (grid.size - 1)
        n_loss = max(2, math.floor(top / h) + 1)
        nfft = sfft.next_fast_len(2 * max(n_loss, grid.size) + 8, real=True)
        loss_e = h * np.arange(n_loss)
        self._single_ft = []
        for comp in self.components:
            s = comp.shape(loss_e)
            s[0] = 0.0
            self._single_ft.append(sfft.rfft(s * h, nfft))
        e = grid.first + h * np.arange(grid.size)
        z = self._zlp(e)
        z /= z.sum() * h
        self._zlp_ft = sfft.rfft(z * h, nfft)
        self._n_loss = n_loss
        self._nfft = nfft
        self._grid = grid
        self._settings = key
        delta = np.zeros(n_loss)
        delta[0] = 1.0 / h
        zero = (0,) * len(self.components)
        self._loss = {zero: delta}
        self._channels = {}
        return grid

    def _zlp(self, e: np.ndarray) -> np.ndarray:
        sigma = self.zlp_fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        gauss = np.exp(-0.5 * (e / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        hw = self.zlp_fwhm
        lorentz = hw / math.pi / (e**2 + hw**2)
        return (1.0 - self.zlp_tail) * gauss + self.zlp_tail * lorentz

    def _loss_term(self, alpha: Tuple[int, ...]) -> np.ndarray:
        """``S_1^{⊛α_1} ⊛ …`` on the loss grid, truncated to the window (exact there)."""
        got = self._loss.get(alpha)
        if got is not None:
            return got
        m = next(i for i, a in enumerate(alpha) if a > 0)
        parent = list(alpha)
        parent[m] -= 1
        base = self._loss_term(tuple(parent))
        ft = sfft.rfft(base, self._nfft) * self._single_ft[m]
        out = sfft.irfft(ft, self._nfft)[: self._n_loss]
        self._loss[alpha] = out
        return out

    def _channel_term(self, alpha: Tuple[int, ...]) -> np.ndarray:
        got = self._channels.get(alpha)
        if got is not None:
            return got
        grid = self._grid
        assert grid is not None
        assert self._zlp_ft is not None
        loss = self._loss_term(alpha)
        fine = sfft.irfft(sfft.rfft(loss, self._nfft) * self._zlp_ft, self._nfft)[: grid.size]
        out = grid.to_channels(np.maximum(fine, 0.0))
        self._channels[alpha] = out
        return out

    # ------------------------------------------------------------------ coefficients

    def _terms(self, tau: np.ndarray) -> np.ndarray:
        """Plural-scattering orders ``α`` (B × M) that may matter somewhere in ``tau``.

        A term's weight at a position is ``Π_m Poisson(α_m; τ_m)``, so its largest weight
        over all positions is at most ``Π_m max_p Poisson(α_m; τ_m(p))``. Orders are
        enumerated component by component and a branch is cut as soon as that bound falls
        below ``tol``: exact pruning, without evaluating every candidate everywhere.
        """
        m = tau.shape[1]
        if len(tau) == 0:
            return np.zeros((1, m), dtype=np.int64)
        tau = np.maximum(tau, 0.0)
        bounds = []
        for j in range(m):
            t = tau[:, j]
            n = _poisson_order(float(t.max()), self.tol)
            k = np.arange(n + 1, dtype=np.float64)
            with np.errstate(divide="ignore", invalid="ignore"):
                logp = k[None, :] * np.log(t[:, None]) - t[:, None] - gammaln(k + 1.0)[None, :]
            logp = np.where(np.isnan(logp), -np.inf, logp)
            logp[:, 0] = -t  # 0 · log 0 = 0
            bounds.append(np.exp(logp.max(axis=0)))
        out: List[Tuple[int, ...]] = []

        def walk(j: int, prefix: Tuple[int, ...], bound: float) -> None:
            if j == m:
                out.append(prefix)
                return
            for k, b in enumerate(bounds[j]):
                if bound * b >= self.tol:
                    walk(j + 1, (*prefix, k), bound * b)

        walk(0, (), 1.0)
        return np.asarray(out, dtype=np.int64).reshape(-1, m)

    def coefficients(self, tau: np.ndarray, terms: np.ndarray) -> np.ndarray:
        """Poisson weights ``e^{-Σ τ} Π τ^α / α!`` of each term at each position (N × B)."""
        tau = np.maximum(np.asarray(tau, dtype=np.float64), 0.0)
        with np.errstate(divide="ignore"):
            logt = np.log(tau)  # -inf where tau == 0
        a = terms.astype(np.float64)
        # 0 · log 0 must count as 0 (0^0 = 1)
        logt_safe = np.where(np.isfinite(logt), logt, -1e300)
        logc = logt_safe @ a.T - gammaln(a + 1.0).sum(axis=1)[None, :]
        logc -= tau.sum(axis=1)[:, None]
        # (clip before exp: subnormal results are very slow to compute with)
        return np.exp(np.maximum(logc, -600.0)) * (logc > -600.0)

    # ------------------------------------------------------------------ spectra

    def expected(
        self,
        tau: np.ndarray,
        electrons: float,
        energy_offset: float,
        dispersion: float,
        binning: int,
        channels: int,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Noise-free spectra ``(N, channels)`` in electrons per channel.

        Args:
            tau: ``(N, M)`` component weights at each position.
            electrons: incident electrons per spectrum (current × exposure / e).
            energy_offset, dispersion, binning, channels: the spectrometer setting.

        Returns:
            ``(energy_axis, spectra)``.
        """
        tau = np.atleast_2d(np.asarray(tau, dtype=np.float64))
        self._prepare(energy_offset, dispersion, binning, channels)
        terms = self._terms(tau)
        coef = self.coefficients(tau, terms)
        keep = coef.max(axis=0) >= self.tol
        basis = self._basis(terms[keep]).astype(np.float32)
        spectra = ((coef[:, keep] * electrons).astype(np.float32) @ basis).astype(np.float64)
        axis = energy_offset + dispersion * binning * np.arange(channels, dtype=np.float64)
        return axis, spectra

    def _basis(self, terms: np.ndarray) -> np.ndarray:
        return np.stack([self._channel_term(tuple(int(v) for v in a)) for a in terms])

    def band_basis(self, tau: np.ndarray, channel_mask: np.ndarray) -> Tuple[np.ndarray, ...]:
        """Terms that may matter for ``tau``, and each term's counts within ``channel_mask``
        (for one electron). Call after the spectrometer setting is prepared."""
        terms = self._terms(np.atleast_2d(tau))
        return terms, self._basis(terms)[:, channel_mask].sum(axis=1)

    def prepare(self, energy_offset: float, dispersion: float, binning: int, channels: int) -> None:
        """Set up the basis for a spectrometer setting (done automatically by ``expected``)."""
        self._prepare(energy_offset, dispersion, binning, channels)


def _poisson_order(tau: float, tol: float) -> int:
    """Smallest n with P(N > n) < tol for N ~ Poisson(tau)."""
    if tau <= 0:
        return 0
    p = math.exp(-tau)
    cdf = p
    n = 0
    while 1.0 - cdf >= tol and n < _MAX_ORDER:
        n += 1
        p *= tau / n
        cdf += p
    return n


def add_noise(
    expected: np.ndarray,
    rng: np.random.Generator,
    read_noise: float = 0.0,
) -> np.ndarray:
    """Poisson counts of ``expected`` electrons, plus Gaussian read noise; float32.

    Channels expecting at least 200 electrons are drawn from the normal approximation
    (rounded): variance = mean as for Poisson, skewness < 0.07, several times faster, which
    matters for zero-loss and plasmon channels of large spectrum images.
    """
    lam = np.maximum(expected, 0.0)
    big = lam >= _NORMAL_ABOVE
    if big.any():
        counts = np.empty(lam.shape, dtype=np.float32)
        small = ~big
        counts[small] = rng.poisson(lam[small])
        lb = lam[big]
        counts[big] = np.round(lb + np.sqrt(lb) * rng.standard_normal(lb.shape))
    else:
        counts = rng.poisson(lam).astype(np.float32)
    if read_noise > 0:
        counts += rng.normal(0.0, read_noise, size=counts.shape).astype(np.float32)
    return counts


def shift_channels(spectra: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Shift each spectrum by ``shift`` channels (positive: to higher energy), linearly."""
    c = spectra.shape[1]
    k = np.floor(shift).astype(np.int64)
    f = (shift - k)[:, None]
    idx = np.arange(c)[None, :] - k[:, None]
    lo = np.take_along_axis(spectra, np.clip(idx, 0, c - 1), axis=1)
    hi = np.take_along_axis(spectra, np.clip(idx - 1, 0, c - 1), axis=1)
    return (1.0 - f) * lo + f * hi
