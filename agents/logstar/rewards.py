"""Physics-based rewards LoG* minimises: no labels, only what the lattice says.

A reward is any callable ``reward(atoms, image, context) -> float``, **smaller is better**:

* ``atoms``: ``(N, 3)`` found atoms, rows ``(row, col, sigma)`` in pixels;
* ``image``: the survey image the atoms were found in (prepared, before any pre-filter);
* ``context``: a :class:`RewardContext` with the lattice, the pixel size and the numbers
  derived from them (expected count, nearest-neighbour distance in pixels).

Two come built in, after the paper:

* :class:`QualityCount` (QC) ``= |N_found - N_expected| / N_expected``;
* :class:`ErrorRate` (ER) ``= (number of found atoms closer to another found atom than a
  lattice-derived distance) / N_expected``. Two real columns are never closer than the
  nearest-neighbour distance, so such atoms are duplicates or noise.

Both are judged on the image's *interior*: atoms within ``border`` (half the
nearest-neighbour distance by default) of the frame edge are not counted, and
``N_expected`` is the interior area's. Why: a column just outside the frame still makes a LoG
peak on the edge row, so counting the whole frame rewards parameter sets that drop real
interior atoms to pay for those edge peaks (measured on the twin: same QC, F1 0.93 instead of
0.98). ``border=0`` gives the paper's whole-frame definition.

A user reward plugs in beside them, for example one that penalises atoms on a vacuum region:

>>> def on_vacuum(atoms, image, context):
...     rows, cols = atoms[:, 0].astype(int), atoms[:, 1].astype(int)
...     return float(np.mean(image[rows, cols] < 0.1)) if len(atoms) else 0.0
>>> rewards = [QualityCount(), ErrorRate(), on_vacuum]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.spatial import cKDTree

from .lattice import Lattice

__all__ = [
    "DEFAULT_MIN_SEPARATION",
    "ErrorRate",
    "QualityCount",
    "Reward",
    "RewardContext",
    "default_rewards",
    "evaluate_rewards",
    "reward_name",
]

#: ER counts atoms closer than this fraction of the nearest-neighbour distance to another one
DEFAULT_MIN_SEPARATION = 0.6
#: rewards ignore atoms within this fraction of the nearest-neighbour distance of the edge
DEFAULT_BORDER = 0.5

Reward = Callable[[np.ndarray, np.ndarray, "RewardContext"], float]


@dataclass(frozen=True)
class RewardContext:
    """What a reward may know about the image besides the atoms.

    Attributes:
        lattice: the lattice the sample should show.
        pixel_size_nm: size of one pixel, nm.
        shape: image ``(rows, columns)``.
        expected_count: ``N_expected`` in the interior (from its area, the pixel size and the
            lattice).
        nn_distance_px: nearest-neighbour distance of the lattice, pixels.
        min_separation_px: found atoms closer than this are counted by ER, pixels.
        border_px: width of the edge band the rewards ignore, pixels.

    Example:
        >>> from agents.logstar import RewardContext, graphene
        >>> ctx = RewardContext.build(graphene(), pixel_size_nm=0.01, shape=(128, 128), border=0)
        >>> round(ctx.expected_count, 1), round(ctx.nn_distance_px, 1)   # atoms; px
        (62.5, 14.2)
    """

    lattice: Lattice
    pixel_size_nm: float
    shape: Tuple[int, int]
    expected_count: float
    nn_distance_px: float
    min_separation_px: float
    border_px: float = 0.0

    @classmethod
    def build(
        cls,
        lattice: Lattice,
        pixel_size_nm: float,
        shape: Tuple[int, int],
        min_separation: float = DEFAULT_MIN_SEPARATION,
        border: float = DEFAULT_BORDER,
    ) -> RewardContext:
        """Derive the numbers from the lattice and the image calibration.

        Args:
            lattice: expected lattice.
            pixel_size_nm: pixel size of the survey image, nm.
            shape: image ``(rows, columns)``.
            min_separation: ER's distance as a fraction of the nearest-neighbour distance.
            border: edge band the rewards ignore, as a fraction of the nearest-neighbour
                distance (capped at a quarter of the image side); 0 judges the whole frame.
        """
        if not 0 < min_separation <= 2:
            raise ValueError(f"min_separation must lie in (0, 2], got {min_separation}")
        if not 0 <= border <= 5:
            raise ValueError(f"border must lie in [0, 5], got {border}")
        shape = (int(shape[0]), int(shape[1]))
        nn_px = lattice.nn_distance_px(pixel_size_nm)
        border_px = min(border * nn_px, shape[0] / 4, shape[1] / 4)
        interior = (shape[0] - 2 * border_px, shape[1] - 2 * border_px)
        area_px = interior[0] * interior[1]
        return cls(
            lattice=lattice,
            pixel_size_nm=float(pixel_size_nm),
            shape=shape,
            expected_count=area_px * float(pixel_size_nm) ** 2 * lattice.density_per_nm2,
            nn_distance_px=nn_px,
            min_separation_px=min_separation * nn_px,
            border_px=border_px,
        )

    def interior(self, atoms: np.ndarray) -> np.ndarray:
        """Mask of the atoms the rewards judge: not within ``border_px`` of the frame edge.

        The frame spans -0.5 ... rows-0.5 (pixel centres at integers).
        """
        pts = np.asarray(atoms, dtype=float)
        if pts.size == 0:
            return np.zeros(0, dtype=bool)
        lo = self.border_px - 0.5
        return (
            (pts[:, 0] >= lo)
            & (pts[:, 0] < self.shape[0] - 0.5 - self.border_px)
            & (pts[:, 1] >= lo)
            & (pts[:, 1] < self.shape[1] - 0.5 - self.border_px)
        )

    @property
    def match_distance_px(self) -> float:
        """Distance within which a found atom counts as a reference atom when scoring:
        half the nearest-neighbour distance, pixels."""
        return 0.5 * self.nn_distance_px


class QualityCount:
    """QC ``= |N_found - N_expected| / N_expected`` (0 when the count is right), counting the
    atoms in the interior (see :meth:`RewardContext.interior`)."""

    name = "quality_count"

    def __call__(self, atoms: np.ndarray, image: np.ndarray, context: RewardContext) -> float:
        expected = context.expected_count
        if expected <= 0:
            raise ValueError("the image is too small to hold one expected atom")
        found = int(np.count_nonzero(context.interior(atoms)))
        return abs(found - expected) / expected


class ErrorRate:
    """ER ``= (interior atoms closer than min_separation_px to another found atom) /
    N_expected``.

    Args:
        min_separation: overrides the context's distance, as a fraction of the
            nearest-neighbour distance (``None`` uses ``context.min_separation_px``).

    Example (two of three atoms 1 px apart; ER is their number over the expected count):
        >>> import numpy as np
        >>> from agents.logstar import ErrorRate, RewardContext, graphene
        >>> ctx = RewardContext.build(graphene(), 0.01, (64, 64), border=0)
        >>> atoms = np.array([[10, 10, 1], [11, 10, 1], [40, 40, 1]])    # row, col, sigma
        >>> round(ErrorRate()(atoms, None, ctx) * ctx.expected_count, 6)
        2.0
    """

    name = "error_rate"

    def __init__(self, min_separation: Optional[float] = None) -> None:
        if min_separation is not None and not 0 < min_separation <= 2:
            raise ValueError(f"min_separation must lie in (0, 2], got {min_separation}")
        self.min_separation = min_separation

    def __call__(self, atoms: np.ndarray, image: np.ndarray, context: RewardContext) -> float:
        expected = context.expected_count
        if expected <= 0:
            raise ValueError("the image is too small to hold one expected atom")
        if len(atoms) < 2:
            return 0.0
        limit = (
            context.min_separation_px
            if self.min_separation is None
            else self.min_separation * context.nn_distance_px
        )
        pts = np.asarray(atoms, dtype=float)[:, :2]
        distance, _ = cKDTree(pts).query(pts, k=2)
        crowded = (distance[:, 1] < limit) & context.interior(pts)
        return int(np.count_nonzero(crowded)) / expected


def default_rewards() -> List[Reward]:
    """QC and ER, the paper's pair."""
    return [QualityCount(), ErrorRate()]


