"""Forensics and counterfactuals of the instrument corrections: drift and zero-loss alignment.

A drift-corrected run (``drift_corrected_edge_eels``) records every re-scan of the field
(``drift_images``), every drift estimate (``drift``) and, for every spectrum, the site it was
meant for, where the beam was sent and the instrument time the correction was computed for
(``decisions``). :func:`drift_checks` rebuilds the drift tracker from the run's settings,
registers the recorded re-scans again and compares each estimate, then re-derives every beam
position from them. :func:`drift_counterfactual` does the same with something changed
(no correction, phase instead of cross-correlation, another velocity window...) and says
where the beam would have gone instead.

A run that aligned its spectra on the zero-loss peak (``zero_loss`` stream, any EELS plan)
keeps the spectra as measured and the shift of each: :func:`zero_loss_checks` locates every
peak again in the recorded spectra, with the recorded settings, and compares positions and
shifts; :func:`zero_loss_counterfactual` compares with another setting (``off``, the
centroid method, another window).

Tolerances: positions agree within 1e-6 px; zero-loss positions within 1e-9 eV (the same
arithmetic on the same numbers).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.runs import RunData

__all__ = [
    "correction_summary",
    "drift_checks",
    "drift_counterfactual",
    "drift_replay",
    "drift_truth",
    "zero_loss_checks",
    "zero_loss_counterfactual",
]

#: estimates and positions closer than this (px) are the same
PX_TOLERANCE = 1e-6
#: zero-loss positions closer than this (eV) are the same
EV_TOLERANCE = 1e-9


# ---------------------------------------------------------------------- drift


def _drift_settings(data: RunData) -> dict[str, Any]:
    report = data.edge_report or {}
    settings = dict(report.get("drift") or {})
    if not settings:
        raise ValueError("the run records no drift tracker settings (edge_map report)")
    return settings


def _rescans(data: RunData) -> list[np.ndarray]:
    stream = data.streams.get("drift_images")
    if stream is None or not len(stream):
        return []
    key = f"scan-{data.survey_signal.lower()}"
    column = stream.columns.get(key)
    if column is None:
        raise ValueError(f"the re-scans hold no {data.survey_signal} image ({key})")
    stack = np.asarray(column)
    return list(stack.reshape(-1, *stack.shape[-2:]))


def _estimates(data: RunData) -> dict[str, np.ndarray]:
    stream = data.streams.get("drift")
    if stream is None:
        return {}
    return {k.split("-", 1)[-1]: np.asarray(c) for k, c in stream.columns.items()}


def drift_replay(data: RunData, **overrides: Any) -> dict[str, Any]:
    """Register the recorded re-scans again and re-derive every beam position.

    Args:
        data: a ``drift_corrected_edge_eels`` run.
        overrides: tracker settings to change (``normalisation="phase"``, ``correct=False``,
            ``velocity_window=2``...), for counterfactuals.

    Returns:
        ``{"estimates": (K, 2) px, "peaks": (K,), "used": (K,) bool, "positions": (N, 2) px,
        "recorded_estimates", "recorded_positions", "estimate_of_decision": (N,) the
        number of estimates each position was computed from, "correct": bool}``.

    Raises:
        ValueError: a run without a survey image, drift settings or re-scans to replay, or
            one recorded before decisions carried their planned times.
    """
    from agents.drift import DriftTracker

    if data.survey_image is None:
        raise ValueError("the run has no survey image: nothing to register against")
    settings = {**_drift_settings(data), **overrides}
    correct = bool(settings.pop("correct", data.plan_args.get("correct", True)))
    reference_time = settings.pop("reference_time", None)
    if reference_time is None:
        raise ValueError("the run predates recorded reference times: the drift cannot be redone")
    names = ("every_points", "every_seconds", "upsample", "velocity_window", "min_peak",
             "normalisation", "first_points")  # fmt: skip
    tracker = DriftTracker(
        np.asarray(data.survey_image, dtype=np.float64),
        reference_time=float(reference_time),
        **{k: settings[k] for k in names if k in settings},
    )
    images = _rescans(data)
    est = _estimates(data)
    n_est = len(est.get("dx", []))
    if len(images) != n_est:
        raise ValueError(f"{len(images)} re-scans recorded but {n_est} drift estimates")
    dec = data.decisions
    if len(dec.get("step", [])) and "planned_time" not in dec:
        raise ValueError(
            "the run predates recorded planned times: its beam positions cannot be re-derived"
        )
    intended = np.column_stack([dec.get("intended_x", []), dec.get("intended_y", [])]).astype(float)
    times = np.asarray(dec.get("planned_time", []), dtype=float)
    steps = np.asarray(dec.get("step", []), dtype=int)
    rows, cols = np.shape(data.survey_image)
    limit = np.array([cols - 1, rows - 1], dtype=float)
    done = np.asarray(est.get("spectra_done", np.zeros(n_est)), dtype=int)
    estimates, peaks, used = [], [], []
    positions = np.empty_like(intended)
    of_decision = np.zeros(len(intended), dtype=int)
    k = 0
    for i in range(len(intended)):
        while k < n_est and done[k] <= steps[i]:
            got = tracker.measure(images[k], float(est["time"][k]))
            estimates.append((got["dx"], got["dy"]))
            peaks.append(got["peak"])
            used.append(got["used"])
            k += 1
        where = tracker.correct(intended[i : i + 1], times[i : i + 1]) if correct else intended[i]
        positions[i] = np.clip(np.reshape(where, 2), 0.0, limit)
        of_decision[i] = k
    while k < n_est:  # estimates after the last spectrum (none in this plan; kept general)
        got = tracker.measure(images[k], float(est["time"][k]))
        estimates.append((got["dx"], got["dy"]))
        peaks.append(got["peak"])
        used.append(got["used"])
        k += 1
    return {
        "estimates": np.asarray(estimates, dtype=float).reshape(-1, 2),
        "peaks": np.asarray(peaks, dtype=float),
        "used": np.asarray(used, dtype=bool),
        "positions": positions,
        "recorded_estimates": np.column_stack([est.get("dx", []), est.get("dy", [])]).astype(float),
        "recorded_positions": np.column_stack([dec.get("x", []), dec.get("y", [])]).astype(float),
        "intended": intended,
        "estimate_of_decision": of_decision,
        "correct": correct,
    }


def drift_checks(data: RunData) -> tuple[list[Any], list[str]]:
    """Forensics of a drift-corrected run: one check per re-registered estimate
    (``"drift"``) and one per group of spectra placed with the same estimates
    (``"positions"``). Returns ``(checks, notes)``."""
    from .checks import Check

    notes: list[str] = []
    try:
        replay = drift_replay(data)
    except ValueError as exc:
        return [], [f"drift not re-derived: {exc}"]
    checks = []
    recorded, again = replay["recorded_estimates"], replay["estimates"]
    for k, (a, b) in enumerate(zip(recorded, again)):
        distance = float(np.max(np.abs(a - b)))
        checks.append(Check(k + 1, "drift", a[None], b[None], distance <= PX_TOLERANCE, distance))
    groups = replay["estimate_of_decision"]
    for k in np.unique(groups):
        rows = groups == k
        a, b = replay["recorded_positions"][rows], replay["positions"][rows]
        distance = float(np.max(np.abs(a - b))) if len(a) else 0.0
        checks.append(Check(int(k), "positions", a, b, distance <= PX_TOLERANCE, distance))
    rejected = int((~replay["used"]).sum())
    if rejected:
        notes.append(f"{rejected} drift estimate(s) below the trusted correlation peak")
    return checks, notes


def drift_counterfactual(data: RunData, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Where the beam would have gone with another drift correction, given the same re-scans.

    Args:
        name: ``"uncorrected"`` (the survey's positions), ``"phase"`` or ``"cross"`` (the
            other normalisation of the correlation), or ``"drift"`` with ``options``
            (``velocity_window``, ``upsample``, ``min_peak``, ``normalisation``).

    Returns:
        ``{"recorded", "chosen", "agree", "summary"}`` for a counterfactual result.

    Raises:
        ValueError: an unknown alternative.
    """
    overrides = dict(options)
    if name == "uncorrected":
        overrides["correct"] = False
    elif name in ("phase", "cross"):
        overrides["normalisation"] = name
    elif name != "drift":
        raise ValueError(
            f"unknown alternative {name!r} for a drift-corrected run: uncorrected, phase, "
            "cross, drift:velocity_window=N (or upsample, min_peak)"
        )
    recorded_run = drift_replay(data)
    other = drift_replay(data, **overrides)
    recorded, chosen = recorded_run["recorded_positions"], other["positions"]
    distance = np.linalg.norm(chosen - recorded, axis=1)
    agree = distance <= 0.1
    pixel = data.pixel_size
    summary = {
        "spectra compared": len(recorded),
        "same position (0.1 px)": f"{int(agree.sum())} of {len(agree)}",
        "mean distance (px)": f"{distance.mean():.2f}" if len(distance) else "-",
        "largest distance (px)": f"{distance.max():.2f}" if len(distance) else "-",
    }
    if pixel and len(distance):
        summary["mean distance (nm)"] = f"{distance.mean() * pixel:.3f}"
    if len(other["estimates"]):
        change = np.linalg.norm(other["estimates"] - recorded_run["recorded_estimates"], axis=1)
        summary["estimates changed by (px)"] = f"mean {change.mean():.2f}, max {change.max():.2f}"
    return {"recorded": recorded, "chosen": chosen, "agree": agree, "summary": summary}


