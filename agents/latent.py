"""Discovery in feature space: EELS where the rVAE's latent space says the field is different.

Forward method 2 of the first seed paper: the survey's patches are encoded by a
rotation-invariant VAE (:mod:`agents.rvae`); the latent space is clustered (a Gaussian
mixture), and spectra go to

- ``"representatives"``: the patch nearest to each cluster's centre, largest clusters
  first (one spectrum per kind of structure), then
- ``"novelty"``: the patches least likely under the mixture (structure seen nowhere else),
  farthest first from what was already measured in latent space.

``mode="mixed"`` (default) takes the representatives, then novelty. The agent also gives the
latent map of the survey (:meth:`LatentAgent.latent_map`: the latent coordinates, cluster and
angle of every candidate), and :func:`latent_trajectory` places any run's measured positions
(a DKL run's, say) in the same latent space: the seed paper's Figure 4d.

Example (the rVAE trains when the agent is made: one epoch on a tiny image here, a
second or so; a real survey wants the default 20):
    >>> import numpy as np
    >>> from agents.latent import LatentAgent, latent_trajectory
    >>> survey = np.zeros((32, 32)); survey[:, 16:] = 1.0     # vacuum | a bright film
    >>> agent = LatentAgent(survey, n_clusters=2, epochs=1, seed=0, device="cpu")
    >>> [(s["source"], s["cluster"]) for s in agent.suggest(2)]   # one per cluster
    [('representative', 0), ('representative', 1)]
    >>> where = latent_trajectory(agent, [[4.0, 4.0], [28.0, 4.0]])   # a run's positions
    >>> where["z"].shape, sorted(where["cluster"].tolist())
    ((2, 2), [0, 1])
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .base import Agent, Suggestion
from .images import survey_image_array
from .patches import candidate_grid
from .rvae import RotationInvariantVAE

__all__ = ["MAX_TRAIN_PATCHES", "MODES", "LatentAgent", "latent_trajectory", "training_step"]

MODES = ("mixed", "representatives", "novelty")

#: the rVAE trains on at most this many patches: on a larger field ``train_step`` is widened
#: until the grid holds no more (a 1024 x 1024 survey at ``train_step=4``, 65,536 patches x
#: 20 epochs, trained for over 3 minutes on one CPU thread before the first suggestion);
#: fields up to 256 x 256 at ``train_step=4`` are trained as asked
MAX_TRAIN_PATCHES = 4096


def training_step(shape: tuple, train_step: int) -> int:
    """The spacing, px, of the rVAE's training patches on a field of ``shape``: ``train_step``,
    or the smallest wider one whose grid holds at most :data:`MAX_TRAIN_PATCHES` patches."""
    step = int(train_step)
    rows, cols = (int(v) for v in shape[-2:])
    while -(-rows // step) * -(-cols // step) > MAX_TRAIN_PATCHES:
        step += 1
    return step


class LatentAgent(Agent):
    """EELS at cluster representatives and novel patches of an rVAE's latent space.

    Args:
        survey_image: 2-D survey image.
        n_clusters: Gaussian-mixture clusters of the latent space.
        mode: ``"mixed"``, ``"representatives"`` or ``"novelty"``.
        step: candidate grid spacing, px (the latent map's resolution).
        train_step: spacing of the training patches, px; widened on a field so large that
            the grid would hold more than :data:`MAX_TRAIN_PATCHES` (the report says the
            spacing used).
        window, latent_dim, epochs: the rVAE's (see :class:`~agents.rvae.RotationInvariantVAE`).
        seed: seeds the rVAE and the mixture.
        num_threads: torch threads for training and encoding.
        device: where the rVAE trains: ``"auto"`` (a GPU when there is one), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"`` (:mod:`agents.device`); the report says where it ran.
        progress: called with ``(steps done, steps in all)`` while the rVAE trains (a few
            seconds; see :meth:`~agents.rvae.RotationInvariantVAE.fit_image`). Not a setting:
            not recorded, it changes nothing the agent decides.
    """

    name = "latent"

    def __init__(
        self,
        survey_image: Any,
        n_clusters: int = 5,
        mode: str = "mixed",
        step: int = 2,
        train_step: int = 4,
        window: int = 12,
        latent_dim: int = 2,
        epochs: int = 20,
        seed: int = 0,
        num_threads: Optional[int] = 1,
        device: str = "auto",
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
        from sklearn.mixture import GaussianMixture

        image = survey_image_array(survey_image)
        self.image = image
        self.n_clusters = int(n_clusters)
        self.mode = mode
        self.step = int(step)
        self.train_step = int(train_step)
        if self.train_step < 1:
            raise ValueError(f"train_step must be >= 1 pixel, got {train_step}")
        #: the spacing trained on: ``train_step``, widened on a large field
        self.train_step_used = training_step(image.shape, self.train_step)
        self.seed = int(seed)
        self.vae = RotationInvariantVAE(
            window=window, latent_dim=latent_dim, epochs=epochs, seed=seed,
            num_threads=num_threads, device=device,
        ).fit_image(image, step=self.train_step_used, progress=progress)  # fmt: skip
        self.candidates = candidate_grid(image.shape, self.step)
        self.z, self.angle = self.vae.encode_positions(image, self.candidates)
        self.mixture = GaussianMixture(self.n_clusters, random_state=self.seed).fit(self.z)
        self.cluster = self.mixture.predict(self.z)
        self.log_density = self.mixture.score_samples(self.z)
        self._measured = np.zeros(len(self.candidates), dtype=bool)
        self._index = {(int(x), int(y)): i for i, (x, y) in enumerate(self.candidates)}
        self._queue = self._representatives() if mode != "novelty" else []

    def _representatives(self) -> List[int]:
        sizes = np.bincount(self.cluster, minlength=self.n_clusters)
        out = []
        for c in np.argsort(-sizes, kind="stable"):
            members = np.flatnonzero(self.cluster == c)
            if len(members):
                d = np.linalg.norm(self.z[members] - self.mixture.means_[c], axis=1)
                out.append(int(members[np.argmin(d)]))
        return out

    def _ingest(self, positions: np.ndarray, values: np.ndarray) -> None:
        self._mark_measured(positions)

    def _ingest_unusable(self, positions: np.ndarray) -> None:
        self._mark_measured(positions)

    def _mark_measured(self, positions: np.ndarray) -> None:
        # measured, with or without a usable value: either way not suggested again
        for x, y in positions:
            i = self._index.get((round(float(x)), round(float(y))))
            if i is not None:
                self._measured[i] = True

    def _novel(self) -> Optional[int]:
        free = np.flatnonzero(~self._measured)
        if not len(free):
            return None
        score = -self.log_density[free]  # least likely first
        if self._measured.any():
            # and far, in latent space, from every measured patch (no two of one novelty)
            zm = self.z[self._measured]
            gap = np.min(np.linalg.norm(self.z[free, None, :] - zm[None], axis=2), axis=1)
            score = score + np.log(gap + 1e-6)
        return int(free[np.argmax(score)])

    def suggest(self, n: int = 1) -> List[Suggestion]:
        """Representatives first (``mixed``/``representatives``), then novelty."""
        out: List[Suggestion] = []
        while len(out) < n:
            source = "representative"
            while self._queue and self._measured[self._queue[0]]:
                self._queue.pop(0)
            if self._queue:
                i = self._queue.pop(0)
            elif self.mode == "representatives":
                break
            else:
                i = self._novel()
                source = "novelty"
                if i is None:
                    break
            self._measured[i] = True  # not suggested twice, even before it is measured
            x, y = self.candidates[i]
            out.append(
                self.make_suggestion(
                    x,
                    y,
                    cluster=int(self.cluster[i]),
                    z=self.z[i].tolist(),
                    angle=float(self.angle[i]),
                    log_density=float(self.log_density[i]),
                    acquisition=float(-self.log_density[i]),
                    source=source,
                )
            )
        return out

    def latent_map(self) -> Dict[str, np.ndarray]:
        """Latent coordinates, cluster, angle and log-density of every candidate, as images
        over the candidate grid (``z`` as ``(rows, cols, latent_dim)``)."""
        rows = len(np.unique(self.candidates[:, 1]))
        cols = len(np.unique(self.candidates[:, 0]))
        return {
            "z": self.z.reshape(rows, cols, -1).astype(np.float32),
            "cluster": self.cluster.reshape(rows, cols).astype(np.int32),
            "angle": self.angle.reshape(rows, cols).astype(np.float32),
            "log_density": self.log_density.reshape(rows, cols).astype(np.float32),
            "x": self.candidates[:, 0].reshape(rows, cols).astype(np.float32),
            "y": self.candidates[:, 1].reshape(rows, cols).astype(np.float32),
        }

    def config(self) -> Dict[str, Any]:
        vae = self.vae.config()
        return {
            "n_clusters": self.n_clusters,
            "mode": self.mode,
            "step": self.step,
            "train_step": self.train_step,
            "window": vae["window"],
            "latent_dim": vae["latent_dim"],
            "epochs": vae["epochs"],
            "seed": self.seed,
            "num_threads": vae["num_threads"],
            "device": vae["device"],
        }

    def report(self) -> Dict[str, Any]:
        """Clusters (sizes, centres), measured per cluster, the rVAE's training."""
        counts = np.bincount(self.cluster, minlength=self.n_clusters)
        measured = np.bincount(self.cluster[self._measured], minlength=self.n_clusters)
        return {
            "agent": self.name,
            "config": self.config(),
            "n_measured": len(self.values),
            "clusters": {
                "sizes": counts.tolist(),
                "measured": measured.tolist(),
                "centres": self.mixture.means_.tolist(),
            },
            "rvae": {
                "final_loss": self.vae.losses[-1] if self.vae.losses else None,
                "train_step": self.train_step_used,
                "train_patches": len(candidate_grid(self.image.shape, self.train_step_used)),
                "train_seconds": self.vae.train_seconds,
                "train_cpu_seconds": self.vae.train_cpu_seconds,
            },
            # where the latent space was learnt (config() holds what was asked for)
            "device": self.vae.where(),
        }


def latent_trajectory(agent: LatentAgent, positions: Any) -> Dict[str, np.ndarray]:
    """Where measured positions ``(N, 2)`` lie in the agent's latent space (Figure 4d).

    Returns:
        ``{"z": (N, latent_dim), "cluster": (N,), "angle": (N,)}`` in measurement order.
    """
    pts = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    z, angle = agent.vae.encode_positions(agent.image, pts)
    return {"z": z, "cluster": agent.mixture.predict(z), "angle": angle}
