"""The ensemble itself: K U-Nets of one architecture and what they were trained on."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .cpu_net import CPUNet, cpu_nets
from .evidence import AtomCalibration
from .predict import predict
from .prediction import Prediction
from .unet import UNet, UNetConfig, inference_copy

__all__ = ["Ensemble"]


class Ensemble:
    """K U-Net members with a common architecture, plus their metadata.

    Members differ by their random seed (initial weights, crop order) and optionally by
    augmentation; the spread of their predictions is the ensemble's uncertainty. The members
    themselves live on the CPU (saving, copying and sending them to Dask workers stays
    simple); :meth:`inference_members` keeps evaluation copies on each device used.

    Args:
        members: the trained networks (at least one, all with the same ``UNetConfig``).
        metadata: JSON-able facts about the training (settings, data, seeds, metrics);
            :func:`agents.ensemble.train.train_ensemble` fills it in.
        name: the name it was saved or loaded under, if any.

    Example (three untrained members; :func:`agents.ensemble.train_ensemble` makes trained
    ones, and ``ensemble.predict(survey_image)`` then finds the atoms, its example shows):
        >>> from agents.ensemble import Ensemble, UNet, UNetConfig
        >>> config = UNetConfig(levels=2, base_filters=4)
        >>> ensemble = Ensemble([UNet(config) for _ in range(3)], name="untrained")
        >>> ensemble
        <Ensemble 'untrained': 3 U-Nets, 2 levels, 4 filters, batch norm>
        >>> len(ensemble), ensemble.calibration is None
        (3, True)
    """

    def __init__(
        self,
        members: Sequence[UNet],
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if not all(isinstance(m, UNet) for m in members):
            raise TypeError("ensemble members must be agents.ensemble.UNet instances")
        configs = {m.config for m in members}
        if len(configs) != 1:
            raise ValueError(f"all members must share one architecture, got {configs}")
        self.members: list[UNet] = members
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.name = name
        self._inference: dict[str, list[nn.Module]] = {}
        self._cpu_nets: list[CPUNet] | None = None

    @property
    def config(self) -> UNetConfig:
        """The members' common architecture."""
        return self.members[0].config

    @property
    def calibration(self) -> AtomCalibration | None:
        """The model that turns an atom's evidence into the probability that it is false
        (``metadata["calibration"]``, fitted by :func:`agents.ensemble.calibrate_uncertainty`),
        or None: then an atom's uncertainty is the members' variance over its footprint."""
        stored = self.metadata.get("calibration")
        return AtomCalibration.from_dict(stored) if stored else None

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        c = self.config
        label = f" {self.name!r}" if self.name else ""
        return (
            f"<Ensemble{label}: {len(self)} U-Nets, {c.levels} levels, "
            f"{c.base_filters} filters, {c.norm} norm>"
        )

    def inference_members(self, device: torch.device | str = "cpu") -> list[nn.Module]:
        """Fast evaluation copies of the members on ``device`` (cached until
        :meth:`invalidate`)."""
        device = torch.device(device)
        key = str(device)
        if key not in self._inference:
            self._inference[key] = [inference_copy(m, device) for m in self.members]
        return self._inference[key]

    def cpu_nets(self) -> list[CPUNet] | None:
        """The members rewritten for float32 inference on a CPU (cached until
        :meth:`invalidate`), or None for GroupNorm members (see :mod:`.cpu_net`)."""
        if self._cpu_nets is None:  # (GroupNorm members: None again, cheaply)
            self._cpu_nets = cpu_nets(self.members)
        return self._cpu_nets

    def invalidate(self) -> None:
        """Forget the cached inference copies; call after changing the members' weights."""
        self._inference = {}
        self._cpu_nets = None

    def predict(self, image: Any, **kwargs: Any) -> Prediction:
        """Atoms with uncertainty in one survey image; see :func:`agents.ensemble.predict`."""
        return predict(self, image, **kwargs)

    def clone(self) -> Ensemble:
        """An independent deep copy (training the copy leaves this ensemble untouched)."""
        return Ensemble(
            [copy.deepcopy(m) for m in self.members], copy.deepcopy(self.metadata), self.name
        )