# ---------------------------------------------------------------------- zero loss


def _aligner(data: RunData, **overrides: Any) -> Any:
    from agents.zlp import ZeroLossAligner

    settings = {**dict(data.start.get("zero_loss") or {}), **overrides}
    names = ("method", "search", "max_shift")
    return ZeroLossAligner(**{k: settings[k] for k in names if k in settings})


def zero_loss_checks(data: RunData) -> tuple[list[Any], list[str]]:
    """Forensics of a zero-loss aligned run: the peaks located again in the recorded
    spectra with the recorded settings, positions and shifts compared (one check)."""
    from .checks import Check

    if not data.zero_loss:
        return [], []
    if data.spectra is None or data.energy_axis is None:
        return [], ["zero-loss alignment not checked: the run holds no spectra"]
    recorded_zlp = np.asarray(data.zero_loss["zlp"], dtype=float)
    recorded_shift = np.asarray(data.zero_loss["shift"], dtype=float)
    if len(recorded_zlp) != len(data.spectra):
        return [], [f"{len(data.spectra)} spectra but {len(recorded_zlp)} zero-loss rows"]
    _, zlp, shift = _aligner(data).align_with_shifts(data.spectra, data.energy_axis)
    same_nan = np.array_equal(np.isnan(zlp), np.isnan(recorded_zlp))
    finite = np.isfinite(zlp) & np.isfinite(recorded_zlp)
    distance = float(np.max(np.abs(zlp[finite] - recorded_zlp[finite]), initial=0.0))
    distance = max(distance, float(np.max(np.abs(shift - recorded_shift), initial=0.0)))
    match = same_nan and distance <= EV_TOLERANCE
    notes = []
    trusted = np.asarray(data.zero_loss.get("trusted", np.ones(len(recorded_zlp))), dtype=bool)
    untrusted = int(np.sum(~trusted))
    if untrusted:
        notes.append(f"{untrusted} spectra left unshifted (no trusted zero-loss peak)")
    return [Check(0, "zero_loss", recorded_zlp, zlp, match, distance)], notes


