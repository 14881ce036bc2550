"""Command-line options of the DigitalMicrograph backend (``dm-bridge serve --backend dm``).

A mixin, so that the backend module keeps to the instrument and this one to configuration;
importing it never imports DigitalMicrograph, so ``--help`` works on any machine.

Standard library only, Python 3.8 syntax.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any, Dict, Mapping, Tuple

from .base import Limits
from .dm_session import PROCESSING

__all__ = ["DEFAULT_SIGNALS", "DigitalMicrographOptions", "check_signals"]

#: detector name -> DigiScan signal index; the order is set in DigiScan's setup dialog and
#: differs between microscopes, so ``--dm-signal`` overrides it
DEFAULT_SIGNALS: Dict[str, int] = {"HAADF": 0, "BF": 1}


class DigitalMicrographOptions:
    """``add_arguments`` / ``options_from_arguments`` of the DM backend (a mixin before
    :class:`~.base.Backend`, whose options it extends)."""

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        """Add the DM options (``--dm-signal HAADF=0``, ``--dm-eels-rows``, ...).

        Example:
            >>> import argparse
            >>> from dm_bridge.backends.digitalmicrograph import DigitalMicrographBackend
            >>> parser = argparse.ArgumentParser()
            >>> DigitalMicrographBackend.add_arguments(parser)
            >>> parser.parse_args(["--dm-signal", "HAADF=2"]).dm_signal
            [('HAADF', 2)]
        """
        super().add_arguments(parser)  # type: ignore[misc]
        parser.add_argument(
            "--dm-signal",
            action="append",
            type=_signal_item,
            metavar="NAME=INDEX",
            help="detector name and its DigiScan signal index (DigiScan setup order), "
            "repeatable; default: "
            + " ".join(f"--dm-signal {k}={v}" for k, v in DEFAULT_SIGNALS.items()),
        )
        parser.add_argument(
            "--dm-eels-rows",
            type=_rows,
            metavar="TOP:BOTTOM",
            help="camera rows summed into a spectrum (default: the camera's read-out area)",
        )
        parser.add_argument(
            "--dm-eels-vertical-binning",
            type=int,
            default=1,
            metavar="N",
            help="camera binning across the dispersion (default 1)",
        )
        parser.add_argument(
            "--dm-eels-processing",
            choices=sorted(PROCESSING),
            default="gain_normalized",
            help="camera processing (default gain_normalized: dark and gain corrected)",
        )
        parser.add_argument(
            "--dm-eels-sensor-width",
            type=int,
            default=Limits.sensor_channels,
            metavar="N",
            help="camera columns along the dispersion, i.e. channels at binning 1",
        )
        parser.add_argument(
            "--dm-camera-id",
            type=int,
            metavar="ID",
            help="refuse to acquire unless the active camera in DM has this ID",
        )
        parser.add_argument("--dm-microscope-name", help="microscope name reported by hello")
        parser.add_argument(
            "--dm-show-images", action="store_true", help="show each survey image in DM"
        )
        parser.add_argument(
            "--dm-line-sync", action="store_true", help="synchronise DigiScan lines with mains"
        )

    @classmethod
    def options_from_arguments(cls, args: Any) -> Dict[str, Any]:
        """Constructor keyword arguments from parsed ``dm-bridge serve`` options."""
        options = super().options_from_arguments(args)  # type: ignore[misc]
        options["limits"] = replace(options["limits"], sensor_channels=args.dm_eels_sensor_width)
        options.update(
            signals=dict(args.dm_signal) if args.dm_signal else None,
            eels_rows=args.dm_eels_rows,
            eels_vertical_binning=args.dm_eels_vertical_binning,
            eels_processing=args.dm_eels_processing,
            camera_id=args.dm_camera_id,
            microscope_name=args.dm_microscope_name,
            show_images=args.dm_show_images,
            line_sync=args.dm_line_sync,
        )
        return options


def check_signals(signals: Mapping[str, int]) -> Dict[str, int]:
    if not isinstance(signals, Mapping) or not signals:
        raise ValueError("signals must map detector names to DigiScan signal indices")
    clean: Dict[str, int] = {}
    for name, index in signals.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"detector names must be non-empty strings, got {name!r}")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"DigiScan signal index of {name} must be an int >= 0: {index!r}")
        clean[name] = index
    if len(set(clean.values())) != len(clean):
        raise ValueError(f"two detectors share a DigiScan signal index: {clean}")
    return clean


def _signal_item(text: str) -> Tuple[str, int]:
    name, sep, index = text.partition("=")
    if not sep or not name.strip() or not index.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=INDEX (e.g. HAADF=0), got {text!r}")
    return name.strip(), int(index)


def _rows(text: str) -> Tuple[int, int]:
    top, sep, bottom = text.partition(":")
    if not sep or not top.strip().isdigit() or not bottom.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected TOP:BOTTOM rows (e.g. 924:1124), got {text!r}")
    if int(top) >= int(bottom):
        raise argparse.ArgumentTypeError(f"TOP must be above BOTTOM: {text!r}")
    return int(top), int(bottom)
