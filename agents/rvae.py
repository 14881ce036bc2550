"""A rotation-invariant variational autoencoder of survey patches, written in pyro.

The first seed paper's forward method 2 and its Figure 4d: the patches of a survey image are
encoded into a small latent space by a *rotationally invariant* VAE (rVAE), where "the same
structure, turned" lands in one place; the latent space is then a map of the kinds of
structure in the field, and a DKL run's trajectory drawn in it shows what the agent
explored.

The rVAE (after Bepler et al. 2019, as used in atomai) gives the decoder the patch's pixel
coordinates, rotated by an angle ``theta`` and shifted by ``(dx, dy)``: rotation and
translation are explained by those three latent variables, so the remaining ``latent_dim``
variables ``z`` describe only what the structure *is*. Model (pyro)::

    z ~ N(0, I),  theta ~ N(0, theta_prior),  (dx, dy) ~ N(0, shift_prior)
    patch ~ N(decoder(R(theta) · coords + (dx, dy), z), sigma)

The guide is an MLP encoder giving a Gaussian for each of them (amortised inference);
training is SVI (Trace_ELBO, Adam) over minibatches of patches. On a 128 x 128 survey with
12 px patches every 4 px (~1,000 patches) it trains in a few seconds on one CPU thread.

Example (two epochs on a tiny image, a fraction of a second; a real survey wants the
default 20):
    >>> import numpy as np
    >>> from agents.rvae import RotationInvariantVAE
    >>> survey = np.zeros((32, 32)); survey[:, 16:] = 1.0
    >>> vae = RotationInvariantVAE(window=12, latent_dim=2, epochs=2, seed=0)
    >>> vae = vae.fit_image(survey, step=4)
    >>> z, angle = vae.encode_positions(survey, [[8.0, 12.0], [24.0, 12.0]])
    >>> z.shape, angle.shape                       # latent coordinates; angles, rad
    ((2, 2), (2,))
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Dict, Iterator, Optional

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import Trace_ELBO
from pyro.nn import PyroModule
from torch import nn

from .device import check_device, describe, resolve_device
from .patches import candidate_grid, extract_patches

__all__ = ["RotationInvariantVAE"]


@contextlib.contextmanager
def _torch_block(num_threads: Optional[int], seed: int) -> Iterator[None]:
    """Threads and a seed for one block (restored afterwards), pyro parameters module-local."""
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


class _Encoder(nn.Module):
    def __init__(self, pixels: int, latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(pixels, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh()
        )
        # z, theta, dx, dy: a location and a log-scale each
        self.head = nn.Linear(hidden, 2 * (latent_dim + 3))
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.body(x))
        loc, log_scale = out.chunk(2, dim=-1)
        return loc, log_scale.clamp(-6.0, 2.0).exp()


class _Decoder(nn.Module):
    """Intensity at (rotated, shifted) coordinates given z: a coordinate MLP."""

    def __init__(self, latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 + latent_dim, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, 1),
        )

    def forward(self, coords: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # coords (B, P, 2), z (B, L) -> (B, P)
        zz = z[:, None, :].expand(-1, coords.shape[1], -1)
        return self.net(torch.cat([coords, zz], dim=-1))[..., 0]


def _transform(coords: torch.Tensor, theta: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    x, y = coords[None, :, 0], coords[None, :, 1]
    return torch.stack([c * x - s * y, s * x + c * y], dim=-1) + shift[:, None, :]


class _Model(PyroModule):
    def __init__(self, decoder: _Decoder, coords: torch.Tensor, latent_dim: int,
                 theta_prior: float, shift_prior: float, sigma: float) -> None:  # fmt: skip
        super().__init__()
        self.decoder = decoder
        self.coords = coords
        self.latent_dim = latent_dim
        self.theta_prior = theta_prior
        self.shift_prior = shift_prior
        self.sigma = sigma

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> None:
        b = len(x)
        with pyro.plate("patches", b), pyro.poutine.scale(scale=scale):
            z = pyro.sample("z", dist.Normal(x.new_zeros(b, self.latent_dim), 1.0).to_event(1))
            theta = pyro.sample("theta", dist.Normal(x.new_zeros(b), self.theta_prior))
            shift = pyro.sample(
                "shift", dist.Normal(x.new_zeros(b, 2), self.shift_prior).to_event(1)
            )
            mean = self.decoder(_transform(self.coords, theta, shift), z)
            pyro.sample("x", dist.Normal(mean, self.sigma).to_event(1), obs=x)


class _Guide(PyroModule):
    def __init__(self, encoder: _Encoder, latent_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> None:
        loc, sc = self.encoder(x)
        L = self.latent_dim
        with pyro.plate("patches", len(x)), pyro.poutine.scale(scale=scale):
            pyro.sample("z", dist.Normal(loc[:, :L], sc[:, :L]).to_event(1))
            pyro.sample("theta", dist.Normal(loc[:, L], sc[:, L]))
            pyro.sample("shift", dist.Normal(loc[:, L + 1 :], sc[:, L + 1 :]).to_event(1))


class RotationInvariantVAE:
    """rVAE of square image patches: latent ``z`` (what), angle and shift (how it is turned).

    Args:
        window: patch side, px.
        latent_dim: size of ``z`` (2 draws as a map).
        hidden: width of the encoder's and decoder's hidden layers.
        theta_prior: prior standard deviation of the rotation, rad (pi: any angle).
        shift_prior: prior standard deviation of the shift, in patch half-widths.
        sigma: observation noise of the standardised patches.
        epochs, batch_size, learning_rate: training by SVI.
        seed: seeds the initial weights and every draw.
        num_threads: torch threads while training and encoding (None: torch's setting).
        device: ``"auto"`` (a GPU when there is one), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``
            (:mod:`agents.device`); :meth:`where` says where it trained.

    Raises:
        ValueError: bad sizes or a malformed device.
        agents.device.NoDeviceError: a GPU asked for by name on a machine without it.
    """

    name = "rvae"

    def __init__(
        self,
        window: int = 12,
        latent_dim: int = 2,
        hidden: int = 48,
        theta_prior: float = float(np.pi),
        shift_prior: float = 0.1,
        sigma: float = 0.3,
        epochs: int = 20,
        batch_size: int = 128,
        learning_rate: float = 3e-3,
        seed: int = 0,
        num_threads: Optional[int] = 1,
        device: str = "auto",
    ) -> None:
        if window < 4 or latent_dim < 1 or hidden < 4:
            raise ValueError("window >= 4 px, latent_dim >= 1 and hidden >= 4 are required")
        if epochs < 1 or batch_size < 1 or not learning_rate > 0:
            raise ValueError("epochs and batch_size must be >= 1, learning_rate > 0")
        self.window = int(window)
        self.latent_dim = int(latent_dim)
        self.hidden = int(hidden)
        self.theta_prior = float(theta_prior)
        self.shift_prior = float(shift_prior)
        self.sigma = float(sigma)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.learning_rate = float(learning_rate)
        self.seed = int(seed)
        self.num_threads = None if num_threads is None else int(num_threads)
        #: the device asked for (recorded in config(); a replay asks for the same)
        self.device = check_device(device)
        self._device = resolve_device(self.device)
        self._encoder: Optional[_Encoder] = None
        self._scale: Optional[tuple[float, float]] = None
        self.losses: list[float] = []
        #: wall-clock and CPU seconds of the last training (None before one)
        self.train_seconds: Optional[float] = None
        self.train_cpu_seconds: Optional[float] = None

    # ------------------------------------------------------------------ data

    def _patches(self, image: Any, positions: Any) -> torch.Tensor:
        patches, _ = extract_patches(image, self.window, positions=positions, normalise=None)
        if self._scale is None:
            self._scale = (float(patches.mean()), float(patches.std()) or 1.0)
        mean, std = self._scale
        return torch.tensor((patches - mean) / std, dtype=torch.float32, device=self._device)

    def _coords(self) -> torch.Tensor:
        r = np.linspace(-1.0, 1.0, self.window)
        yy, xx = np.meshgrid(r, r, indexing="ij")
        return torch.tensor(
            np.column_stack([xx.ravel(), yy.ravel()]), dtype=torch.float32, device=self._device
        )

    # ------------------------------------------------------------------ fit

    def fit_image(
        self,
        survey_image: Any,
        step: int = 4,
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> RotationInvariantVAE:
        """Train on the patches around every ``step``-th pixel of one survey image.

        Args:
            survey_image: 2-D survey image.
            step: spacing of the training patches, px.
            progress: called after every optimiser step with ``(steps done, steps in
                all)`` (``epochs`` x minibatches), e.g. to draw a bar; it draws nothing
                random, so the trained model is the same with or without it.
        """
        image = np.asarray(survey_image, dtype=np.float64)
        if image.ndim != 2:
            raise ValueError(f"survey image must be 2-D, got {image.shape}")
        self._scale = None
        x = self._patches(image, candidate_grid(image.shape, int(step)))
        started, cpu = time.perf_counter(), time.process_time()
        with _torch_block(self.num_threads, self.seed):
            pixels = self.window * self.window
            self._encoder = _Encoder(pixels, self.latent_dim, self.hidden).to(self._device)
            decoder = _Decoder(self.latent_dim, self.hidden).to(self._device)
            model = _Model(decoder, self._coords(), self.latent_dim, self.theta_prior,
                           self.shift_prior, self.sigma)  # fmt: skip
            guide = _Guide(self._encoder, self.latent_dim)
            elbo = Trace_ELBO()(model, guide)
            optimiser = torch.optim.Adam(elbo.parameters(), lr=self.learning_rate)
            gen = torch.Generator(device="cpu").manual_seed(self.seed)
            n = len(x)
            steps, done = self.epochs * -(-n // self.batch_size), 0
            self.losses = []
            for _ in range(self.epochs):
                order = torch.randperm(n, generator=gen)
                total = 0.0
                for start in range(0, n, self.batch_size):
                    batch = x[order[start : start + self.batch_size].to(self._device)]
                    optimiser.zero_grad()
                    loss = elbo(batch)
                    loss.backward()
                    optimiser.step()
                    total += float(loss.detach())
                    done += 1
                    if progress is not None:
                        progress(done, steps)
                self.losses.append(total / n)
        self.train_seconds = time.perf_counter() - started
        # on a shared machine the wall time says how busy it was; the CPU time what the
        # training costs (the process's, all threads: the agent trains on one by default)
        self.train_cpu_seconds = time.process_time() - cpu
        return self

    # ------------------------------------------------------------------ encode

    def encode_positions(self, survey_image: Any, positions: Any) -> tuple[np.ndarray, np.ndarray]:
        """Latent means ``(N, latent_dim)`` and rotation angles ``(N,)`` rad of the patches
        around ``positions`` ``(N, 2)`` x, y of the image.

        Raises:
            RuntimeError: before :meth:`fit_image`.
        """
        if self._encoder is None:
            raise RuntimeError("train the rVAE first (fit_image)")
        x = self._patches(np.asarray(survey_image, dtype=np.float64), positions)
        with torch.no_grad(), _torch_block(self.num_threads, self.seed):
            loc, _ = self._encoder(x)
        loc = loc.cpu().numpy().astype(np.float64)
        angle = (loc[:, self.latent_dim] + np.pi) % (2 * np.pi) - np.pi
        return loc[:, : self.latent_dim], angle

    def where(self) -> Dict[str, Any]:
        """Where it trains and encodes: ``{"type", "index", "name"}`` (the GPU's model)."""
        return describe(self._device)

    def config(self) -> Dict[str, Any]:
        keys = ("window", "latent_dim", "hidden", "theta_prior", "shift_prior", "sigma",
                "epochs", "batch_size", "learning_rate", "seed", "num_threads",
                "device")  # fmt: skip
        return {k: getattr(self, k) for k in keys}
