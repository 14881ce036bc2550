"""The acquisition a DKL agent uses, and the operator's hand on it: which function (expected
improvement, upper confidence bound, maximum uncertainty), how much it explores, and its
value over the candidates once the model has predicted there.

Kept apart from :mod:`agents.dkl` (the agent's cycle) and :mod:`agents.dkl_training` (the
model) so each stays short; numpy only.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .acquisition import ACQUISITIONS, acquisition_values

__all__ = ["DKLExploration"]


class DKLExploration:
    """Mixin of :class:`~agents.dkl.DKLAgent`: the acquisition settings and their values.

    Expects ``values``, ``candidates``, ``exclude_measured``, ``_pixel_index``,
    ``_measured_pixels()`` and, after a fit, ``_mean``, ``_std`` and ``_y_std`` on the agent.
    """

    values: np.ndarray
    exclude_measured: bool
    _pixel_index: Dict[Tuple[int, int], int]
    _mean: Optional[np.ndarray]
    _std: Optional[np.ndarray]
    _y_std: float
    _acquisition: str
    _xi: float
    _beta: float
    _measured_pixels: Callable[[], List[Tuple[int, int]]]

    # ------------------------------------------------------------------ exploration

    @property
    def acquisition(self) -> str:
        """Acquisition function name: ``"ei"``, ``"ucb"`` or ``"uncertainty"``."""
        return self._acquisition

    @acquisition.setter
    def acquisition(self, name: str) -> None:
        name = str(name).lower()
        if name not in ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {ACQUISITIONS}, got {name!r}")
        self._acquisition = name

    @property
    def xi(self) -> float:
        """EI's exploration margin (in standard deviations of the measured values)."""
        return self._xi

    @xi.setter
    def xi(self, value: float) -> None:
        value = float(value)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"xi must be a finite number >= 0, got {value}")
        self._xi = value

    @property
    def beta(self) -> float:
        """UCB's exploration weight (``mean + sqrt(beta) * std``)."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        value = float(value)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"beta must be a finite number >= 0, got {value}")
        self._beta = value

    def set_exploration(
        self,
        acquisition: Optional[str] = None,
        xi: Optional[float] = None,
        beta: Optional[float] = None,
    ) -> Dict[str, Any]:
        """Change the acquisition function or its parameters between steps.

        Takes effect at the next :meth:`suggest`, without refitting the model.

        Returns:
            The acquisition settings now in force.

        Example (a DKL agent on a small survey; nothing is trained to change settings):
            >>> import numpy as np
            >>> from agents.dkl import DKLAgent
            >>> yy, xx = np.mgrid[:32, :32]
            >>> survey = np.exp(-((xx - 12) ** 2 + (yy - 20) ** 2) / 6.0)   # one particle
            >>> agent = DKLAgent(survey, seed=0)
            >>> agent.set_exploration(acquisition="ei", xi=0.05)
            {'name': 'ei', 'xi': 0.05, 'beta': 9.0}
            >>> agent.set_exploration(acquisition="ucb", beta=-1.0)
            Traceback (most recent call last):
            ...
            ValueError: beta must be a finite number >= 0, got -1.0
            >>> agent.exploration                   # all or nothing: left as it was
            {'name': 'ei', 'xi': 0.05, 'beta': 9.0}
        """
        # all or nothing: a bad value leaves the settings as they were
        before = self._acquisition, self._xi, self._beta
        try:
            if acquisition is not None:
                self.acquisition = acquisition
            if xi is not None:
                self.xi = xi
            if beta is not None:
                self.beta = beta
        except ValueError:
            self._acquisition, self._xi, self._beta = before
            raise
        return self.exploration

    @property
    def exploration(self) -> Dict[str, Any]:
        """The acquisition settings now in force, as a dict."""
        return {"name": self._acquisition, "xi": self._xi, "beta": self._beta}

    def _acquisition_over_candidates(self) -> np.ndarray:
        assert self._mean is not None
        assert self._std is not None
        # EI's margin is given in standard deviations of the data, like the standardised GP
        acq = acquisition_values(
            self._acquisition,
            self._mean,
            self._std,
            float(self.values.max()),
            xi=self._xi * self._y_std,
            beta=self._beta,
        )
        if self.exclude_measured:
            for x, y in self._measured_pixels():
                i = self._pixel_index.get((x, y))
                if i is not None:
                    acq[i] = -np.inf
        return acq
