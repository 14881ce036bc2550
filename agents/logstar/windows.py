"""Sliding windows (section III of the paper): optimise on sub-images, map the optimum, apply.

A large survey image is cut into overlapping windows; LoG* runs on each window and one point
of each window's front is taken (by the same weight rule an operator would use). The
per-window parameters form a map of how the optimum varies across the image (defects,
contamination and thickness change it). Then the user chooses:

* ``mode="global"``: one parameter set for the whole image (by default the per-parameter
  median of the windows' optima, or the optimum of one window, or any given set);
* ``mode="local"``: every window's own parameters on its own region. Each pixel belongs to the
  window whose centre is nearest, so every atom is kept by exactly one window; atoms that
  two windows both found across a seam (closer than the ER distance) are merged, keeping the
  one nearer its own window's centre.

The windows are independent optimisations: with ``compute=`` they run in parallel, one per
Dask worker (:mod:`agents.logstar.batch`), with the same result as one after the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from scipy.spatial import cKDTree

from .library import get_lattice
from .params import LoGParameters, SearchSpace
from .pareto import select_point
from .rewards import DEFAULT_MIN_SEPARATION, RewardContext
from .scalespace import ImageScaleSpaces, prepare_image

__all__ = ["Window", "WindowMap", "apply_windows", "optimize_windows", "sliding_windows"]


@dataclass(frozen=True)
class Window:
    """One sub-image: grid position and pixel bounds ``[row0, row1) x [col0, col1)``."""

    grid: Tuple[int, int]
    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def slices(self) -> Tuple[slice, slice]:
        """Index of the window in the full image."""
        return slice(self.row0, self.row1), slice(self.col0, self.col1)

    @property
    def centre(self) -> Tuple[float, float]:
        """Centre ``(row, col)`` in full-image pixels."""
        return (self.row0 + self.row1 - 1) / 2.0, (self.col0 + self.col1 - 1) / 2.0

    @property
    def shape(self) -> Tuple[int, int]:
        return self.row1 - self.row0, self.col1 - self.col0


def _starts(length: int, window: int, stride: int) -> List[int]:
    if window >= length:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)  # the last window ends at the edge
    return starts


def sliding_windows(
    shape: Tuple[int, int], window: Union[int, Tuple[int, int]], stride: Optional[int] = None
) -> List[Window]:
    """Overlapping windows covering an image, row by row.

    Args:
        shape: image ``(rows, columns)``.
        window: window size in pixels (one number, or ``(rows, columns)``); clipped to the
            image.
        stride: step between windows, pixels (default half the window: 50 % overlap).

    Example:
        >>> [w.grid for w in sliding_windows((256, 256), 128, 64)][:3]
        [(0, 0), (0, 1), (0, 2)]
    """
    rows, cols = (int(v) for v in shape)
    win_r, win_c = (window, window) if np.isscalar(window) else window  # type: ignore[misc]
    win_r, win_c = min(int(win_r), rows), min(int(win_c), cols)
    if win_r < 1 or win_c < 1:
        raise ValueError(f"window must be >= 1 pixel, got {window!r}")
    step = int(stride) if stride is not None else max(1, min(win_r, win_c) // 2)
    if step < 1:
        raise ValueError(f"stride must be >= 1 pixel, got {stride!r}")
    out = []
    for i, r0 in enumerate(_starts(rows, win_r, step)):
        for j, c0 in enumerate(_starts(cols, win_c, step)):
            out.append(Window((i, j), r0, r0 + win_r, c0, c0 + win_c))
    return out


@dataclass
class WindowMap:
    """The per-window optima of one image.

    Attributes:
        shape: full image ``(rows, columns)``.
        windows: the windows, row by row.
        params: the chosen parameters of each window.
        rewards: the chosen point's rewards of each window.
        fronts: each window's front, as JSON-able summaries.
        weight: the weight used to pick each window's point.
    """

    shape: Tuple[int, int]
    windows: List[Window]
    params: List[LoGParameters]
    rewards: List[Dict[str, float]]
    fronts: List[List[Dict[str, Any]]] = field(repr=False)
    weight: float = 0.5

    @property
    def grid_shape(self) -> Tuple[int, int]:
        """Number of windows along rows and columns."""
        return (
            max(w.grid[0] for w in self.windows) + 1,
            max(w.grid[1] for w in self.windows) + 1,
        )

    def parameter_map(self, name: str) -> np.ndarray:
        """One parameter (or reward) over the window grid, e.g. ``"min_sigma"``.

        Example (a synthetic 128 x 128 graphene survey in 64 px windows every 32 px; 8 trials
        a window, the Sobol start alone):
            >>> from agents.logstar import get_lattice
            >>> from agents.logstar.render import render_lattice
            >>> from agents.logstar.windows import optimize_windows
            >>> image = render_lattice(get_lattice("graphene"), (128, 128), 0.02)
            >>> wm = optimize_windows(image, "graphene", 0.02, window=64, stride=32, budget=8)
            >>> wm.parameter_map("threshold").shape
            (3, 3)
        """
        out = np.full(self.grid_shape, np.nan)
        for w, p, r in zip(self.windows, self.params, self.rewards):
            if name in r:
                out[w.grid] = r[name]
            elif hasattr(p, name):
                out[w.grid] = float(getattr(p, name))
            else:
                raise ValueError(f"no parameter or reward called {name!r}")
        return out

    def global_params(self, how: Union[str, int] = "median") -> LoGParameters:
        """One parameter set for the whole image.

        Args:
            how: ``"median"`` (each parameter's median over the windows, snapped to the sigma
                grid; the threshold's median taken on a log scale) or the index of a window
                whose optimum to use.
        """
        if isinstance(how, (int, np.integer)) and not isinstance(how, bool):
            return self.params[int(how)]
        if how != "median":
            raise ValueError(f"how must be 'median' or a window index, got {how!r}")
        ps = self.params
        first = ps[0]
        return LoGParameters.snapped(
            min_sigma=float(np.median([p.min_sigma for p in ps])),
            max_sigma=float(np.median([p.max_sigma for p in ps])),
            threshold=float(10 ** np.median([math.log10(max(p.threshold, 1e-12)) for p in ps])),
            overlap=float(np.median([p.overlap for p in ps])),
            prefilter=first.prefilter,
            prefilter_size=float(np.median([p.prefilter_size for p in ps])),
            sigma_step=first.sigma_step,
        )

    def summary(self) -> Dict[str, Any]:
        """JSON-able and small."""
        return {
            "shape": list(self.shape),
            "grid_shape": list(self.grid_shape),
            "weight": self.weight,
            "windows": [
                {
                    "grid": list(w.grid),
                    "bounds": [w.row0, w.row1, w.col0, w.col1],
                    "params": p.as_dict(),
                    "rewards": r,
                }
                for w, p, r in zip(self.windows, self.params, self.rewards)
            ],
        }


def optimize_windows(
    image: np.ndarray,
    lattice: Any,
    pixel_size_nm: float,
    window: Union[int, Tuple[int, int]] = 128,
    stride: Optional[int] = None,
    budget: int = 24,
    weight: float = 0.5,
    seed: int = 0,
    space: Optional[SearchSpace] = None,
    rewards: Optional[Sequence[Any]] = None,
    min_separation: float = DEFAULT_MIN_SEPARATION,
    compute: Any = None,
    **run_kwargs: Any,
) -> WindowMap:
    """Run LoG* on every window of an image and map the optima.

    The image is prepared once (so all windows share one intensity scale) and cut.

    Args:
        image: the survey image.
        lattice: lattice name or :class:`~agents.logstar.lattice.Lattice`.
        pixel_size_nm: pixel size, nm.
        window, stride: see :func:`sliding_windows`.
        budget: trials per window.
        weight: how each window's point is picked from its front (see
            :func:`~agents.logstar.pareto.select_point`).
        seed: seed of the first window (window ``k`` uses ``seed + k``).
        space, rewards, min_separation: as for the optimiser.
        compute: ``None`` (one window after the other, here) or a Dask cluster, one window
            per worker: ``"local"``, ``"local:N"``, an address or a Client
            (:mod:`agents.compute`).
        run_kwargs: passed to :meth:`LoGStarOptimizer.run` (``n_initial``, ``batch_size``...).

    Example (a synthetic 128 x 128 graphene survey at 0.02 nm/px in 64 px windows every
    32 px; 8 trials a window, the Sobol start alone, where a survey wants the default 24):
        >>> from agents.logstar import get_lattice
        >>> from agents.logstar.render import render_lattice
        >>> from agents.logstar.windows import apply_windows, optimize_windows
        >>> survey_image = render_lattice(get_lattice("graphene"), (128, 128), 0.02)
        >>> wm = optimize_windows(survey_image, "graphene", 0.02, window=64, stride=32, budget=8)
        >>> wm.grid_shape
        (3, 3)
        >>> atoms = apply_windows(survey_image, wm, mode="local", lattice="graphene",
        ...                       pixel_size_nm=0.02)
        >>> atoms.shape[1]                        # row, col, sigma: full-image pixels
        3
    """
    from .batch import run_jobs

    prepared = prepare_image(image)
    lat = get_lattice(lattice)
    if space is None:
        space = SearchSpace.for_spacing(lat.nn_distance_px(pixel_size_nm))
    windows = sliding_windows(prepared.shape, window, stride)
    results = run_jobs(
        [(prepared[w.slices], seed + k) for k, w in enumerate(windows)],
        lat,
        pixel_size_nm,
        rewards=rewards,
        space=space,
        min_separation=min_separation,
        prepared=True,
        compute=compute,
        budget=budget,
        **run_kwargs,
    )
    params, chosen_rewards, fronts = [], [], []
    for result in results:
        choice = select_point(result.front, weight=weight, chooser="agent")
        point = result.front[choice.index]
        params.append(point.params)
        chosen_rewards.append(dict(point.rewards))
        fronts.append([p.summary() for p in result.front])
    return WindowMap(prepared.shape, windows, params, chosen_rewards, fronts, float(weight))


def apply_windows(
    image: np.ndarray,
    window_map: WindowMap,
    mode: str = "global",
    params: Optional[LoGParameters] = None,
    lattice: Any = None,
    pixel_size_nm: Optional[float] = None,
    min_separation: float = DEFAULT_MIN_SEPARATION,
    how: Union[str, int] = "median",
    return_windows: bool = False,
) -> Any:
    """Find the atoms of the whole image from a window map.

    Args:
        image: the survey image the map was made on.
        window_map: from :func:`optimize_windows`.
        mode: ``"global"`` (one parameter set) or ``"local"`` (each window its own).
        params: with ``mode="global"``, use these instead of the map's.
        lattice, pixel_size_nm: needed with ``mode="local"`` to know the merge distance.
        min_separation: merge distance as a fraction of the nearest-neighbour distance.
        how: with ``mode="global"`` and no ``params``: see :meth:`WindowMap.global_params`.
        return_windows: also return, per atom, the index of the window whose parameters
            found it (-1 in global mode).

    Returns:
        ``(N, 3)`` atoms ``(row, col, sigma)`` in full-image pixels (and the window indices).
    """
    prepared = prepare_image(image)
    if prepared.shape != tuple(window_map.shape):
        raise ValueError(f"image shape {prepared.shape} differs from the map's {window_map.shape}")
    if mode == "global":
        chosen = params if params is not None else window_map.global_params(how)
        atoms = ImageScaleSpaces(prepared, chosen.sigma_step).detect(chosen)
        return (atoms, np.full(len(atoms), -1)) if return_windows else atoms
    if mode != "local":
        raise ValueError(f"mode must be 'global' or 'local', got {mode!r}")
    if lattice is None or pixel_size_nm is None:
        raise ValueError("mode='local' needs lattice= and pixel_size_nm= for the merge distance")
    context = RewardContext.build(
        get_lattice(lattice), pixel_size_nm, prepared.shape, min_separation
    )
    atoms, source = _stitch(prepared, window_map, context.min_separation_px)
    return (atoms, source) if return_windows else atoms


def _stitch(
    prepared: np.ndarray, window_map: WindowMap, merge_px: float
) -> Tuple[np.ndarray, np.ndarray]:
    windows = window_map.windows
    centres = np.array([w.centre for w in windows])
    owner_tree = cKDTree(centres)
    kept, source = [], []
    for k, (w, p) in enumerate(zip(windows, window_map.params)):
        atoms = ImageScaleSpaces(prepared[w.slices], p.sigma_step).detect(p)
        if len(atoms) == 0:
            continue
        atoms = atoms.astype(np.float64, copy=True)
        atoms[:, 0] += w.row0
        atoms[:, 1] += w.col0
        _, owner = owner_tree.query(atoms[:, :2])
        mine = owner == k
        kept.append(atoms[mine])
        source.append(np.full(int(mine.sum()), k))
    if not kept:
        return np.empty((0, 3)), np.empty(0, dtype=int)
    atoms = np.concatenate(kept)
    src = np.concatenate(source)
    # an atom on a seam can be found by both windows, a pixel or two apart: keep one
    off_centre = np.linalg.norm(atoms[:, :2] - centres[src], axis=1)
    alive = np.ones(len(atoms), dtype=bool)
    pairs = cKDTree(atoms[:, :2]).query_pairs(merge_px, output_type="ndarray")
    if len(pairs):
        d = np.linalg.norm(atoms[pairs[:, 0], :2] - atoms[pairs[:, 1], :2], axis=1)
        for a, b in pairs[np.argsort(d, kind="stable")].tolist():
            if src[a] == src[b] or not (alive[a] and alive[b]):
                continue
            drop = b if off_centre[a] <= off_centre[b] else a
            alive[drop] = False
    return atoms[alive], src[alive]
