"""Zero-loss alignment during acquisition: every low-loss spectrum put back on its energy scale.

The spectrometer's energy scale jitters from spectrum to spectrum and walks slowly (tenths of
an eV: :mod:`agents.zlp`). A plan that takes EELS with ``zero_loss`` on hands each batch of
spectra, as it arrives, to :class:`ZeroLossStep`: the zero-loss peak (ZLP) of every spectrum is
located to a fraction of a channel and the spectrum is moved so that the peak sits at 0 eV.
What the agent and the scalarizer see are the aligned spectra.

What the run keeps (and why it keeps the raw spectra): ``primary`` holds the spectra **as
measured**; the ``zero_loss`` stream holds, one row per spectrum in the same order, where its
ZLP was found (``zlp``, eV), the shift applied (``shift``, eV: ``-zlp``, or 0 when the peak was
not trusted), whether it was trusted, and the batch's median ZLP (``walk``: the slow drift of
the high tension). Aligned spectra are ``agents.zlp.shift_spectra(raw, axis, shift)``, exactly
what the plan computed, so the alignment can be undone, redone or checked (forensics) and
nothing measured is lost to an interpolation. The setting is in the start document
(``zero_loss``: mode, method, search window, largest trusted shift).

Modes: ``None`` (default, "auto"): on when the energy axis holds 0 eV (a low-loss spectrum),
off for core-loss; ``True``: on (a core-loss axis is an error); ``False``: off. The software
moves the spectra; the spectrometer's own energy offset is not touched (see
docs/decisions/0012-zero-loss-alignment.md).
"""

from typing import Any, Dict, Optional

import numpy as np
from bluesky.utils import MsgGenerator

from dm_bridge.types import SpectrumAcquisition
from ophyd_stem import Table

from .stubs import record_table

__all__ = ["ZeroLossStep"]


class ZeroLossStep:
    """Aligns each batch of spectra a plan takes and records the alignment (``zero_loss``).

    Args:
        setting: ``None`` (on for low-loss axes), ``True`` or ``False``.
        method, search, max_shift: :class:`agents.zlp.ZeroLossAligner`'s (peak refinement,
            eV window around 0 eV, largest shift trusted in eV).

    Raises:
        ValueError: a setting that is not None, True or False; a bad aligner setting.
    """

    def __init__(
        self,
        setting: Optional[bool] = None,
        method: str = "log-parabola",
        search: float = 5.0,
        max_shift: float = 3.0,
    ) -> None:
        from agents.zlp import ZeroLossAligner  # numpy only

        if setting not in (None, True, False):
            raise ValueError(f"zero_loss must be None (auto), True or False, got {setting!r}")
        self.setting = setting
        self.aligner = ZeroLossAligner(method=method, search=search, max_shift=max_shift)
        #: decided on the first batch (None until then); False when the setting is False
        self.active: Optional[bool] = False if setting is False else None
        self.table = Table(
            "zero_loss", units={"x": "px", "y": "px", "zlp": "eV", "shift": "eV", "walk": "eV"}
        )

    @property
    def mode(self) -> str:
        return {None: "auto", True: "on", False: "off"}[self.setting]

    def metadata(self) -> Dict[str, Any]:
        """The setting, for the start document."""
        return {"mode": self.mode, **self.aligner.config()}

    def apply(self, acquisition: SpectrumAcquisition) -> MsgGenerator[SpectrumAcquisition]:
        """Align one batch (inside an open run): record its rows of ``zero_loss`` and return
        it with the aligned spectra (raw ones when alignment is off)."""
        from agents.zlp import is_low_loss

        if self.setting is False or acquisition is None:
            return acquisition
        axis = np.asarray(acquisition.energy_axis, dtype=np.float64)
        if self.active is None:
            low_loss = is_low_loss(axis)
            if self.setting is True and not low_loss:
                raise ValueError(
                    f"zero_loss=True, but the energy axis ({axis[0]:.1f} to {axis[-1]:.1f} eV) "
                    "holds no zero-loss peak: use zero_loss=None (on for low-loss spectra "
                    "only) or False for core-loss spectra"
                )
            self.active = low_loss
        if not self.active:
            return acquisition
        spectra = np.asarray(acquisition.spectra)
        aligned, zlp, shifts = self.aligner.align_with_shifts(spectra, axis)
        walk = self.aligner.walk(zlp)
        found = np.nan_to_num(np.asarray(zlp, dtype=np.float64), nan=np.inf)
        trusted = np.abs(found) <= self.aligner.max_shift
        positions = np.asarray(acquisition.positions, dtype=np.float64).reshape(-1, 2)
        yield from record_table(
            self.table,
            x=positions[:, 0],
            y=positions[:, 1],
            zlp=np.asarray(zlp, dtype=np.float64).ravel(),
            shift=np.asarray(shifts, dtype=np.float64).ravel(),
            trusted=trusted.ravel(),
            walk=np.full(len(positions), np.nan if walk is None else walk),
        )
        return SpectrumAcquisition(
            spectra=aligned.astype(spectra.dtype, copy=False),
            energy_axis=axis,
            positions=positions,
            instrument_time=acquisition.instrument_time,
            eels=acquisition.eels,
            metadata={**acquisition.metadata, "zero_loss_aligned": True},
        )
