"""The knobs LoG* turns: the parameters of one atom-finding trial and the box they are searched in.

A trial is ``skimage.feature.blob_log`` on a prepared survey image (optionally pre-filtered),
with the sigma grid snapped to a fixed step so that every trial can reuse one cached
Laplacian-of-Gaussian scale space per image (see :mod:`agents.logstar.scalespace`).

All lengths here are in **pixels** of the survey image: the Gaussian widths of the LoG
(``min_sigma``, ``max_sigma``) and the pre-filter size. The threshold is in units of the
scale-normalised LoG response of the prepared image (whose intensities span about 0..1, see
:func:`agents.logstar.scalespace.prepare_image`): an isolated Gaussian atom of peak height
``A`` answers about ``A / 2`` at its own width.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, Tuple

__all__ = ["PREFILTERS", "LoGParameters", "SearchSpace", "check_sigma_step"]

#: pre-filters a trial may apply before the LoG: none, a Gaussian blur (size = sigma in
#: pixels) or a median filter (size = odd window width in pixels)
PREFILTERS = ("none", "gaussian", "median")


def check_sigma_step(sigma_step: float) -> float:
    """Validate a sigma grid step and return it as a float.

    The step must be a power of two (1/8, 1/4, 1/2, 1, 2 ... pixels): only then are the grid
    values, ``numpy.linspace(min_sigma, max_sigma, num_sigma)`` inside ``blob_log`` and the
    cached slices the *same* floating-point numbers, which the bit-identity with ``blob_log``
    relies on.

    Raises:
        ValueError: if the step is not a positive power of two.
    """
    step = float(sigma_step)
    if not (step > 0 and math.isfinite(step)):
        raise ValueError(f"sigma_step must be a positive number of pixels, got {sigma_step!r}")
    mantissa, _ = math.frexp(step)
    if mantissa != 0.5:
        raise ValueError(
            f"sigma_step must be a power of two (e.g. 0.125, 0.25, 0.5, 1), got {sigma_step!r}"
        )
    return step


@dataclass(frozen=True)
class LoGParameters:
    """One set of atom-finding parameters: what ``blob_log`` is called with.

    Attributes:
        min_sigma: smallest Gaussian width of the LoG, pixels.
        max_sigma: largest Gaussian width, pixels (>= ``min_sigma``).
        threshold: absolute lower bound of scale-space maxima (``blob_log``'s ``threshold``).
        overlap: area fraction above which the smaller of two overlapping blobs is dropped,
            0..1.
        prefilter: ``"none"``, ``"gaussian"`` or ``"median"``, applied before the LoG.
        prefilter_size: Gaussian sigma (pixels) or median window width (odd, pixels); 0 with
            ``"none"``.
        sigma_step: spacing of the sigma grid, pixels (a power of two); ``num_sigma`` follows.
        exclude_border: pixels at the image edge where no peak is accepted (0 = none).

    Example:
        >>> p = LoGParameters(min_sigma=2.0, max_sigma=4.0, threshold=0.05, overlap=0.5)
        >>> p.num_sigma
        9
        >>> sorted(p.blob_log_kwargs())
        ['exclude_border', 'max_sigma', 'min_sigma', 'num_sigma', 'overlap', 'threshold']
    """

    min_sigma: float
    max_sigma: float
    threshold: float
    overlap: float = 0.5
    prefilter: str = "none"
    prefilter_size: float = 0.0
    sigma_step: float = 0.25
    exclude_border: int = 0

    def __post_init__(self) -> None:
        step = check_sigma_step(self.sigma_step)
        for name in ("min_sigma", "max_sigma", "threshold", "overlap", "prefilter_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.min_sigma < step:
            raise ValueError(f"min_sigma ({self.min_sigma}) must be >= sigma_step ({step})")
        if self.max_sigma < self.min_sigma:
            raise ValueError(
                f"max_sigma ({self.max_sigma}) must be >= min_sigma ({self.min_sigma})"
            )
        for name in ("min_sigma", "max_sigma"):
            units = getattr(self, name) / step
            if units != round(units):
                raise ValueError(
                    f"{name}={getattr(self, name)} is not on the sigma grid of step {step}; "
                    "use LoGParameters.snapped(...)"
                )
        if self.threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold}")
        if not 0 <= self.overlap <= 1:
            raise ValueError(f"overlap must lie in [0, 1], got {self.overlap}")
        if self.prefilter not in PREFILTERS:
            raise ValueError(f"prefilter must be one of {PREFILTERS}, got {self.prefilter!r}")
        if self.prefilter == "median":
            size = self.prefilter_size
            if size < 1 or size != int(size) or int(size) % 2 == 0:
                raise ValueError(f"a median prefilter needs an odd size >= 1, got {size}")
        if self.prefilter == "gaussian" and self.prefilter_size <= 0:
            raise ValueError(f"a gaussian prefilter needs a size > 0, got {self.prefilter_size}")
        if not isinstance(self.exclude_border, int) or self.exclude_border < 0:
            raise ValueError(f"exclude_border must be an int >= 0, got {self.exclude_border!r}")

    @classmethod
    def snapped(
        cls,
        min_sigma: float,
        max_sigma: float,
        threshold: float,
        overlap: float = 0.5,
        prefilter: str = "none",
        prefilter_size: float = 0.0,
        sigma_step: float = 0.25,
        exclude_border: int = 0,
    ) -> LoGParameters:
        """Build parameters with the sigmas rounded onto the grid (and ``max >= min``).

        Example:
            >>> LoGParameters.snapped(1.93, 4.1, 0.05).min_sigma
            2.0
        """
        step = check_sigma_step(sigma_step)
        lo = max(1, round(float(min_sigma) / step))
        hi = max(lo, round(float(max_sigma) / step))
        if prefilter == "none":
            prefilter_size = 0.0
        elif prefilter == "median":
            size = max(1, round(float(prefilter_size)))
            prefilter_size = float(size if size % 2 else size + 1)
        return cls(
            min_sigma=lo * step,
            max_sigma=hi * step,
            threshold=float(threshold),
            overlap=float(overlap),
            prefilter=prefilter,
            prefilter_size=float(prefilter_size),
            sigma_step=step,
            exclude_border=int(exclude_border),
        )

    @property
    def num_sigma(self) -> int:
        """Number of sigma slices between ``min_sigma`` and ``max_sigma`` inclusive."""
        return round((self.max_sigma - self.min_sigma) / self.sigma_step) + 1

    @property
    def sigma_indices(self) -> Tuple[int, int]:
        """First and last sigma-grid index (``sigma = index * sigma_step``)."""
        return round(self.min_sigma / self.sigma_step), round(self.max_sigma / self.sigma_step)

    @property
    def prefilter_key(self) -> Tuple[str, float]:
        """What identifies the pre-filtered image this trial runs on."""
        return (self.prefilter, float(self.prefilter_size))

    def blob_log_kwargs(self) -> Dict[str, Any]:
        """The keyword arguments of the equivalent ``skimage.feature.blob_log`` call."""
        return {
            "min_sigma": self.min_sigma,
            "max_sigma": self.max_sigma,
            "num_sigma": self.num_sigma,
            "threshold": self.threshold,
            "overlap": self.overlap,
            "exclude_border": self.exclude_border,
        }

    def as_dict(self) -> Dict[str, Any]:
        """JSON-able form (plain floats, ints and strings)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> LoGParameters:
        """Inverse of :meth:`as_dict`; unknown keys are an error."""
        return cls(**data)

    def with_changes(self, **changes: Any) -> LoGParameters:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class SearchSpace:
    """The box LoG* searches, in pixels (sigmas) and LoG-response units (threshold).

    The optimiser works on ``min_sigma``, a non-negative ``sigma_span`` (so that
    ``max_sigma = min_sigma + span`` can never fall below ``min_sigma``), ``log10(threshold)``,
    ``overlap`` and, when ``prefilter`` is not ``"none"``, the pre-filter size.

    Attributes:
        min_sigma: bounds of ``min_sigma``, pixels.
        sigma_span: bounds of ``max_sigma - min_sigma``, pixels.
        threshold: bounds of the threshold (searched on a log scale).
        overlap: bounds of the overlap fraction.
        prefilter: ``"none"``, ``"gaussian"`` or ``"median"``.
        prefilter_size: bounds of the pre-filter size, pixels (Gaussian sizes are snapped to
            0.5 px, median sizes to odd integers, so that few filtered images are cached).
        sigma_step: sigma grid step, pixels (a power of two).

    Example:
        >>> space = SearchSpace.for_spacing(nn_distance_px=18.0)
        >>> space.min_sigma[1] <= 18.0
        True
    """

    min_sigma: Tuple[float, float] = (1.0, 4.0)
    sigma_span: Tuple[float, float] = (0.0, 3.0)
    threshold: Tuple[float, float] = (0.005, 0.5)
    overlap: Tuple[float, float] = (0.0, 1.0)
    prefilter: str = "none"
    prefilter_size: Tuple[float, float] = (0.0, 0.0)
    sigma_step: float = 0.25
    names: Tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        step = check_sigma_step(self.sigma_step)
        for name in ("min_sigma", "sigma_span", "threshold", "overlap", "prefilter_size"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"{name} bounds must be finite with low <= high, got {lo, hi}")
        if self.min_sigma[0] < step:
            raise ValueError(f"min_sigma lower bound must be >= sigma_step ({step})")
        if self.sigma_span[0] < 0:
            raise ValueError("sigma_span must be >= 0")
        if self.threshold[0] <= 0:
            raise ValueError("threshold lower bound must be > 0 (it is searched on a log scale)")
        if not (self.overlap[0] >= 0 and self.overlap[1] <= 1):
            raise ValueError("overlap bounds must lie in [0, 1]")
        if self.prefilter not in PREFILTERS:
            raise ValueError(f"prefilter must be one of {PREFILTERS}, got {self.prefilter!r}")
        if self.prefilter == "median" and self.prefilter_size[1] < 1:
            raise ValueError("a median prefilter needs sizes >= 1")
        if self.prefilter == "gaussian" and self.prefilter_size[1] <= 0:
            raise ValueError("a gaussian prefilter needs sizes > 0")
        names = ["min_sigma", "sigma_span", "log10_threshold", "overlap"]
        if self.prefilter != "none":
            names.append("prefilter_size")
        object.__setattr__(self, "names", tuple(names))

    @classmethod
    def for_spacing(
        cls, nn_distance_px: float, prefilter: str = "none", sigma_step: float | None = None
    ) -> SearchSpace:
        """A box scaled to the lattice: atoms ``nn_distance_px`` apart need LoG widths of a
        fraction of that distance.

        The sigma step is the power of two nearest ``nn_distance_px / 40`` (clipped to
        1/8..1 px): about 15-20 slices per scale space whatever the magnification.

        Args:
            nn_distance_px: nearest-neighbour distance of the lattice, pixels.
            prefilter: pre-filter to search over (``"none"`` to leave it out).
            sigma_step: override the automatic sigma step (a power of two).
        """
        d = float(nn_distance_px)
        if not (d > 0 and math.isfinite(d)):
            raise ValueError(f"nn_distance_px must be > 0, got {nn_distance_px!r}")
        if sigma_step is None:
            exponent = round(math.log2(d / 40.0))
            sigma_step = 2.0 ** min(0, max(-3, exponent))
        step = check_sigma_step(sigma_step)
        lo = max(step, round(0.06 * d / step) * step)
        hi = max(lo + step, round(0.35 * d / step) * step)
        span = max(step, round(0.2 * d / step) * step)
        if prefilter == "median":
            size = (1.0, float(max(3, 2 * round(0.1 * d) + 1)))
        elif prefilter == "gaussian":
            size = (0.5, max(1.0, round(0.2 * d * 2) / 2))
        else:
            size = (0.0, 0.0)
        return cls(
            min_sigma=(lo, hi),
            sigma_span=(0.0, span),
            prefilter=prefilter,
            prefilter_size=size,
            sigma_step=step,
        )

    @property
    def dim(self) -> int:
        """Number of searched dimensions."""
        return len(self.names)

    def bounds(self) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """Lower and upper bounds, one per entry of :attr:`names`."""
        lows = [
            self.min_sigma[0],
            self.sigma_span[0],
            math.log10(self.threshold[0]),
            self.overlap[0],
        ]
        highs = [
            self.min_sigma[1],
            self.sigma_span[1],
            math.log10(self.threshold[1]),
            self.overlap[1],
        ]
        if self.prefilter != "none":
            lows.append(self.prefilter_size[0])
            highs.append(self.prefilter_size[1])
        return tuple(lows), tuple(highs)

    def to_parameters(self, point: Any) -> LoGParameters:
        """Map a point of the box (a sequence in :attr:`names` order) to snapped parameters."""
        values = [float(v) for v in point]
        if len(values) != self.dim:
            raise ValueError(f"expected {self.dim} values ({self.names}), got {len(values)}")
        lows, highs = self.bounds()
        values = [min(max(v, lo), hi) for v, lo, hi in zip(values, lows, highs)]
        min_sigma, span, log_threshold, overlap = values[:4]
        prefilter, size = "none", 0.0
        if self.prefilter != "none":
            prefilter = self.prefilter
            size = values[4]
            if prefilter == "gaussian":
                size = max(0.5, round(size * 2) / 2)
        return LoGParameters.snapped(
            min_sigma=min_sigma,
            max_sigma=min_sigma + span,
            threshold=10.0**log_threshold,
            overlap=overlap,
            prefilter=prefilter,
            prefilter_size=size,
            sigma_step=self.sigma_step,
        )

    def to_point(self, params: LoGParameters) -> Tuple[float, ...]:
        """Inverse of :meth:`to_parameters` (the snapped values, as searched)."""
        point = [
            params.min_sigma,
            params.max_sigma - params.min_sigma,
            math.log10(max(params.threshold, 1e-12)),
            params.overlap,
        ]
        if self.prefilter != "none":
            point.append(params.prefilter_size)
        return tuple(point)

    def as_dict(self) -> Dict[str, Any]:
        """JSON-able form."""
        data = asdict(self)
        data.pop("names", None)
        return data
