"""Command-line options of the digital twin (``dm-bridge serve --backend twin``).

A mixin, so that the backend module keeps to the simulated instrument and this one to
configuration (as :mod:`dm_bridge.backends.dm_options` for DigitalMicrograph).

Standard library only, Python 3.8 syntax.

Example:
    >>> sample_parameters_from_arguments(["thickness=20", "hole_radius=[0.5, 1]"])
    {'thickness': 20, 'hole_radius': (0.5, 1)}
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterable

from .samples import SAMPLES

__all__ = ["TwinOptions", "sample_parameters_from_arguments"]


class TwinOptions:
    """``add_arguments`` / ``options_from_arguments`` of the twin (a mixin before
    :class:`~dm_bridge.backends.base.Backend`, whose options it extends)."""

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        """Twin options of ``dm-bridge serve --backend twin``."""
        super().add_arguments(parser)  # type: ignore[misc]
        parser.add_argument(
            "--sample", choices=sorted(SAMPLES), default="graphene", help="simulated specimen"
        )
        parser.add_argument("--seed", type=int, default=0, help="seed of sample and noise")
        parser.add_argument(
            "--noise-level",
            type=float,
            default=None,
            help="HAADF image noise in [0, 1] (default: physical dose)",
        )
        parser.add_argument("--beam-current", type=float, default=50.0, help="probe current, pA")
        parser.add_argument("--drift", action="store_true", help="let the specimen drift")
        parser.add_argument("--damage", action="store_true", help="let the beam knock atoms out")
        parser.add_argument(
            "--energy-drift", type=float, default=0.0, help="energy-scale drift, eV/s"
        )
        parser.add_argument(
            "--energy-jitter",
            type=float,
            default=0.0,
            help="random energy shift per spectrum, eV rms",
        )
        parser.add_argument(
            "--sample-param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a sample parameter, e.g. thickness=20 or hole_radius=[0.5,1]; "
            "repeatable; values are JSON",
        )

    @classmethod
    def options_from_arguments(cls, args: Any) -> Dict[str, Any]:
        opts = super().options_from_arguments(args)  # type: ignore[misc]
        params = sample_parameters_from_arguments(args.sample_param or [])
        opts.update(
            sample=args.sample,
            seed=args.seed,
            noise_level=args.noise_level,
            beam_current=args.beam_current,
            drift=args.drift,
            damage=args.damage,
            energy_drift=args.energy_drift,
            energy_jitter=args.energy_jitter,
            sample_parameters=params,
        )
        return opts


def sample_parameters_from_arguments(items: Iterable[str]) -> Dict[str, Any]:
    """The sample parameters of repeated ``--sample-param NAME=VALUE`` options.

    Values are JSON (``thickness=20``, ``hole_radius=[0.5,1]``: lists become tuples); a
    value that is not JSON is kept as text.

    Raises:
        ValueError: an item without ``=`` or without a name.
    """
    params: Dict[str, Any] = {}
    for item in items:
        name, sep, raw = str(item).partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--sample-param wants NAME=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        params[name.strip()] = tuple(value) if isinstance(value, list) else value
    return params