def reward_name(reward: Reward, position: int = 0) -> str:
    """The name a reward is reported under: its ``name`` attribute, else its function name."""
    name = getattr(reward, "name", None) or getattr(reward, "__name__", None)
    return str(name) if name and name != "<lambda>" else f"reward_{position}"


def evaluate_rewards(
    rewards: Sequence[Reward],
    atoms_per_image: Sequence[np.ndarray],
    images: Sequence[np.ndarray],
    contexts: Sequence[RewardContext],
) -> np.ndarray:
    """Every reward averaged over the images: a vector, one entry per reward.

    Raises:
        ValueError: a reward returned something that is not a finite number.
    """
    out = np.zeros(len(rewards))
    for atoms, image, context in zip(atoms_per_image, images, contexts):
        for m, reward in enumerate(rewards):
            value = reward(atoms, image, context)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"reward {reward_name(reward, m)!r} returned {value!r}, not a number"
                ) from None
            if not math.isfinite(value):
                raise ValueError(f"reward {reward_name(reward, m)!r} returned {value}")
            out[m] += value
    return out / max(1, len(images))


def describe_rewards(rewards: Sequence[Reward]) -> List[Dict[str, Any]]:
    """JSON-able names of the rewards, for reports."""
    return [{"name": reward_name(r, m)} for m, r in enumerate(rewards)]