def zero_loss_counterfactual(data: RunData, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """How another zero-loss setting would have moved the recorded spectra.

    Args:
        name: ``"off"`` (no alignment), ``"centroid"`` or ``"log-parabola"`` (the peak
            refinement), or ``"zlp"`` with ``options`` (``search``, ``max_shift``).

    Returns:
        ``{"summary", "zlp", "shift"}``: per spectrum, the alternative's positions and shifts
        (eV), and a summary comparing the shifts with the recorded ones.
    """
    if not data.zero_loss or data.spectra is None or data.energy_axis is None:
        raise ValueError("the run did not align its spectra on the zero-loss peak")
    recorded = np.asarray(data.zero_loss["shift"], dtype=float)
    if name == "off":
        zlp, shift = np.full(len(recorded), np.nan), np.zeros(len(recorded))
    elif name in ("centroid", "log-parabola", "zlp"):
        overrides = dict(options)
        if name != "zlp":
            overrides["method"] = name
        _, zlp, shift = _aligner(data, **overrides).align_with_shifts(
            data.spectra, data.energy_axis
        )
    else:
        raise ValueError(
            f"unknown zero-loss alternative {name!r}: off, centroid, log-parabola, "
            "zlp:search=E,max_shift=E"
        )
    difference = np.abs(shift - recorded)
    # how much the alternative leaves of the spectrometer's jitter: the spread of the peaks
    # after its shifts (0 for a perfect alignment)
    located = np.asarray(data.zero_loss["zlp"], dtype=float)
    residual = located + shift
    summary = {
        "spectra compared": len(recorded),
        "shift differs by (eV)": f"mean {difference.mean():.4f}, max {difference.max():.4f}",
        "ZLP scatter after (eV)": f"{np.nanstd(residual):.4f} "
        f"(recorded alignment {np.nanstd(located + recorded):.4f}, raw {np.nanstd(located):.4f})",
    }
    return {"summary": summary, "zlp": zlp, "shift": shift}


def _true_displacement(frames: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(times s since the survey, displacements px) of the specimen at each truth frame."""
    first = frames[0]
    t = np.deg2rad(float(first.get("rotation", 0.0)))
    c, s = np.cos(t), np.sin(t)
    times = np.array([float(f["time"]) - float(first["time"]) for f in frames])
    moved = np.array([np.subtract(f["drift_nm"], first["drift_nm"]) for f in frames], float)
    # a fixed specimen point moves in the image as the drift (ScanFrame.to_pixels)
    u = c * moved[:, 0] - s * moved[:, 1]
    v = s * moved[:, 0] + c * moved[:, 1]
    return times, np.column_stack([u, v]) / float(first["pixel_size"])


def drift_truth(data: RunData, frames: list[dict[str, Any]]) -> dict[str, Any]:
    """A drift-corrected run scored against the twin's truth.

    Args:
        data: a ``drift_corrected_edge_eels`` run.
        frames: the twin's truth frame (``get_truth()["frame"]``: ``time`` s, ``drift_nm``,
            ``pixel_size`` nm, ``rotation`` degrees) of the survey, then of each re-scan, in
            the order they were taken.

    Returns:
        ``{"moved": largest displacement of the specimen, px; "estimate_error": (K,) px, each
        drift estimate against the true displacement at its re-scan; "placement": (N,) px,
        distance of each spectrum's specimen point from its site; "uncorrected": (N,) px,
        the same had the beam stayed where the survey said; "scored": (N,) bool, sites still
        inside the field}``. The specimen's displacement at a spectrum is interpolated between
        the re-scans (past the last one, extrapolated from the last two: the twin's stage
        drift is linear plus a small random walk).

    Raises:
        ValueError: not one truth frame per re-scan, plus the survey's.
    """
    est = _estimates(data)
    n_est = len(est.get("dx", []))
    if len(frames) != n_est + 1:
        raise ValueError(f"{len(frames)} truth frames for the survey and {n_est} re-scans")
    times, true = _true_displacement(frames)
    estimates = np.column_stack([est.get("dx", []), est.get("dy", [])]).astype(float)
    estimate_error = np.linalg.norm(estimates - true[1:], axis=1)
    dec = data.decisions
    placed = np.column_stack([dec.get("x", []), dec.get("y", [])]).astype(float)
    intended = np.column_stack([dec.get("intended_x", []), dec.get("intended_y", [])]).astype(float)
    when = np.asarray(dec.get("planned_time", np.zeros(len(placed))), dtype=float)
    moved = np.column_stack([np.interp(when, times, true[:, k]) for k in (0, 1)])
    if len(times) >= 2:  # past the last re-scan: the line through the last two
        rate = (true[-1] - true[-2]) / max(times[-1] - times[-2], 1e-9)
        late = when > times[-1]
        moved[late] = true[-1] + np.outer(when[late] - times[-1], rate)
    outside = np.asarray(dec.get("outside_field", np.zeros(len(placed))), dtype=bool)
    return {
        "moved": float(np.max(np.linalg.norm(true, axis=1))),
        "estimate_error": estimate_error,
        "placement": np.linalg.norm(placed - moved - intended, axis=1),
        "uncorrected": np.linalg.norm(moved, axis=1),
        "scored": ~outside,
    }


def _energy(value: float, sign: str = "") -> str:
    """An energy as a person reads it: meV below 10 meV (a steady spectrometer's 0.4 meV
    printed as '0.000 eV' read as no scatter at all, beside a figure saying 0.4 meV). No
    '-0.0': a value that rounds to zero has no sign worth reading (+ 0.0 drops it)."""
    if abs(value) < 0.01:
        return f"{round(1000 * value, 1) + 0.0:{sign}.1f} meV"
    return f"{round(value, 3) + 0.0:{sign}.3f} eV"


def correction_summary(data: RunData) -> list[str]:
    """Lines for ``ophyd-stem show``: the drift measured and followed, the zero-loss walk."""
    lines = []
    drift = _estimates(data)
    if len(drift.get("dx", [])):
        pixel = data.pixel_size or 0.0
        dx, dy = np.asarray(drift["dx"], float), np.asarray(drift["dy"], float)
        largest = float(np.max(np.hypot(dx, dy)))
        minutes = float(np.max(drift["time"])) / 60
        size = f"{largest:.1f} px" + (f" ({largest * pixel:.2f} nm)" if pixel else "")
        used = np.asarray(drift.get("used", np.ones(len(dx))), dtype=bool)
        lines.append(
            f"  drift       {len(dx)} re-scans over {minutes:.1f} min, largest displacement "
            f"{size}; {int((~used).sum())} not trusted; "
            + ("beam corrected" if data.plan_args.get("correct", True) else "NOT corrected")
        )
    rows = data.zero_loss
    if len(rows.get("zlp", [])):
        zlp = np.asarray(rows["zlp"], float)
        walk = np.asarray(rows["walk"], float)
        trusted = np.asarray(rows.get("trusted", np.ones(len(zlp))), dtype=bool)
        found = zlp[np.isfinite(zlp)]
        if len(found) > 1:
            scatter = f"peak {_energy(np.std(found))} rms as measured, energy-scale walk "
            scatter += f"{_energy(walk[0], '+')} -> {_energy(walk[-1], '+')} (first -> last batch)"
        elif len(found):  # one spectrum has no scatter (it read '0.0 meV rms') and no walk
            scatter = f"peak at {_energy(found[0], '+')} as measured"
        else:
            scatter = "no peak found"
        lines.append(f"  zero loss   {int(trusted.sum())} of {len(zlp)} spectra aligned; {scatter}")
    return lines
