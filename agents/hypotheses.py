"""Competing physical hypotheses, weighed by their evidence as the spectra arrive.

Seed reference 35 ("hypothesis learning"): the microscopist has more than one idea of what
the spectral signal does near an edge -- it steps from one value to another across it (a
particle's bulk plasmon), it is found only at the edge (an interface or surface state), or
the edge does not matter at all. :class:`HypothesisAgent` keeps one physics-informed GP per
hypothesis (:class:`agents.physics.PhysicsGPAgent`, ``hypothesis="step" | "peak" |
"flat"``), all fed the same measurements. After each measurement every model is fitted and
its **evidence** estimated (the ELBO of its pyro posterior: a lower bound of the log marginal
likelihood, per measurement); with equal prior odds, the posterior probability of
hypothesis ``k`` is ``exp(evidence_k) / sum_j exp(evidence_j)`` over the ``n`` measurements
(``n * evidence`` is the log evidence of the whole data). Decisions use the predictive
averaged over hypotheses with those probabilities (Bayesian model averaging); every report
carries each hypothesis' probability, evidence and physical parameters.

Cost: one physics GP fit per hypothesis per step (three by default).

Example (the first spectra go to seed points and leave the odds even; once there are
enough to fit, every step fits one GP per hypothesis and the probabilities move):
    >>> import numpy as np
    >>> from agents.hypotheses import HypothesisAgent
    >>> survey = np.zeros((32, 32)); survey[:, 16:] = 1.0     # one straight edge
    >>> agent = HypothesisAgent(survey, seed=0)
    >>> s = agent.suggest(1)[0]
    >>> s["source"], s["edge_distance"]                       # px from the edge
    ('seed', -15.0)
    >>> agent.ingest([[s["x"], s["y"]]], [5.0])               # the spectrum's value
    >>> {k: round(h["probability"], 2) for k, h in agent.report()["hypotheses"].items()}
    {'step': 0.33, 'peak': 0.33, 'flat': 0.33}
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .acquisition import ACQUISITIONS, acquisition_values
from .base import Agent, Suggestion
from .device import describe
from .physics import HYPOTHESES, MIN_VALUES_TO_FIT, PhysicsGPAgent, extra_seeds

__all__ = ["HypothesisAgent"]


class HypothesisAgent(Agent):
    """Active learning over competing physical hypotheses, weighed by their evidence.

    Args:
        survey_image: 2-D survey image of the scan field.
        hypotheses: names from :data:`agents.physics.HYPOTHESES` (at least two).
        acquisition, xi, beta: how the averaged predictive picks the next point.
        n_seed: random first measurements (before any model), shared by all hypotheses.
        seed: seeds the seed points and every model.
        particles: draws for each evidence estimate.
        step, classes, train_steps, finetune_steps, learning_rate, draws, num_threads,
            device: every hypothesis' :class:`~agents.physics.PhysicsGPAgent` settings.

    Raises:
        ValueError: unknown or fewer than two hypotheses, a bad acquisition.
    """

    name = "hypotheses"

    def __init__(
        self,
        survey_image: Any,
        hypotheses: Sequence[str] = ("step", "peak", "flat"),
        acquisition: str = "ucb",
        xi: float = 0.01,
        beta: float = 4.0,
        n_seed: int = 5,
        seed: int = 0,
        particles: int = 32,
        step: int = 2,
        classes: int = 3,
        train_steps: int = 250,
        finetune_steps: int = 40,
        learning_rate: float = 0.03,
        draws: int = 16,
        num_threads: Optional[int] = 1,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        names = list(dict.fromkeys(hypotheses))
        unknown = [h for h in names if h not in HYPOTHESES]
        if unknown or len(names) < 2:
            raise ValueError(
                f"give at least two hypotheses from {tuple(HYPOTHESES)}, got {list(hypotheses)}"
            )
        if acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {acquisition!r}")
        kwargs = {
            "step": step,
            "classes": classes,
            "train_steps": train_steps,
            "finetune_steps": finetune_steps,
            "learning_rate": learning_rate,
            "draws": draws,
            "num_threads": num_threads,
            "device": device,
        }
        self.hypotheses = names
        self.acquisition = acquisition
        self.xi = float(xi)
        self.beta = float(beta)
        self.n_seed = int(n_seed)
        self.seed = int(seed)
        self.particles = int(particles)
        self.model_options = dict(kwargs)
        self.models = {
            h: PhysicsGPAgent(survey_image, hypothesis=h, n_seed=n_seed, seed=seed, **kwargs)
            for h in names
        }
        first = self.models[names[0]]
        self.candidates = first.candidates
        # the seed points: the same random candidates every model would take
        self._seeds = list(first._seeds)
        self._measured = np.zeros(len(self.candidates), dtype=bool)
        self._evidence: Dict[str, float] = {}
        self._probability: Dict[str, float] = {h: 1.0 / len(names) for h in names}
        self._at = -1  # measurements the evidence was computed for

    # ------------------------------------------------------------------ data

    def _ingest(self, positions: np.ndarray, values: np.ndarray) -> None:
        for model in self.models.values():
            model.ingest(positions, values)
        self._measured |= self.models[self.hypotheses[0]]._measured

    def _ingest_unusable(self, positions: np.ndarray) -> None:
        undefined = np.full(len(positions), np.nan)
        for model in self.models.values():
            model.ingest(positions, undefined)
        self._measured |= self.models[self.hypotheses[0]]._measured

    def _weigh(self) -> None:
        """Fit every hypothesis and weigh it by its evidence (once per new measurement)."""
        if self._at == len(self.values):
            return
        n = len(self.values)
        self._evidence = {h: m.log_evidence(self.particles) for h, m in self.models.items()}
        total = np.array([n * self._evidence[h] for h in self.hypotheses])
        weights = np.exp(total - total.max())
        weights /= weights.sum()
        self._probability = {h: float(w) for h, w in zip(self.hypotheses, weights)}
        self._at = n

    def _predictive(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std over the candidates, averaged over hypotheses by probability."""
        self._weigh()
        mean = np.zeros(len(self.candidates))
        second = np.zeros(len(self.candidates))
        for h, model in self.models.items():
            assert model._pred is not None
            m, s = model._pred
            w = self._probability[h]
            mean += w * m
            second += w * (s**2 + m**2)
        return mean, np.sqrt(np.maximum(second - mean**2, 1e-24))

    # ------------------------------------------------------------------ suggest

    def suggest(self, n: int = 1) -> List[Suggestion]:
        """Seed points first, then the averaged predictive's best (with each hypothesis'
        probability in the suggestion)."""
        out: List[Suggestion] = []
        first = self.models[self.hypotheses[0]]
        while self._seeds and len(out) < n:
            i = self._seeds.pop(0)
            self._measured[i] = True
            out.append(self.make_suggestion(*self.candidates[i],
                                            edge_distance=float(first._cand_d[i]),
                                            source="seed"))  # fmt: skip
        if len(out) < n and len(self.values) < MIN_VALUES_TO_FIT:
            # too few values to weigh the hypotheses yet (spectra without a number)
            for i in extra_seeds(first._seed_rng, self._measured, n - len(out)):
                self._measured[i] = True
                out.append(self.make_suggestion(*self.candidates[i],
                                                edge_distance=float(first._cand_d[i]),
                                                source="seed"))  # fmt: skip
        if len(out) >= n or len(self.values) < MIN_VALUES_TO_FIT:
            return out
        mean, std = self._predictive()
        acq = acquisition_values(
            self.acquisition, mean, std, float(self.values.max()),
            xi=self.xi * float(np.std(self.values) or 1.0), beta=self.beta,
        )  # fmt: skip
        acq = np.where(self._measured, -np.inf, acq)
        for i in np.argsort(-acq, kind="stable")[: n - len(out)]:
            if not np.isfinite(acq[i]):
                break
            self._measured[i] = True
            out.append(
                self.make_suggestion(
                    *self.candidates[i],
                    acquisition=float(acq[i]),
                    mean=float(mean[i]),
                    std=float(std[i]),
                    edge_distance=float(first._cand_d[i]),
                    probabilities=dict(self._probability),
                    source="model",
                )
            )
        return out

    def predict_maps(self) -> Dict[str, np.ndarray]:
        """The averaged predictive mean and std, the acquisition, and the probability-weighted
        hypothesis maps, over the candidate grid."""
        mean, std = self._predictive()
        spread = float(np.std(self.values) or 1.0)
        best = float(self.values.max())
        acq = acquisition_values(self.acquisition, mean, std, best, self.xi * spread, self.beta)
        rows = len(np.unique(self.candidates[:, 1]))
        cols = len(np.unique(self.candidates[:, 0]))
        maps = {"mean": mean, "std": std, "acquisition": acq,
                "x": self.candidates[:, 0], "y": self.candidates[:, 1]}  # fmt: skip
        return {k: np.asarray(v).reshape(rows, cols).astype(np.float32) for k, v in maps.items()}

    # ------------------------------------------------------------------ report

    @property
    def probabilities(self) -> Dict[str, float]:
        """Each hypothesis' posterior probability (equal prior odds)."""
        if len(self.values) >= 2:
            self._weigh()
        return dict(self._probability)

    def config(self) -> Dict[str, Any]:
        return {
            "hypotheses": list(self.hypotheses),
            "acquisition": self.acquisition,
            "xi": self.xi,
            "beta": self.beta,
            "n_seed": self.n_seed,
            "seed": self.seed,
            "particles": self.particles,
            **self.model_options,
        }

    def report(self) -> Dict[str, Any]:
        """Each hypothesis' probability, evidence (ELBO per measurement) and physical
        parameters; the most probable one."""
        probabilities = self.probabilities
        hypotheses: Dict[str, Any] = {}
        for h, model in self.models.items():
            hypotheses[h] = {
                "probability": probabilities[h],
                "evidence": self._evidence.get(h),
                "model": HYPOTHESES[h][0],
                "physics": model.posterior(),
            }
        best = max(probabilities, key=probabilities.get) if probabilities else None
        values = self.values
        return {
            "agent": self.name,
            "config": self.config(),
            "n_measured": len(values),
            "seeds_left": len(self._seeds),
            "best_value": float(values.max()) if len(values) else None,
            "most_probable": best,
            "hypotheses": hypotheses,
            # where the decisions were computed (config() holds what was asked for)
            "device": describe(self.models[self.hypotheses[0]]._torch_device),
        }
