"""A multi-armed bandit over regions of the survey: which *kind* of place pays off?

The first seed paper notes that what DKL does "can be accomplished with RL, bandits, etc.
... not yet attempted". Here it is attempted: the survey field is split into **arms** --
clusters of similar-looking patches (``arms="clusters"``: k-means on the patches' principal
components, so "bright particle", "plate", "vacuum" become arms), square tiles of the field
(``arms="tiles"``), the clusters of a rotation-invariant VAE's latent space (``arms="latent"``:
:class:`agents.latent.LatentAgent` trained on the survey, seeded, so a run's record rebuilds
the same arms), or any label map given by the caller (``labels=``; such a run cannot be
rebuilt from its record, which does not hold the map). Each pull of an arm measures a
spectrum at an unmeasured pixel of that arm; its scalarized value is the arm's reward.

Two classic policies choose the arm:

- ``"thompson"``: Thompson sampling with a Gaussian model of each arm's mean reward (prior
  centred on the mean of all rewards, noise from the pooled spread within arms): draw a mean
  for every arm from its posterior, pull the best draw;
- ``"ucb"``: UCB1 (``mean + c · spread · sqrt(2 ln t / n)``), every arm pulled once first.

No network, no GP: a step costs microseconds, and the agent says in plain words what it
believes (each arm's pulls, mean reward and posterior spread) in :meth:`BanditAgent.report`.
Everything random comes from one seeded generator, so the same seed and the same
measurements give the same decisions (forensics replays them).

Example:
    >>> import numpy as np
    >>> from agents.bandit import BanditAgent
    >>> survey = np.zeros((32, 32)); survey[:, 16:] = 1.0     # vacuum | a bright film
    >>> agent = BanditAgent(survey, arms="clusters", n_arms=2, seed=0)
    >>> s = agent.suggest(1)[0]          # every arm is pulled once first
    >>> s["arm"], s["source"]
    (0, 'first pull')
    >>> agent.ingest([[s["x"], s["y"]]], [5.0])     # the spectrum's scalarized value
    >>> agent.report()["arms"][0]["pulls"], agent.report()["arms"][0]["mean"]
    (1, 5.0)
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np

from .base import Agent, Suggestion
from .images import survey_image_array
from .patches import candidate_grid, extract_patches

__all__ = ["ARM_KINDS", "POLICIES", "BanditAgent", "region_labels"]

POLICIES = ("thompson", "ucb")
ARM_KINDS = ("clusters", "tiles", "latent", "labels")
#: the rVAE settings ``arms="latent"`` takes (the clusters, step and seed are the bandit's)
LATENT_SETTINGS = ("window", "latent_dim", "epochs", "train_step", "num_threads", "device")


def _latent_arms(
    image: np.ndarray,
    n_arms: int,
    step: int,
    seed: int,
    latent: Optional[Mapping[str, Any]],
    progress: Optional[Callable[[int, int], None]] = None,
) -> tuple[np.ndarray, np.ndarray, Dict[str, Any]]:
    """Arms = the Gaussian-mixture clusters of the rVAE's latent space over the bandit's own
    candidate grid: ``(candidates, cluster of each, the rVAE's report)``."""
    options = dict(latent or {})
    unknown = sorted(set(options) - set(LATENT_SETTINGS))
    if unknown:
        raise ValueError(f"latent settings {unknown} not known; choose from {LATENT_SETTINGS}")
    from .latent import LatentAgent  # torch and pyro: only for latent arms

    space = LatentAgent(
        image, n_clusters=n_arms, step=step, seed=seed, progress=progress, **options
    )
    report = space.report()
    return space.candidates, space.cluster.astype(np.int64), {
        "rvae": report["rvae"], "device": report["device"], "clusters": report["clusters"],
    }  # fmt: skip


def region_labels(
    survey_image: Any,
    arms: str = "clusters",
    n_arms: int = 8,
    window: int = 8,
    step: int = 2,
    seed: int = 0,
    latent: Optional[Mapping[str, Any]] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split the field into arms: ``(candidates (N, 2) x, y, arm label (N,))``.

    Args:
        survey_image: 2-D survey image.
        arms: ``"clusters"`` (k-means on the patches' first principal components plus their
            mean brightness), ``"tiles"`` (a near-square grid of ``n_arms`` tiles) or
            ``"latent"`` (the ``n_arms`` Gaussian-mixture clusters of a rotation-invariant
            VAE's latent space, :class:`agents.latent.LatentAgent`).
        n_arms: number of arms.
        window: patch side for the clusters, px.
        step: candidate grid spacing, px.
        seed: seeds k-means, or the rVAE and its mixture.
        latent: the rVAE's settings for ``"latent"`` (:data:`LATENT_SETTINGS`, e.g.
            ``{"epochs": 20}``).

    Raises:
        ValueError: an unknown kind or fewer than 2 arms.
    """
    image = survey_image_array(survey_image)
    if image.ndim != 2:
        raise ValueError(f"survey image must be 2-D, got {image.shape}")
    if int(n_arms) < 2:
        raise ValueError(f"a bandit needs at least 2 arms, got {n_arms}")
    candidates = candidate_grid(image.shape, int(step))
    if arms == "tiles":
        rows, cols = image.shape
        ny = max(1, int(np.rint(np.sqrt(n_arms * rows / cols))))
        nx = max(1, int(np.ceil(n_arms / ny)))
        tx = np.minimum((candidates[:, 0] * nx / cols).astype(int), nx - 1)
        ty = np.minimum((candidates[:, 1] * ny / rows).astype(int), ny - 1)
        return candidates, (ty * nx + tx).astype(np.int64)
    if arms == "latent":
        candidates, labels, _ = _latent_arms(image, int(n_arms), int(step), int(seed), latent)
        return candidates, labels
    if arms == "labels":
        raise ValueError(
            "arms='labels' needs the label map itself (labels=...); a run's record does not "
            "hold it, so such a run cannot be rebuilt: arms='latent' gives the latent clusters "
            "reproducibly"
        )
    if arms != "clusters":
        raise ValueError(f"arms must be one of {ARM_KINDS[:3]} (or labels=...), got {arms!r}")
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    patches, _ = extract_patches(image, window=int(window), positions=candidates)
    comps = min(6, patches.shape[1], len(patches))
    features = PCA(n_components=comps, random_state=int(seed)).fit_transform(patches)
    # brightness matters in HAADF (Au brighter than Ag), so it is a feature of its own
    features = np.column_stack([features, patches.mean(axis=1) * np.sqrt(patches.shape[1])])
    features /= features.std(axis=0) + 1e-12
    km = KMeans(n_clusters=int(n_arms), n_init=4, random_state=int(seed)).fit(features)
    return candidates, km.labels_.astype(np.int64)


class BanditAgent(Agent):
    """Thompson sampling or UCB over arms (regions or clusters of the survey).

    Args:
        survey_image: 2-D survey image of the scan field.
        arms: ``"clusters"``, ``"tiles"``, ``"latent"`` (see :func:`region_labels`); ignored
            when ``labels`` is given.
        n_arms: number of arms for clusters and tiles.
        labels: an integer label map of the survey's shape (arm of every pixel; negative =
            never measure there), e.g. latent-space clusters.
        policy: ``"thompson"`` or ``"ucb"``.
        exploration: UCB's ``c``; Thompson's prior width in units of the rewards' spread.
        window: patch side for ``arms="clusters"``, px.
        step: candidate grid spacing, px.
        seed: seeds the clustering (k-means, or the rVAE and its mixture) and every random
            choice.
        latent: the rVAE's settings for ``arms="latent"`` (``epochs``, ``window``,
            ``latent_dim``, ``train_step``, ``num_threads``, ``device``; the report says
            how long it trained and where).
        progress: for ``arms="latent"``, called with ``(steps done, steps in all)`` while
            the rVAE trains (:meth:`agents.rvae.RotationInvariantVAE.fit_image`); not
            recorded, it changes no decision.

    Suggestions carry ``arm``, ``acquisition`` (the Thompson draw or the UCB score of the
    chosen arm), ``mean`` and ``std`` (the arm's posterior) and ``source``.
    """

    name = "bandit"

    def __init__(
        self,
        survey_image: Any,
        arms: str = "clusters",
        n_arms: int = 8,
        labels: Optional[Any] = None,
        policy: str = "thompson",
        exploration: float = 1.0,
        window: int = 8,
        step: int = 2,
        seed: int = 0,
        latent: Optional[Mapping[str, Any]] = None,
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> None:
        super().__init__()
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if not exploration > 0:
            raise ValueError(f"exploration must be > 0, got {exploration}")
        image = survey_image_array(survey_image)
        if image.ndim != 2:
            raise ValueError(f"survey image must be 2-D, got {image.shape}")
        self.image_shape = image.shape
        self.policy = policy
        self.exploration = float(exploration)
        self.window = int(window)
        self.step = int(step)
        self.seed = int(seed)
        self.n_arms = int(n_arms)
        # what was asked for, recorded to rebuild the agent: the arms found may be fewer (a
        # latent cluster without a candidate) or more (tiles fill a grid)
        self._n_arms_asked = self.n_arms
        self.latent: Optional[Dict[str, Any]] = None
        #: for ``arms="latent"``: the rVAE's training (seconds, device) and its clusters
        self.latent_report: Optional[Dict[str, Any]] = None
        if labels is not None:
            lab = np.asarray(labels)
            if lab.shape != image.shape:
                raise ValueError(f"labels {lab.shape} must have the survey's shape {image.shape}")
            self.arms = "labels"
            cand = candidate_grid(image.shape, self.step)
            arm_of = lab[cand[:, 1].astype(int), cand[:, 0].astype(int)].astype(np.int64)
            keep = arm_of >= 0
            cand, arm_of = cand[keep], arm_of[keep]
        elif arms == "latent":
            self.arms = arms
            self.latent = dict(latent or {})
            cand, arm_of, self.latent_report = _latent_arms(
                image, self.n_arms, self.step, self.seed, self.latent, progress
            )
        else:
            self.arms = arms
            cand, arm_of = region_labels(image, arms, self.n_arms, self.window, self.step, seed)
        ids = np.unique(arm_of)
        if len(ids) < 2:
            raise ValueError("the arms hold fewer than 2 regions: nothing to choose between")
        # arms renumbered 0..K-1 in the order of their labels
        self.arm_labels = ids
        self.candidates = cand
        self.arm_of = np.searchsorted(ids, arm_of)
        self.n_arms = len(ids)
        self._rng = np.random.default_rng(self.seed)
        self._free = np.ones(len(cand), dtype=bool)
        self._pixel = {(int(x), int(y)): i for i, (x, y) in enumerate(cand)}
        self.pulls = np.zeros(self.n_arms, dtype=np.int64)
        self.sums = np.zeros(self.n_arms)
        self.sumsq = np.zeros(self.n_arms)

    # ------------------------------------------------------------------ model

    def _arm_index(self, x: float, y: float) -> int:
        """The arm of a measured position: its candidate, or the nearest candidate's."""
        i = self._pixel.get((round(x), round(y)))
        if i is None:
            d = np.sum((self.candidates - (x, y)) ** 2, axis=1)
            i = int(np.argmin(d))
        self._free[i] = False
        return int(self.arm_of[i])

    def _ingest_unusable(self, positions: np.ndarray) -> None:
        for x, y in positions:
            self._arm_index(x, y)  # its pixel is taken; the arm learns nothing from it

    def _ingest(self, positions: np.ndarray, values: np.ndarray) -> None:
        for (x, y), v in zip(positions, values):
            a = self._arm_index(x, y)
            self.pulls[a] += 1
            self.sums[a] += v
            self.sumsq[a] += v * v

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Each arm's posterior mean reward and its standard deviation (Gaussian model).

        Prior: the mean of all rewards, spread ``exploration`` x their standard deviation;
        noise: the pooled spread of rewards within arms (the overall spread until arms hold
        two pulls). Before any reward: zeros and ones (every arm alike).
        """
        n = self.pulls.astype(np.float64)
        total = n.sum()
        if total == 0:
            return np.zeros(self.n_arms), np.ones(self.n_arms)
        mean_all = self.sums.sum() / total
        var_all = max(self.sumsq.sum() / total - mean_all**2, 0.0)
        scale2 = var_all if var_all > 0 else max(abs(mean_all), 1.0) ** 2
        within = self.sumsq - np.where(n > 0, self.sums**2 / np.maximum(n, 1), 0.0)
        dof = (n - 1).clip(min=0).sum()
        noise2 = within.sum() / dof if dof >= 2 and within.sum() > 0 else scale2
        prior2 = (self.exploration**2) * scale2
        precision = 1.0 / prior2 + n / noise2
        mean = (mean_all / prior2 + self.sums / noise2) / precision
        return mean, np.sqrt(1.0 / precision)

    def _scores(self, pulls: np.ndarray) -> np.ndarray:
        mean, std = self.posterior()
        if self.policy == "thompson":
            return mean + std * self._rng.standard_normal(self.n_arms)
        t = max(pulls.sum(), 1)
        spread = self._spread()
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = self.exploration * spread * np.sqrt(2.0 * np.log(t) / pulls)
        return np.where(pulls > 0, mean + bonus, np.inf)

    def _spread(self) -> float:
        """The standard deviation of all rewards so far (1 before there are two)."""
        total = self.pulls.sum()
        if total == 0:
            return 1.0
        mean_all = self.sums.sum() / total
        var_all = max(self.sumsq.sum() / total - mean_all**2, 0.0)
        return float(np.sqrt(var_all)) if var_all > 0 else 1.0

    # ------------------------------------------------------------------ suggest

    def suggest(self, n: int = 1) -> List[Suggestion]:
        """The next ``n`` positions: an arm by the policy, then an unmeasured pixel of it.

        An arm with no unmeasured pixel left is never chosen; when none is left at all,
        fewer than ``n`` suggestions come back.
        """
        out: List[Suggestion] = []
        pulls = self.pulls.astype(np.float64).copy()
        taken: set[int] = set()
        mean, std = self.posterior()
        for _ in range(int(n)):
            free = self._free.copy()
            if taken:
                free[list(taken)] = False
            open_arms = np.bincount(self.arm_of[free], minlength=self.n_arms) > 0
            if not open_arms.any():
                break
            scores = np.where(open_arms, self._scores(pulls), -np.inf)
            best = np.flatnonzero(scores == scores.max())
            arm = int(best[self._rng.integers(len(best))]) if len(best) > 1 else int(best[0])
            choices = np.flatnonzero(free & (self.arm_of == arm))
            i = int(choices[self._rng.integers(len(choices))])
            taken.add(i)
            pulls[arm] += 1  # a batch spreads over arms (UCB) as if the pull were made
            x, y = self.candidates[i]
            out.append(
                self.make_suggestion(
                    x,
                    y,
                    arm=int(self.arm_labels[arm]),
                    acquisition=float(scores[arm]) if np.isfinite(scores[arm]) else 1e300,
                    mean=float(mean[arm]),
                    std=float(std[arm]),
                    source="bandit" if self.pulls[arm] else "first pull",
                )
            )
        return out

    # ------------------------------------------------------------------ report

    def arm_map(self) -> np.ndarray:
        """The arm label of every candidate as an image (``-1`` where no candidate)."""
        out = np.full(self.image_shape, -1, dtype=np.int64)
        xs, ys = self.candidates[:, 0].astype(int), self.candidates[:, 1].astype(int)
        out[ys, xs] = self.arm_labels[self.arm_of]
        return out

    def predict_maps(self) -> Dict[str, np.ndarray]:
        """Each arm's posterior mean and spread painted over its candidates (grid images)."""
        mean, std = self.posterior()
        rows = len(np.unique(self.candidates[:, 1]))
        cols = len(np.unique(self.candidates[:, 0]))
        grid = self.arms != "labels" or rows * cols == len(self.candidates)
        maps = {
            "mean": mean[self.arm_of],
            "std": std[self.arm_of],
            "acquisition": mean[self.arm_of] + std[self.arm_of],
            "x": self.candidates[:, 0],
            "y": self.candidates[:, 1],
        }
        shape = (rows, cols) if grid else None
        return {k: (v.reshape(shape) if shape else v).astype(np.float32) for k, v in maps.items()}

    def config(self) -> Dict[str, Any]:
        config = {
            "arms": self.arms,
            "n_arms": self._n_arms_asked,
            "policy": self.policy,
            "exploration": self.exploration,
            "window": self.window,
            "step": self.step,
            "seed": self.seed,
        }
        if self.latent is not None:
            config["latent"] = dict(self.latent)
        return config

    def report(self) -> Dict[str, Any]:
        """Pulls, mean reward and posterior of every arm; the arm believed best."""
        mean, std = self.posterior()
        best = self.get_best_points()
        return {
            "agent": self.name,
            "config": self.config(),
            "n_measured": len(self.values),
            "best_value": best[0][2]["value"] if best else None,
            "best_position": [best[0][1]["x"], best[0][1]["y"]] if best else None,
            "best_arm": int(self.arm_labels[int(np.argmax(mean))]) if len(self.values) else None,
            "arms": {
                int(label): {
                    "pixels": int(np.sum(self.arm_of == a)),
                    "pulls": int(self.pulls[a]),
                    "mean": float(mean[a]),
                    "std": float(std[a]),
                }
                for a, label in enumerate(self.arm_labels)
            },
            **({"latent": self.latent_report} if self.latent_report is not None else {}),
        }
