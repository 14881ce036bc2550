"""A physics-informed Bayesian agent: a GP whose mean is a physical model, written in pyro.

Seed references 34-35 ("augmented GP", "hypothesis learning"): a plain GP or DKL learns the
whole map from the spectra; a *structured* GP starts from what the microscopist knows and
learns only the rest. Here the knowledge is a profile across the edge of a particle: the
spectral signal (a plasmon band's intensity, an edge's jump) changes from its value outside
to its value inside over a few nanometres (probe spreading, thickness ramp, the interface
itself), as a function of the signed distance ``d`` from the particle's edge in the survey::

    value(x) = background + step * sigmoid((d(x) - edge_shift) / edge_width) + GP residual(x)

``d`` comes from the survey image (the brightest phase by multi-Otsu thresholds, its
Euclidean distance transform: positive inside, negative outside, px). The four physical
parameters have priors (below); the residual is a GP with an RBF kernel over the beam
position. Everything is inferred together by stochastic variational inference (pyro's
``AutoNormal`` guide on an exact GP marginal likelihood), so the agent reports a *posterior*
for each physical parameter (mean and standard deviation, in px and in the units of the
measured values) with every decision, and the decisions use the posterior predictive
(averaged over parameter draws) through the usual acquisition functions (EI, UCB,
uncertainty).

Priors (values standardised by the measured mean and spread): background ~ N(0, 1);
step ~ N(0, 2) (the sign is learnt: the signal may drop inside); edge_shift ~ N(0, 2 px);
edge_width ~ LogNormal(log 2 px, 0.7); GP lengthscale ~ LogNormal(log 10 px, 0.7), variance
~ LogNormal(log 0.3, 1), noise ~ LogNormal(log 0.1, 1).

Cost: a fit of 250 SVI steps on 30 points takes about a second on one thread; later steps
warm-start (40 steps). Everything random is seeded.

The model itself (the hypotheses, their priors, the signed edge distance and the pyro
model) is :mod:`agents.physics_model`; this module is the agent that fits and uses it.

Example (a bright disc whose signal steps up inside; a short fit):
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:40, :40]
    >>> survey_image = ((xx - 20) ** 2 + (yy - 20) ** 2 < 12**2).astype(float)
    >>> agent = PhysicsGPAgent(survey_image, n_seed=4, seed=0, train_steps=30)
    >>> for _ in range(5):
    ...     s = agent.suggest(1)[0]
    ...     value = 1.0 + survey_image[int(s["y"]), int(s["x"])]
    ...     agent.ingest([[s["x"], s["y"]]], [value])
    >>> sorted(agent.report()["physics"]["edge_width"])
    ['mean', 'std', 'units']
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import pyro
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from .acquisition import ACQUISITIONS, acquisition_values
from .base import Agent, Suggestion
from .device import check_device, describe, resolve_device
from .images import survey_image_array
from .patches import candidate_grid
from .physics_model import (
    _GP_SITES,
    HYPOTHESES,
    PHYSICAL_PARAMETERS,
    _EdgeProfileGP,
    _rbf,
    physical_mean,
    signed_edge_distance,
)

__all__ = [
    "HYPOTHESES",
    "PHYSICAL_PARAMETERS",
    "PhysicsGPAgent",
    "physical_mean",
    "signed_edge_distance",
]


#: values a model needs before it suggests; until then the agents suggest seed points
MIN_VALUES_TO_FIT = 2


def extra_seeds(rng: np.random.Generator, measured: np.ndarray, k: int) -> List[int]:
    """``k`` more random candidates not measured yet: seed points beyond ``n_seed`` when
    spectra without a number (a dead read-out) left too few values to fit a model; without
    them the agent suggested nothing and the run ended after its seeds."""
    free = np.flatnonzero(~measured)
    return [int(i) for i in rng.choice(free, min(int(k), len(free)), replace=False)]


@contextlib.contextmanager
def _quiet_torch(num_threads: Optional[int], seed: int) -> Iterator[None]:
    """Set torch threads and seed for a block, then put both back (pyro samples from the
    global torch generator; other agents in the process must not see their state change)."""
    previous = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if num_threads is not None and num_threads != previous:
            torch.set_num_threads(num_threads)
        try:
            with pyro.settings.context(module_local_params=True):
                yield
        finally:
            if num_threads is not None and num_threads != previous:
                torch.set_num_threads(previous)


class PhysicsGPAgent(Agent):
    """Active learning with a GP whose mean is an edge profile; reports its parameters.

    Args:
        survey_image: 2-D survey image (HAADF) of the scan field.
        step: spacing of the candidate grid, px.
        classes: multi-Otsu classes for the particle (the brightest is the particle).
        acquisition: ``"ei"``, ``"ucb"`` or ``"uncertainty"``.
        xi, beta: EI margin (in standardised units) and UCB weight.
        n_seed: random first measurements (before any model).
        seed: seeds the seed points, the fits and the predictive draws.
        train_steps, finetune_steps: SVI steps of the first and of each later fit.
        learning_rate: Adam's learning rate.
        draws: posterior draws the predictive mixes.
        num_threads: torch threads during fits (None: torch's own setting).
        hypothesis: the physical model of the mean (:data:`HYPOTHESES`): ``"step"`` (default,
            the edge profile above), ``"peak"`` (a signal at the edge only) or ``"flat"``.
        device: ``"cpu"`` (default), ``"auto"``, ``"cuda"`` or ``"cuda:N"``
            (:mod:`agents.device`). The CPU by default, unlike DKL: an exact GP on tens of
            points mixed over ``draws`` posterior draws is many tiny kernels, which a GPU runs
            no faster; ask for one by name for large candidate grids. The report says where
            the decisions were computed.

    Suggestions carry ``acquisition``, ``mean`` and ``std`` (posterior predictive, in the
    measured units) and ``source`` (``"seed"`` or ``"model"``).
    """

    name = "physics_gp"

    def __init__(
        self,
        survey_image: Any,
        step: int = 2,
        classes: int = 3,
        acquisition: str = "ucb",
        xi: float = 0.01,
        beta: float = 4.0,
        n_seed: int = 5,
        seed: int = 0,
        train_steps: int = 250,
        finetune_steps: int = 40,
        learning_rate: float = 0.03,
        draws: int = 16,
        num_threads: Optional[int] = 1,
        device: str = "cpu",
        hypothesis: str = "step",
    ) -> None:
        super().__init__()
        if hypothesis not in HYPOTHESES:
            raise ValueError(f"hypothesis must be one of {tuple(HYPOTHESES)}, got {hypothesis!r}")
        if acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {acquisition!r}")
        if min(train_steps, finetune_steps, draws) < 1 or n_seed < 1:
            raise ValueError("train_steps, finetune_steps, draws and n_seed must be >= 1")
        image = survey_image_array(survey_image)
        self.distance = signed_edge_distance(image, classes=classes)
        self.image_shape = image.shape
        self.step = int(step)
        self.classes = int(classes)
        self.acquisition = acquisition
        self.xi = float(xi)
        self.beta = float(beta)
        self.n_seed = int(n_seed)
        self.seed = int(seed)
        self.train_steps = int(train_steps)
        self.finetune_steps = int(finetune_steps)
        self.learning_rate = float(learning_rate)
        self.draws = int(draws)
        self.num_threads = None if num_threads is None else int(num_threads)
        #: the device asked for (recorded in config(); a replay asks for the same)
        self.device = check_device(device)
        self._torch_device = resolve_device(self.device)
        self.hypothesis = hypothesis
        self._sites = (*HYPOTHESES[hypothesis][1], *_GP_SITES)
        self.candidates = candidate_grid(image.shape, self.step)
        self._cand_d = self.distance[
            self.candidates[:, 1].astype(int), self.candidates[:, 0].astype(int)
        ]
        self._measured = np.zeros(len(self.candidates), dtype=bool)
        self._index = {(int(x), int(y)): i for i, (x, y) in enumerate(self.candidates)}
        rng = np.random.default_rng(self.seed)
        self._seeds = list(rng.choice(len(self.candidates), self.n_seed, replace=False))
        # further seed points, drawn only when the seeds are used and fewer than
        # MIN_VALUES_TO_FIT values came back (spectra without a number, or n_seed=1)
        self._seed_rng = rng
        self._model: Optional[_EdgeProfileGP] = None
        self._guide: Optional[AutoNormal] = None
        self._optimiser: Optional[torch.optim.Optimizer] = None
        self._elbo: Any = None
        self._dirty = True
        self._pred: Optional[tuple[np.ndarray, np.ndarray]] = None
        self.n_fits = 0
        self.last_loss: Optional[float] = None
        self.last_fit_seconds: Optional[float] = None
        self._y_mean, self._y_std = 0.0, 1.0

    # ------------------------------------------------------------------ data

    def _ingest(self, positions: np.ndarray, values: np.ndarray) -> None:
        self._mark_measured(positions)
        self._dirty = True

    def _ingest_unusable(self, positions: np.ndarray) -> None:
        self._mark_measured(positions)

    def _mark_measured(self, positions: np.ndarray) -> None:
        # measured, with or without a usable value: either way not suggested again
        for x, y in positions:
            i = self._index.get((round(x), round(y)))
            if i is not None:
                self._measured[i] = True

    def _tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos = self.positions
        rows = np.clip(np.rint(pos[:, 1]).astype(int), 0, self.image_shape[0] - 1)
        cols = np.clip(np.rint(pos[:, 0]).astype(int), 0, self.image_shape[1] - 1)
        self._y_mean = float(self.values.mean())
        self._y_std = float(self.values.std()) or 1.0
        t = {"dtype": torch.float64, "device": self._torch_device}
        return (
            torch.tensor(pos, **t),
            torch.tensor(self.distance[rows, cols], **t),
            torch.tensor((self.values - self._y_mean) / self._y_std, **t),
        )

    # ------------------------------------------------------------------ fit

    def fit(self) -> None:
        """Fit the posterior to all measurements (warm start after the first fit)."""
        if len(self.values) < 2:
            raise RuntimeError("the model needs at least 2 measurements")
        started = time.perf_counter()
        with _quiet_torch(self.num_threads, self.seed + 7919 * self.n_fits):
            xy, d, y = self._tensors()
            first = self._guide is None
            if first:
                # made inside the module-local context: their parameters stay theirs
                self._model = _EdgeProfileGP(self.hypothesis)
                self._guide = AutoNormal(self._model, init_scale=0.05)
                self._guide(xy, d, y)  # creates the guide's parameters
                self._guide.to(self._torch_device)
                self._elbo = Trace_ELBO()(self._model, self._guide)
                self._optimiser = torch.optim.Adam(self._elbo.parameters(), lr=self.learning_rate)
            assert self._optimiser is not None
            steps = self.train_steps if first else self.finetune_steps
            for _ in range(steps):
                self._optimiser.zero_grad()
                loss = self._elbo(xy, d, y)
                loss.backward()
                self._optimiser.step()
            self.last_loss = float(loss.detach()) / len(y)
            self._pred = self._predict(xy, d, y)
        self.n_fits += 1
        self._dirty = False
        self.last_fit_seconds = time.perf_counter() - started

    def log_evidence(self, particles: int = 32) -> float:
        """The evidence of this hypothesis for the measurements so far: the ELBO (a lower
        bound of the log marginal likelihood, per measurement, of the standardised values),
        estimated over ``particles`` draws of the fitted posterior. Hypotheses fitted to the
        same measurements compare by it (:class:`agents.hypotheses.HypothesisAgent`)."""
        if self._dirty or self._guide is None:
            self.fit()
        with _quiet_torch(self.num_threads, self.seed + 104729), torch.no_grad():
            xy, d, y = self._tensors()
            elbo = Trace_ELBO(num_particles=int(particles), vectorize_particles=False)
            loss = elbo.loss(self._model, self._guide, xy, d, y)
        return -float(loss) / len(y)

    def _draws(self) -> Dict[str, torch.Tensor]:
        assert self._guide is not None
        samples = [self._guide() for _ in range(self.draws)]
        return {k: torch.stack([s[k] for s in samples]).detach() for k in self._sites}

    def _predict(
        self, xy: torch.Tensor, d: torch.Tensor, y: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior predictive mean and std over the candidates (mixture over draws)."""
        t = {"dtype": torch.float64, "device": self._torch_device}
        cxy = torch.tensor(self.candidates, **t)
        cd = torch.tensor(self._cand_d, **t)
        p = self._draws()
        means, variances = [], []
        with torch.no_grad():
            for s in range(self.draws):
                draw = {k: v[s] for k, v in p.items()}
                prior = physical_mean(self.hypothesis, draw, d)
                cprior = physical_mean(self.hypothesis, draw, cd)
                k = p["variance"][s] * _rbf(xy, xy, p["lengthscale"][s])
                k = k + (p["noise"][s] + 1e-5) * torch.eye(len(xy), **t)
                chol = torch.linalg.cholesky(k)
                ks = p["variance"][s] * _rbf(cxy, xy, p["lengthscale"][s])
                alpha = torch.cholesky_solve((y - prior)[:, None], chol)[:, 0]
                v = torch.cholesky_solve(ks.T, chol)
                means.append(cprior + ks @ alpha)
                variances.append((p["variance"][s] - (ks * v.T).sum(1)).clamp_min(1e-12))
        m = torch.stack(means)
        var = torch.stack(variances).mean(0) + m.var(0, unbiased=False)
        mean = m.mean(0).cpu().numpy() * self._y_std + self._y_mean
        std = var.sqrt().cpu().numpy() * self._y_std
        return mean, std

    def posterior(self) -> Dict[str, Dict[str, Any]]:
        """Mean and standard deviation of each physical parameter (in measured units and px)."""
        if self._guide is None:
            return {}
        with _quiet_torch(self.num_threads, self.seed + 1):
            p = self._draws()
        out = {}
        for name, units in HYPOTHESES[self.hypothesis][1].items():
            v = p[name].cpu().numpy().astype(np.float64)
            if name == "background":
                v = v * self._y_std + self._y_mean
            elif name in ("step", "height"):
                v = v * self._y_std
            out[name] = {"mean": float(v.mean()), "std": float(v.std()), "units": units}
        return out

    # ------------------------------------------------------------------ suggest

    def _model_suggest(self, n: int) -> List[Suggestion]:
        if self._dirty:
            self.fit()
        assert self._pred is not None
        mean, std = self._pred
        scaled_best = float(self.values.max())
        acq = acquisition_values(
            self.acquisition,
            mean,
            std,
            scaled_best,
            xi=self.xi * self._y_std,
            beta=self.beta,
        )
        acq = np.where(self._measured, -np.inf, acq)
        order = np.argsort(-acq, kind="stable")[:n]
        return [
            self.make_suggestion(
                *self.candidates[i],
                acquisition=float(acq[i]),
                mean=float(mean[i]),
                std=float(std[i]),
                edge_distance=float(self._cand_d[i]),
                source="model",
            )
            for i in order
            if np.isfinite(acq[i])
        ]

    def suggest(self, n: int = 1) -> List[Suggestion]:
        """Seed points first (random candidates), then the posterior predictive's best."""
        out: List[Suggestion] = []
        while self._seeds and len(out) < n:
            i = self._seeds.pop(0)
            out.append(
                self.make_suggestion(
                    *self.candidates[i], edge_distance=float(self._cand_d[i]), source="seed"
                )
            )
        if len(out) < n and len(self.values) >= MIN_VALUES_TO_FIT:
            out += self._model_suggest(n - len(out))
        elif len(out) < n:  # too few values to fit a model yet: another random seed point
            for i in extra_seeds(self._seed_rng, self._measured, n - len(out)):
                out.append(
                    self.make_suggestion(
                        *self.candidates[i], edge_distance=float(self._cand_d[i]), source="seed"
                    )
                )
        return out

    def predict_maps(self) -> Dict[str, np.ndarray]:
        """Posterior predictive mean and std, the acquisition and the edge distance, as
        images over the candidate grid."""
        if self._dirty:
            self.fit()
        assert self._pred is not None
        mean, std = self._pred
        acq = acquisition_values(
            self.acquisition, mean, std, float(self.values.max()), self.xi * self._y_std, self.beta
        )
        rows = len(np.unique(self.candidates[:, 1]))
        cols = len(np.unique(self.candidates[:, 0]))
        maps = {
            "mean": mean,
            "std": std,
            "acquisition": acq,
            "edge_distance": self._cand_d,
            "x": self.candidates[:, 0],
            "y": self.candidates[:, 1],
        }
        return {k: np.asarray(v).reshape(rows, cols).astype(np.float32) for k, v in maps.items()}

    # ------------------------------------------------------------------ report

    def config(self) -> Dict[str, Any]:
        keys = ("step", "classes", "acquisition", "xi", "beta", "n_seed", "seed",
                "train_steps", "finetune_steps", "learning_rate", "draws", "num_threads",
                "device", "hypothesis")  # fmt: skip
        return {k: getattr(self, k) for k in keys}

    def report(self) -> Dict[str, Any]:
        """Measurements, best so far, and the posterior of the physical parameters."""
        best = self.get_best_points()
        return {
            "agent": self.name,
            "config": self.config(),
            "n_measured": len(self.values),
            "seeds_left": len(self._seeds),
            "best_value": best[0][2]["value"] if best else None,
            "best_position": [best[0][1]["x"], best[0][1]["y"]] if best else None,
            "physics": self.posterior(),
            "model": HYPOTHESES[self.hypothesis][0] + "; + GP(x, y)",
            "hypothesis": self.hypothesis,
            "training_loss": self.last_loss,
            "n_fits": self.n_fits,
            "last_fit_seconds": self.last_fit_seconds,
            # where the decisions were computed (config() holds what was asked for)
            "device": describe(self._torch_device),
        }
