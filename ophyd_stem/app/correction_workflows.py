"""``ophyd-stem run`` entries of the instrument corrections (issue 15).

- ``drift``: edge-guided EELS on a drifting twin, with drift measured and corrected
  (``plans.drift``); on the twin, the estimates and the beam placement are scored against
  the specimen's true drift;
- ``zlp``: a spectrum image on a twin whose energy scale jitters and walks, every spectrum
  aligned on its zero-loss peak (``plans.zero_loss``).
"""

from __future__ import annotations

import argparse
from collections.abc import Generator
from typing import Any

import numpy as np

from .plan_builds import _setup_scan
from .plan_options import QueueItem, _scan_arguments, _setup_item
from .registry import PlanEntry, register
from .run_summaries import _twin_truth

__all__: list[str] = []


class _Documents:
    """Keeps a run's documents (the summary reads the run back as it was recorded)."""

    def __init__(self) -> None:
        self.documents: list[tuple[str, dict]] = []

    def __call__(self, name: str, doc: dict) -> None:
        self.documents.append((name, doc))


# ---------------------------------------------------------------------- drift


def _drift_arguments(parser: argparse.ArgumentParser) -> None:
    _scan_arguments(parser, 128)
    parser.add_argument("--budget", type=int, default=150, help="most edge points")
    parser.add_argument("--every", type=int, default=10, help="re-scan every this many spectra")
    parser.add_argument("--every-seconds", type=float, default=0.0, help="or after this long, s")
    parser.add_argument(
        "--exposure",
        type=float,
        default=2.0,
        help="EELS exposure, s: long enough that the specimen drifts by pixels over the run "
        "(the twin's clock, not the wall clock)",
    )
    parser.add_argument(
        "--no-correction", action="store_true", help="measure drift but do not follow it"
    )


