"""``LoGStarAgent``: atom finding an operator can steer, and EELS positions at chosen atoms.

The agent's cycle on a microscope:

1. ``observe(survey_image, pixel_size_nm)``: on the first image (or when asked, or when the
   magnification changed) LoG* optimises the atom-finding parameters and returns a Pareto
   front; the agent picks a point by its default weight and records that it did so. On later
   images the picked parameters are simply applied (no re-optimisation).
2. ``select(index=...)`` or ``select(weight=...)``: the operator moves along the front; the
   choice (who, how, when) is recorded and applied to the current and the next images.
3. The atoms are classified (GMM on atom-centred patches); ``suggest(n)`` returns EELS
   positions at atoms of the target class (by default the brightest class; ``"outliers"``:
   only the atoms far brighter than the lattice, e.g. the dopants), brightest first, each
   atom once per image, as ``x`` = column, ``y`` = row.
4. ``report()`` is small and JSON-able: the front, the chosen point, the history of choices,
   where the pixel size came from, and whether the atoms are plausible.

LoG* finds bright columns. An annular bright-field (ABF) or bright-field image shows them
dark: with ``contrast="dark"``, or ``"auto"`` (the default) when the survey detector is
called ABF/BF or the image itself shows dark columns (:mod:`agents.contrast`), each image is
inverted before the atoms are looked for (the positions do not change); the decision, what
was asked and why, is in ``report()["contrast"]``. Brightness below (classes, "brightest",
"outliers") is then that of the inverted image: the strongest columns.

Two checks a user cannot easily do by eye run on every image:

* the pixel size: without one (``pixel_size_nm="fft"``, or none given with the image) it is
  estimated from the image's lattice reflections (:mod:`~agents.logstar.calibration`) and
  reported as such, the image's own calibration beside it; with one, the estimate is made
  anyway and a calibration that disagrees with a clear lattice by more than 5 % is reported
  and warned about;
* plausibility (:mod:`~agents.logstar.plausibility`): do the found atoms sit on bright
  columns, with their neighbours where the rewards' lattice puts them? The count alone cannot
  tell (only the W columns of WS2 typed: the right count, in the wrong places). A failed check
  is in ``report()["plausibility"]`` (so in the run: the plan records ``plausible`` and a
  short ``reason`` with each image) and is logged as a warning on every image, by default,
  with the pixel size the image itself suggests when it differs from the one used (the
  real graphene image given 0.02 nm/px instead of its 0.0077: 1062 "atoms", and "the image
  suggests 0.0077 nm/px"). It is raised as an
  :class:`~agents.logstar.plausibility.ImplausibleAtomsWarning` too only with
  ``warn_implausible=True``: a Python warning is shown once per place in a session (the next
  implausible image would pass unsaid), and where warnings are errors (pytest's
  ``filterwarnings = error``, a strict console) it would abort the run and lose the images
  still to come.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from tqdm import tqdm

from ..base import Agent
from ..contrast import ContrastDecision, check_contrast, orient
from .checks import ImageChecks
from .clustering import AtomClusters, cluster_atoms
from .lattice import Lattice, check_pixel_size
from .library import get_lattice
from .optimizer import LoGStarOptimizer, OptimizationResult
from .params import LoGParameters, SearchSpace
from .pareto import Choice, ParetoPoint, select_point
from .plausibility import Plausibility
from .reporting import LoGStarReport
from .rewards import DEFAULT_MIN_SEPARATION, Reward, RewardContext, evaluate_rewards
from .scalespace import ImageScaleSpaces, prepare_image
from .targets import OUTLIER_Z, AtomTargets, Target
from .windows import WindowMap, apply_windows, optimize_windows

# OUTLIER_Z and Target are importable from here as before the split (targets.py)
__all__ = ["OUTLIER_Z", "LoGStarAgent", "Target"]


class LoGStarAgent(AtomTargets, LoGStarReport, ImageChecks, Agent):
    """Reward-driven, unsupervised atom finding with a Pareto front the operator steers.

    Args:
        lattice: the sample's lattice, a name from the library (``"graphene"``, ``"hBN"``,
            ``"WS2"``, ``"WS2:W"``, ``"SrTiO3"``, ``"Si[110]"``, ``"Au[110]"``...: see
            :mod:`agents.logstar.library`) or a :class:`~agents.logstar.lattice.Lattice`.
        pixel_size_nm: survey image pixel size, nm (can also come with each image);
            ``"fft"``: always estimate it from the image's lattice reflections, whatever the
            image's calibration says.
        budget: trials per optimisation.
        n_initial: Sobol trials before BO (default 60 % of the budget, at least 8).
        batch_size: candidates per BO round.
        rewards: rewards to minimise (default QC and ER).
        space: search box (default scaled to the lattice spacing).
        prefilter: with the default box, also search a ``"gaussian"`` or ``"median"``
            pre-filter.
        min_separation: ER's distance as a fraction of the nearest-neighbour distance.
        default_weight: weight of the automatic pick (1 = all on QC, 0 = all on ER).
        n_clusters: GMM classes of atoms (0 or 1: no classification).
        target: atoms :meth:`suggest` picks: ``"brightest"`` (class), ``"outliers"`` (atoms
            far brighter than the lattice: dopants; :data:`OUTLIER_Z`), ``"all"``, or a class
            number.
        seed: seeds the optimiser and the GMM.
        num_threads: torch/BLAS threads while optimising (``None``: leave alone).
        progress: show a progress bar of the trials while optimising (stderr).
        compute: where the windows of :meth:`optimize_windows` run: ``None`` (here, one
            after the other), ``"local"``, ``"local:N"``, a Dask scheduler address or a
            ``distributed.Client`` (one window per worker; see :mod:`agents.compute`).
        warn_implausible: also raise an ``ImplausibleAtomsWarning`` (a Python warning) when
            an image's atoms fail the plausibility check or its calibration is contradicted;
            either way the report says so and the ``agents.logstar`` logger warns (off by
            default: a Python warning is shown once per session, or aborts a run where
            warnings are errors).
        contrast: how the columns show: ``"bright"`` (HAADF/ADF: the image as it is),
            ``"dark"`` (ABF/BF: inverted before the atoms are looked for) or ``"auto"``:
            from the detector's name given to :meth:`observe`, else from the image (its
            column skewness at the lattice's spacing; an image that does not say stays
            bright). Decided on the first image and kept for the next ones unless they
            name another detector; recorded in ``report()["contrast"]``.

    Example (a synthetic graphene survey with three heavy dopants; ``budget=8``, the Sobol
    start alone, keeps it instant: a survey at the microscope wants the default 40):
        >>> import numpy as np
        >>> from agents.logstar import LoGStarAgent, get_lattice
        >>> from agents.logstar.render import render_lattice
        >>> graphene = get_lattice("graphene")
        >>> image = render_lattice(graphene, (96, 96), 0.02, counts=200, seed=0)   # 0.02 nm/px
        >>> yy, xx = np.mgrid[:96, :96]
        >>> for row, col in [(9, 17), (34, 73), (44, 30)]:      # three heavy dopants, on columns
        ...     image += np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / 10.0)
        >>> agent = LoGStarAgent("graphene", pixel_size_nm=0.02, budget=8, target="outliers")
        >>> agent.observe(image)["optimised"]          # optimises, picks weight 0.5
        True
        >>> point = agent.select(weight=0.8, chooser="jane")   # fewer missed atoms, please
        >>> agent.suggest(3)                           # EELS on the dopants (x, y: px)
        [{'_id': 0, 'x': 17.0, 'y': 9.0, ...}, {'_id': 1, 'x': 73.0, 'y': 34.0, ...},
         {'_id': 2, 'x': 30.0, 'y': 44.0, ...}]
        >>> next_image = render_lattice(graphene, (96, 96), 0.02, counts=200, seed=1)
        >>> agent.observe(next_image)["optimised"]     # same parameters, no optimisation
        False
    """

    name = "logstar"

    def __init__(
        self,
        lattice: Any = "graphene",
        pixel_size_nm: Union[float, str, None] = None,
        budget: int = 40,
        n_initial: Optional[int] = None,
        batch_size: int = 4,
        rewards: Optional[Sequence[Reward]] = None,
        space: Optional[SearchSpace] = None,
        prefilter: str = "none",
        min_separation: float = DEFAULT_MIN_SEPARATION,
        default_weight: float = 0.5,
        n_clusters: int = 2,
        target: Target = "brightest",
        seed: int = 0,
        num_threads: Optional[int] = 1,
        progress: bool = False,
        compute: Any = None,
        warn_implausible: bool = False,
        contrast: str = "auto",
    ) -> None:
        super().__init__()
        from ..compute import check_compute

        #: where window jobs run (a string is recorded in config(); a Client is not)
        self.compute = check_compute(compute)
        self.lattice: Lattice = get_lattice(lattice)
        self.pixel_size_from_fft = pixel_size_nm == "fft"
        self.pixel_size_nm = (
            None
            if pixel_size_nm is None or self.pixel_size_from_fft
            else check_pixel_size(pixel_size_nm)
        )
        if budget < 1:
            raise ValueError(f"budget must be >= 1, got {budget}")
        if not 0 <= default_weight <= 1:
            raise ValueError(f"default_weight must lie in [0, 1], got {default_weight}")
        if n_clusters < 0:
            raise ValueError(f"n_clusters must be >= 0, got {n_clusters}")
        self.budget = int(budget)
        self.n_initial = n_initial
        self.batch_size = int(batch_size)
        self.rewards = list(rewards) if rewards is not None else None
        self.space = space
        self.prefilter = prefilter
        self.min_separation = float(min_separation)
        self.default_weight = float(default_weight)
        self.n_clusters = int(n_clusters)
        self.target = self._check_target(target)
        self.seed = int(seed)
        self.num_threads = num_threads
        self.progress = bool(progress)
        self.warn_implausible = bool(warn_implausible)
        #: what was asked (recorded in config()); the decision is contrast_decision
        self.contrast = check_contrast(contrast)

        self.result: Optional[OptimizationResult] = None
        self.choice: Optional[Choice] = None
        self.params: Optional[LoGParameters] = None
        self.params_pixel_size_nm: Optional[float] = None
        self.choices: List[Dict[str, Any]] = []
        self.window_map: Optional[WindowMap] = None
        self.window_mode: Optional[str] = None
        self.image: Optional[np.ndarray] = None
        self.image_pixel_size_nm: Optional[float] = None
        self.atoms = np.empty((0, 3))
        self.clusters: Optional[AtomClusters] = None
        #: the last image's pixel size: where it came from and what the FFT said
        self.pixel_size_info: Dict[str, Any] = {}
        self.plausibility: Optional[Plausibility] = None
        #: bright or dark columns, and why (None before the first image)
        self.contrast_decision: Optional[ContrastDecision] = None
        self._params_contrast: Optional[str] = None  # the contrast params were chosen at
        self.images_seen = 0
        self.optimisations = 0
        self._suggested: set = set()

    # ------------------------------------------------------------------ the front

    @property
    def front(self) -> List[ParetoPoint]:
        """The current Pareto front (empty before the first optimisation)."""
        return self.result.front if self.result is not None else []

    # ------------------------------------------------------------------ optimise

    def optimize(
        self,
        images: Union[np.ndarray, Sequence[np.ndarray]],
        pixel_size_nm: Optional[float] = None,
        budget: Optional[int] = None,
    ) -> OptimizationResult:
        """Run LoG* on one or several survey images and pick a point automatically.

        The automatic pick uses the operator's last weight if their last choice was by weight,
        else the agent's ``default_weight``; it is recorded with ``chooser="agent"``.
        """
        px = self._pixel_for(pixel_size_nm)
        if isinstance(images, np.ndarray) and images.ndim == 2:
            images = [images]
        first = images[0] if len(images) else None
        contrast = self._decide(first, self.lattice.nn_distance_px(px)).contrast
        images = [orient(im, contrast) for im in images]
        space = self.space
        if space is None:
            space = SearchSpace.for_spacing(self.lattice.nn_distance_px(px), self.prefilter)
        opt = LoGStarOptimizer(
            images,
            self.lattice,
            px,
            rewards=self.rewards,
            space=space,
            min_separation=self.min_separation,
        )
        initial = (
            [self.params]
            if self.params is not None and self.params.sigma_step == space.sigma_step
            else []
        )
        total = int(budget or self.budget)
        with tqdm(
            total=total, desc="LoG* trials", unit="trial", leave=False, disable=not self.progress
        ) as bar:
            self.result = opt.run(
                budget=total,
                n_initial=self.n_initial,
                batch_size=self.batch_size,
                seed=self.seed + self.optimisations,
                num_threads=self.num_threads,
                initial_params=initial,
                callback=lambda trial: bar.update(1),
            )
        self.optimisations += 1
        self.window_map, self.window_mode = None, None
        self._record(select_point(self.front, weight=self._auto_weight(), chooser="agent"))
        self.params_pixel_size_nm = px
        self._params_contrast = contrast
        return self.result

    def _auto_weight(self) -> Union[float, List[float]]:
        """The weight of an automatic pick: the operator's last weight if they chose by
        weight, else ``default_weight``; equal weights with more than two rewards."""
        names = self.result.reward_names if self.result is not None else []
        operator = [c for c in self.choices if c["chooser"] != "agent" and c["method"] == "weight"]
        if operator and list(operator[-1]["weights"] or {}) == list(names):
            weights = list(operator[-1]["weights"].values())
            return weights[0] if len(weights) == 2 else weights
        return self.default_weight if len(names) == 2 else [1.0] * len(names)

    def select(
        self,
        index: Optional[int] = None,
        weight: Union[float, Sequence[float], None] = None,
        chooser: str = "operator",
    ) -> ParetoPoint:
        """Pick a point of the front (by index, or by a weight between the rewards).

        The choice is recorded (see :meth:`report`) and applied at once to the current image
        (atoms and classes are recomputed) and to every later image.

        Raises:
            ValueError: no front yet, or a bad index/weight.
        """
        if self.result is None:
            raise ValueError("no Pareto front yet: observe a survey image first")
        choice = select_point(self.front, index=index, weight=weight, chooser=chooser)
        self._record(choice)
        if self.image is not None:
            self._analyse(self.image, self.image_pixel_size_nm or self._pixel_for(None))
        return self.front[choice.index]

    def _record(self, choice: Choice) -> None:
        point = self.front[choice.index]
        self.choice = choice
        self.params = point.params
        self.window_mode = None
        entry = choice.as_dict()
        entry.update(
            {
                "params": point.params.as_dict(),
                "rewards": dict(point.rewards),
                "optimisation": self.optimisations,
            }
        )
        self.choices.append(entry)

    def optimize_windows(
        self,
        image: np.ndarray,
        pixel_size_nm: Optional[float] = None,
        window: int = 128,
        stride: Optional[int] = None,
        mode: str = "global",
        budget: Optional[int] = None,
        chooser: str = "operator",
    ) -> WindowMap:
        """LoG* on sliding windows of one image (paper section III), then apply one
        parameter set everywhere (``mode="global"``, the windows' median) or each window's own
        (``mode="local"``, only for images of this shape). The decision is recorded."""
        if mode not in ("global", "local"):
            raise ValueError(f"mode must be 'global' or 'local', got {mode!r}")
        px = self._pixel_for(pixel_size_nm)
        contrast = self._decide(image, self.lattice.nn_distance_px(px)).contrast
        image = orient(image, contrast)
        space = self.space or SearchSpace.for_spacing(
            self.lattice.nn_distance_px(px), self.prefilter
        )
        wmap = optimize_windows(
            image,
            self.lattice,
            px,
            window=window,
            stride=stride,
            budget=int(budget or self.budget),
            weight=self.default_weight,
            seed=self.seed,
            space=space,
            rewards=self.rewards,
            min_separation=self.min_separation,
            n_initial=self.n_initial,
            batch_size=self.batch_size,
            num_threads=self.num_threads,
            compute=self.compute,
        )
        self.window_map = wmap
        self.choice = None  # no point of a front stands for the windows' parameters
        self.params = wmap.global_params()
        self.params_pixel_size_nm = px
        self._params_contrast = contrast
        self.window_mode = mode
        self.choices.append(
            {
                "index": None,
                "method": f"windows:{mode}",
                "chooser": chooser,
                "weights": None,
                "time": time.time(),
                "params": self.params.as_dict(),
                "rewards": None,
                "optimisation": self.optimisations,
                "windows": len(wmap.windows),
            }
        )
        self._analyse(prepare_image(image), px)
        return wmap

    # ------------------------------------------------------------------ images

    def observe(
        self,
        survey_image: np.ndarray,
        pixel_size_nm: Optional[float] = None,
        optimize: Optional[bool] = None,
        detector: Optional[str] = None,
    ) -> Dict[str, Any]:
        """Take a new survey image: optimise if needed, find and classify its atoms.

        Args:
            survey_image: the 2-D image.
            pixel_size_nm: its pixel size, nm (the calibration of the survey image).
            optimize: ``True`` re-optimises, ``False`` never does; ``None`` (default)
                optimises on the first image, when the pixel size changed by more than 1 %
                (the parameters are in pixels) and when the contrast changed (another
                detector).
            detector: the survey detector's name (``"HAADF"``, ``"ABF"``...), when known:
                under ``contrast="auto"`` it says whether the columns are bright or dark.

        Returns:
            A short summary: number of atoms, atoms per class, whether it optimised (the
            contrast taken is in ``report()["contrast"]``).
        """
        prepared = prepare_image(survey_image)
        self.pixel_size_info = {}  # this image's: _pixel_for says "fft" if it estimated it
        # the contrast first: the atoms' spacing (the pixel size's fallback) is read on blobs
        contrast = self._decide(prepared, self._spacing_px(pixel_size_nm), detector).contrast
        if contrast == "dark":
            prepared = prepare_image(orient(survey_image, contrast))
        px = self._pixel_for(pixel_size_nm, prepared)
        self._cross_check(
            prepared, px, pixel_size_nm if pixel_size_nm is not None else self.pixel_size_nm
        )
        if optimize is None:
            optimize = (
                self.params is None
                or (
                    self.params_pixel_size_nm is not None
                    and abs(px / self.params_pixel_size_nm - 1) > 0.01
                )
                or (self._params_contrast is not None and self._params_contrast != contrast)
            )
        if optimize:
            self.optimize([survey_image], px)
        elif self.params is None:
            raise ValueError("no parameters chosen yet: call observe(..., optimize=True)")
        self.images_seen += 1
        self._analyse(prepared, px)
        return {
            "image": self.images_seen,
            "optimised": bool(optimize),
            "n_atoms": len(self.atoms),
            "clusters": self.clusters.summary()["counts"] if self.clusters is not None else None,
        }

    def _analyse(self, prepared: np.ndarray, px: float) -> None:
        self.image, self.image_pixel_size_nm = prepared, px
        self.atoms = self._find(prepared, px)
        # whatever the rewards say: do the atoms sit where the lattice puts them?
        self._check_atoms(prepared, px)
        self._suggested = set()
        self.clusters = None
        if self.n_clusters >= 2 and len(self.atoms) >= max(3, self.n_clusters):
            self.clusters = cluster_atoms(
                prepared,
                self.atoms,
                self.n_clusters,
                nn_distance_px=self.lattice.nn_distance_px(px),
                seed=self.seed,
            )

    def _find(self, prepared: np.ndarray, px: float) -> np.ndarray:
        if self.params is None:
            raise ValueError("no parameters chosen yet: observe a survey image first")
        if (
            self.window_mode == "local"
            and self.window_map is not None
            and tuple(prepared.shape) == tuple(self.window_map.shape)
        ):
            return apply_windows(
                prepared,
                self.window_map,
                mode="local",
                lattice=self.lattice,
                pixel_size_nm=px,
                min_separation=self.min_separation,
            )
        atoms = ImageScaleSpaces(prepared, self.params.sigma_step).detect(self.params)
        return atoms.astype(np.float64, copy=False)

    def find_atoms(self, image: np.ndarray, pixel_size_nm: Optional[float] = None) -> np.ndarray:
        """Atoms of an image with the chosen parameters, without re-optimising and without
        changing the agent's state: ``(N, 3)`` rows ``(row, col, sigma)``, pixels (the
        image taken the way round the agent takes its images)."""
        px = self._pixel_for(pixel_size_nm)
        return self._find(prepare_image(self._oriented(image, px)), px)

    def rewards_of(
        self, image: np.ndarray, pixel_size_nm: Optional[float] = None
    ) -> Dict[str, float]:
        """The rewards the chosen parameters earn on an image (to watch for drift)."""
        from .rewards import default_rewards, reward_name

        px = self._pixel_for(pixel_size_nm)
        prepared = prepare_image(self._oriented(image, px))
        atoms = self._find(prepared, px)
        rewards = self.rewards or default_rewards()
        ctx = RewardContext.build(self.lattice, px, prepared.shape, self.min_separation)
        values = evaluate_rewards(rewards, [atoms], [prepared], [ctx])
        return {reward_name(r, m): float(v) for m, (r, v) in enumerate(zip(rewards, values))}
