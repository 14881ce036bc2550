"""What ``ophyd-stem run`` prints after a built-in plan (``PlanEntry.summarize``); on the
twin, the run scored against the twin's ground truth."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from .plan_options import _dkl_scalarizer

__all__: list[str] = []


def _summarize_logstar(session: Any, args: argparse.Namespace) -> list[str]:
    agent = args.agent
    report = agent.report()
    lines = [f"  atoms       {report['n_atoms']} found with the chosen LoG parameters"]
    if report.get("clusters"):
        lines.append(
            f"  classes     {report['clusters'].get('counts')} (GMM, dimmest first); "
            f"{report.get('outliers', 0)} atom(s) far brighter than the lattice"
        )
    chosen = report.get("chosen") or {}
    front = report.get("front") or []
    if chosen and front:
        point = front[chosen["index"]]
        rewards = ", ".join(f"{k} {v:.3f}" for k, v in point["rewards"].items())
        lines.append(
            f"  front       {len(front)} points; chosen #{chosen['index']} ({rewards}) "
            f"by {chosen['chooser']} ({chosen['method']})"
        )
    if args.eels and len(agent.positions) < args.eels:
        lines.append(
            f"  EELS        {len(agent.positions)} of the {args.eels} spectra asked: only "
            f"{len(agent.positions)} atom(s) of the target '{args.target}' in the image"
        )
    if agent.image is not None:
        found = agent.atoms[:, [1, 0]] if len(agent.atoms) else np.empty((0, 2))
        lines += _truth_atoms(session, found, agent.positions, agent.image.shape)
    info = report.get("pixel_size") or {}
    source = info.get("source")
    if source == "fft" and info.get("given_nm"):
        source = (
            f"from the image's FFT; its calibration {info['given_nm']:.5g}, "
            f"FFT/calibration {info['fft_over_given']:.4f}"
        )
    elif source == "fft":
        source = "from the image's FFT" + (
            ", the atoms' spacing agreeing" if info.get("confirmed_by") else ""
        )
    elif source == "neighbours":
        source = "from the spacing of the image's atoms: its FFT was refused"
    if report.get("pixel_size_nm"):
        lines.append(
            f"  pixel size  {report['pixel_size_nm']:.5g} nm/px ({source or 'given'}; "
            f"lattice {report['lattice']['name']})"
        )
    warning = (report.get("pixel_size") or {}).get("warning")
    if warning:
        lines.append(f"  WARNING     {warning}")
    if info.get("agent_pixel_size_nm"):  # the agent's own: not used while images have one
        lines.append(
            f"  WARNING     the agent's pixel size {info['agent_pixel_size_nm']:.5g} nm/px was "
            f"not used: the survey came calibrated {report['pixel_size_nm']:.5g} nm/px, which "
            "wins; the plan's pixel_size_nm (--pixel-size N) corrects it, 'fft' takes the "
            "image's own lattice"
        )
    lines += _contrast_lines(report)
    check = report.get("plausibility") or {}
    if check:
        if check.get("ok"):
            lines.append("  plausible   the atoms sit on columns, where the lattice puts them")
        for text in check.get("warnings") or []:
            lines.append(f"  WARNING     {text}")
        if check.get("suggested_pixel_size_nm") and check.get("pixel_size_nm"):
            # the commonest cause of implausible atoms: say what to do about it
            lines.append(
                f"  WARNING     the image suggests {check['suggested_pixel_size_nm']:.4g} nm/px "
                f"(from {check.get('suggested_by')}), not the {check['pixel_size_nm']:.4g} "
                "nm/px used: check the survey's calibration, or take the image's own with "
                "--pixel-size fft"
            )
    return lines


def _contrast_lines(report: dict[str, Any]) -> list[str]:
    """How the atom finder took the survey: bright columns as they are, dark ones inverted,
    and why (the agent's ``report()["contrast"]``)."""
    contrast = report.get("contrast") or {}
    if not contrast.get("contrast"):
        return []
    how = "as it is" if contrast["contrast"] == "bright" else "inverted, atoms found as peaks"
    lines = [f"  contrast    {contrast['contrast']} columns, image {how} ({contrast['why']})"]
    if contrast.get("warning"):
        lines.append(f"  WARNING     {contrast['warning']}")
    return lines


def _twin_truth(session: Any) -> dict[str, Any] | None:
    """The twin's ground truth of the last image, or None on a real microscope."""
    if session.bridge is None:
        return None
    try:
        return session.bridge.client().get_truth()
    except Exception:  # a replay or another backend without truth
        return None


def _truth_atoms(
    session: Any, found_xy: np.ndarray, eels_xy: np.ndarray, shape: tuple[int, int]
) -> list[str]:
    """On the twin: the atoms found scored against the truth (the benchmarks' rule,
    :func:`agents.metrics.score_atoms`) and the species the EELS positions landed on."""
    truth = _twin_truth(session)
    if truth is None or "atoms" not in truth:
        return []
    from agents.metrics import score_atoms

    atoms = truth["atoms"]
    xy = np.asarray(atoms["xy_px"], dtype=float)
    height, width = shape
    score = score_atoms(found_xy, xy, (width, height))
    lines = [
        f"  truth       F1 {score.f1:.3f} (TP {score.tp}, FP {score.fp}, FN {score.fn}; "
        "the benchmarks' matching rule)"
    ]
    species = np.asarray(atoms.get("species", []))
    names = list(atoms.get("species_names") or [])
    if len(eels_xy) and len(species) == len(xy) and names:
        inside = (xy[:, 0] >= -0.5) & (xy[:, 0] <= width - 0.5)
        inside &= (xy[:, 1] >= -0.5) & (xy[:, 1] <= height - 0.5)
        distance = np.hypot(*(xy[None, :, :] - np.asarray(eels_xy)[:, None, :]).transpose(2, 0, 1))
        nearest = np.argmin(distance, axis=1)
        landed = [str(names[int(species[i])]) for i in nearest]
        counts = {name: landed.count(name) for name in dict.fromkeys(landed)}
        field = {
            str(name): int(np.sum(inside & (species == k)))
            for k, name in enumerate(names)
            if np.any(inside & (species == k))
        }
        lines.append(
            "  EELS on     "
            + ", ".join(f"{n} {name}" for name, n in counts.items())
            + " (nearest true atom of each position; in the field: "
            + ", ".join(f"{n} {name}" for name, n in field.items())
            + ")"
        )
    return lines


def _summarize_edge(session: Any, args: argparse.Namespace) -> list[str]:
    agent = args.agent
    n, pixels = len(agent.candidates), int(np.prod(agent.image_shape))
    lines = [f"  measured    {n} of {pixels} pixels ({100 * n / pixels:.2f} %) along the edges"]
    truth = _twin_truth(session)
    if truth is not None and "interface" in truth.get("label_names", []):
        from agents.edges import evaluate_edge_points

        label = list(truth["label_names"]).index("interface")
        score = evaluate_edge_points(truth["labels"], agent.candidates, interface_label=label)
        lines.append(
            f"  truth       {100 * score['interface_within_1px']:.1f} % of the "
            f"{score['n_interface']} true interface pixels lie within 1 px of a measured point"
        )
    per_point = session.microscope.eels_points.last_acquisition
    if per_point is not None and n:
        seconds = per_point.instrument_time / n
        lines.append(
            f"  full grid   {pixels} spectra would take {_minutes(seconds * pixels)} of "
            f"microscope time; the {n} measured took {_minutes(seconds * n)}"
        )
    return lines


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _band_truth(
    session: Any, args: argparse.Namespace, positions: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """On the twin, for the band it has a map of (``--scalarizer band:20:30``): the twin's
    noise-free map of that band and its values where the agent measured (``positions``, x
    and y in pixels, at the nearest pixel); None elsewhere."""
    truth = _twin_truth(session)
    target = None if truth is None else truth.get("target_map")
    if target is None or args.scalarizer != "band:20:30":
        return None
    target = np.asarray(target, dtype=float)
    rows = np.clip(np.rint(positions[:, 1]).astype(int), 0, target.shape[0] - 1)
    cols = np.clip(np.rint(positions[:, 0]).astype(int), 0, target.shape[1] - 1)
    return target, target[rows, cols]


#: how the summary says where the seed points went (``DKLAgent(seed_points=...)``)
_SEED_WORDS = {
    "features": "on the kinds of feature the survey shows",
    "spread": "spread over the field",
    "random": "at random",
    "grid": "on a grid",
}


def _seed_words(agent: Any) -> str:
    """Where the seed points went, and which went first (``seed_order="objects"``: the
    specimen's columns or particles, bright or dark as the survey detector says)."""
    config = agent.config()
    words = _SEED_WORDS.get(str(config["seed_points"]), "given")
    if config["seed_points"] == "features" and config.get("seed_order") == "objects":
        decision = agent.contrast_decision  # a DKLAgent's: decided when it was made
        words += f", the {decision['contrast']} columns or particles first"
        if decision.get("source") == "detector":
            words += f" ({decision['detector']} survey)"
        elif decision.get("source") in ("image", "ambiguous"):
            words += f" ({decision.get('why')})"
    return words


def scalarizer_words(args: argparse.Namespace, spec: str) -> str:
    """The scalarizer spec, and what ``auto`` chose when it did (``auto: edge:...``)."""
    chosen = getattr(getattr(args, "scalarizer_in_force", None), "resolved", None)
    return f"{spec}: {chosen}" if chosen and chosen != spec else spec


def _summarize_dkl(session: Any, args: argparse.Namespace) -> list[str]:
    agent = args.agent
    # a survey the agent cannot learn from (constant: beam blanked, detector off)
    warning = getattr(agent, "survey_warning", None)
    said = [f"  WARNING     {warning}"] if warning else []
    values = np.asarray(agent.values)
    if not len(values):
        return ["  measured    nothing", *said]
    best = int(np.argmax(values))
    x, y = agent.positions[best]
    lines = [
        f"  best        {values[best]:.4g} at ({x:.1f}, {y:.1f}) px, "
        f"step {best + 1} of {len(values)} ({scalarizer_words(args, _dkl_scalarizer(args))})",
        f"  agent       window {agent.window} px, candidates every {agent.grid_step} px "
        f"({len(agent.candidates)}), {args.seeds} seed points " + _seed_words(agent),
    ]
    band = _band_truth(session, args, agent.positions)
    if band is not None:
        target, found = band
        first = (
            int(np.argmax(found >= 0.9 * target.max())) + 1
            if (found >= 0.9 * target.max()).any()
            else None
        )
        lines.append(
            f"  truth       best measured position holds {100 * found.max() / target.max():.0f} % "
            f"of the true maximum" + (f" (>= 90 % from step {first})" if first else "")
        )
    return lines + said


#: what an atom's uncertainty is, in the run summary
_UNCERTAINTY_WORDS = {
    "calibrated": "probability of being false, calibrated on the twin",
    "variance": "variance across members",
}


def _summarize_dcnn(session: Any, args: argparse.Namespace) -> list[str]:
    report = args.agent.report()
    lines = [
        f"  atoms       {report.get('atoms')} found by {report['members']} U-Nets "
        f"(ensemble {report['ensemble']!r})",
        f"  uncertainty image {report.get('image_uncertainty', 0):.2e} (variance), "
        f"median atom {report.get('atom_uncertainty_median') or 0:.2e} "
        f"({_UNCERTAINTY_WORDS.get(report.get('uncertainty_method'), 'variance')})",
    ]
    lines += _contrast_lines(report)
    prediction = args.agent.prediction
    if prediction is not None:
        found = np.asarray(prediction.xy, dtype=float).reshape(-1, 2)
        lines += _truth_atoms(session, found, args.agent.positions, prediction.mean.shape)
    return lines