class _DriftTruth(_Documents):
    """Keeps the run's documents and, on the twin, the true frame (time, drift) of the survey
    and of every re-scan, asked for as each image arrives (truth never changes the data)."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session
        self.frames: list[dict[str, Any]] | None = []
        self._images: set[str] = set()

    def __call__(self, name: str, doc: dict) -> None:
        super().__call__(name, doc)
        if name == "descriptor" and doc.get("name") in ("survey", "drift_images"):
            self._images.add(doc["uid"])
        elif name == "event" and doc["descriptor"] in self._images and self.frames is not None:
            truth = _twin_truth(self.session)
            self.frames = None if truth is None else [*self.frames, dict(truth["frame"])]


def _build_drift(session: Any, args: argparse.Namespace) -> Generator:
    import bluesky.plan_stubs as bps
    import bluesky.preprocessors as bpp

    from plans.drift import drift_corrected_edge_eels

    yield from _setup_scan(session, args)
    m = session.microscope
    if args.exposure is not None:
        yield from bps.mv(m.eels.exposure, args.exposure)
    args.documents = _DriftTruth(session)
    plan = drift_corrected_edge_eels(
        m.scan,
        m.eels_points,
        budget=args.budget,
        every_points=args.every,
        every_seconds=args.every_seconds,
        correct=not args.no_correction,
    )
    return (yield from bpp.subs_wrapper(plan, args.documents))


def _summarize_drift(session: Any, args: argparse.Namespace) -> list[str]:
    from agents.runs import unpack_run

    from .analysis.corrections import drift_truth

    data = unpack_run(args.documents.documents, fill_external=False)
    frames = args.documents.frames
    if not frames or len(data.decisions.get("step", [])) == 0:
        return []  # a real microscope: no truth (ophyd-stem show has the drift measured)
    score = drift_truth(data, frames)
    err, scored = score["estimate_error"], score["scored"]
    placed, uncorrected = score["placement"][scored], score["uncorrected"][scored]
    lines = [
        f"  drift       the specimen moved {score['moved']:.1f} px "
        f"({score['moved'] * float(frames[0]['pixel_size']):.1f} nm) over the run; "
        f"{len(err)} re-scans"
    ]
    if len(err):
        lines.append(
            f"  truth       drift estimates {np.mean(err):.2f} px from the twin's true "
            f"displacement (mean; largest {np.max(err):.2f} px)"
        )
    if len(placed):
        left = int((~scored).sum())
        how = "corrected" if not args.no_correction else "NOT corrected (--no-correction)"
        lines.append(
            f"  placement   beam {how}: spectra {np.mean(placed):.2f} px from their sites "
            f"(mean; {100 * np.mean(placed <= 0.5):.0f} % within 0.5 px); "
            f"{np.mean(uncorrected):.2f} px had the beam stayed where the survey said"
            + (f"; {left} site(s) drifted out of the field, not scored" if left else "")
        )
    return lines


def _queue_drift(args: argparse.Namespace) -> list[QueueItem]:
    exposure = ["eels.exposure", args.exposure] if args.exposure is not None else []
    kwargs = {
        "budget": args.budget,
        "every_points": args.every,
        "every_seconds": args.every_seconds,
        "correct": not args.no_correction,
    }
    return [
        *_setup_item(args, *exposure),
        ("drift_corrected_edge_eels", ["scan_engine", "eels_points"], kwargs),
    ]


register(
    PlanEntry(
        "drift",
        "edge-guided EELS with specimen drift measured and corrected (twin drifts)",
        _drift_arguments,
        _build_drift,
        default_sample="nanowire",
        summarize=_summarize_drift,
        twin_options={"drift": True},
        example="ophyd-stem run drift --every 20",
        queue_items=_queue_drift,
    )
)


# ---------------------------------------------------------------------- zero loss

#: the twin's spectrometer for ``run zlp``: jitter (eV rms per spectrum) and walk (eV/s)
ZLP_TWIN = {"energy_jitter": 0.1, "energy_drift": 1e-3}


def _zlp_arguments(parser: argparse.ArgumentParser) -> None:
    _scan_arguments(parser, 128)
    parser.add_argument("--rows", type=int, default=16, help="spectra per column of the grid")
    parser.add_argument("--cols", type=int, default=16, help="spectra per row of the grid")
    parser.add_argument(
        "--exposure", type=float, default=None, help="EELS exposure, s (default: the microscope's)"
    )


def _build_zlp(session: Any, args: argparse.Namespace) -> Generator:
    import bluesky.plan_stubs as bps
    import bluesky.preprocessors as bpp

    from plans import spectrum_image

    yield from _setup_scan(session, args)
    m = session.microscope
    if args.exposure is not None:
        yield from bps.mv(m.eels.exposure, args.exposure)
    args.documents = _Documents()
    # a batch per row: the walk of the energy scale is recorded row by row
    plan = spectrum_image(
        m.scan, m.eels_points, args.rows, args.cols, batch=args.cols, zero_loss=True
    )
    return (yield from bpp.subs_wrapper(plan, args.documents))


def _queue_zlp(args: argparse.Namespace) -> list[QueueItem]:
    exposure = ["eels.exposure", args.exposure] if args.exposure is not None else []
    plan_args = ["scan_engine", "eels_points", args.rows, args.cols]
    kwargs = {"batch": args.cols, "zero_loss": True}
    return [*_setup_item(args, *exposure), ("spectrum_image", plan_args, kwargs)]


def _summarize_zlp(session: Any, args: argparse.Namespace) -> list[str]:
    from agents.runs import unpack_run
    from agents.zlp import locate_zero_loss

    data = unpack_run(args.documents.documents, fill_external=False)
    rows = data.zero_loss
    if not rows:
        return ["  zero loss   not aligned (no zero-loss peak on the energy axis)"]
    zlp = np.asarray(rows["zlp"], dtype=float)
    trusted = np.asarray(rows["trusted"], dtype=bool)
    after = locate_zero_loss(data.aligned_spectra[trusted], data.energy_axis)
    walk = np.asarray(rows["walk"], dtype=float)
    return [
        f"  zero loss   peak found and moved to 0 eV in {int(trusted.sum())} of {len(zlp)} spectra",
        f"  scatter     ZLP position {np.nanstd(zlp):.3f} eV rms as measured, "
        f"{np.std(after):.4f} eV after alignment",
        f"  walk        median ZLP {walk[0]:+.3f} eV in the first batch, {walk[-1]:+.3f} eV "
        "in the last (the energy scale's slow drift)",
        f"  twin        spectrometer jitter {ZLP_TWIN['energy_jitter']} eV rms, walk "
        f"{ZLP_TWIN['energy_drift']} eV/s; spectra kept as measured in primary, shifts in "
        "zero_loss",
        # the twin puts the zero-loss peak truly at 0 eV before it jitters and walks it:
        # how far the aligned peaks sit from there is the alignment's error
        f"  truth       aligned peaks {np.sqrt(np.mean(np.square(after))):.4f} eV rms from "
        f"0 eV, where the twin's zero-loss peak truly is (as measured: "
        f"{np.sqrt(np.nanmean(np.square(zlp))):.3f} eV rms)",
    ]


register(
    PlanEntry(
        "zlp",
        "spectrum image with every spectrum aligned on its zero-loss peak (twin jitters)",
        _zlp_arguments,
        _build_zlp,
        default_sample="nanoparticles",
        summarize=_summarize_zlp,
        twin_options=dict(ZLP_TWIN),
        example="ophyd-stem run zlp --rows 8 --cols 8",
        queue_items=_queue_zlp,
        description="A spectrum image on the twin's nanoparticles whose spectrometer jitters "
        "(0.1 eV rms) and walks (1 meV/s): every spectrum's zero-loss peak is located and the "
        "spectrum moved so it sits at 0 eV; the spectra are kept as measured, the shifts in "
        "the zero_loss stream.",
    )
)
