"""Edge-guided EELS on the twin's GaAs/Au nanowire, scored against its ground truth.

Run from the repository root (about a minute on two cores)::

    python benchmarks/edge.py               # 10 seeds
    python benchmarks/edge.py --seeds 3 --spacing 1.0

For each seed a fresh twin (``TwinBackend("nanowire", seed=s)``) gives a 128 x 128 HAADF
survey image; ``agents.edges.EdgeAgent`` picks and orders the points; the twin measures them
in one ``acquire_spectra_at_points`` command. Printed per seed and on average:

- **measured**: distinct pixels measured / all pixels (goal <= 1 %, the paper's 137/16,384);
- **iface 3x3**: fraction of the true interface pixels (label ``interface``) within one pixel
  of a measured point, 3 x 3 neighbourhood (goal >= 90 %); **iface 4-nb**: the stricter
  4-neighbourhood (Euclidean distance <= 1), shown for honesty;
- **instrument time**: the survey image plus the spectra, from the twin's timing model (the
  paper's Spectra 300 numbers), against the **full grid** baseline: a 128 x 128 spectrum
  image acquired by the same twin in this process (the paper: 80 min vs 2 min);
- **path**: beam travel along the agent's ordered path vs the same points in choice order;
- **agent ms**: CPU time to go from survey image to ordered points.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.edges import EdgeAgent, edge_candidates, evaluate_edge_points, path_length  # noqa: E402
from dm_bridge.backends.twin import TwinBackend  # noqa: E402

PAPER = {"points": 137, "pixels": 128 * 128, "minutes": 2.0, "grid_minutes": 80.0}


def main(argv: Optional[List[str]] = None) -> int:  # type: ignore[assignment]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--method", default="canny", choices=["canny", "gradient"])
    parser.add_argument("--sigma", type=float, default=1.5)
    parser.add_argument("--spacing", type=float, default=1.5)
    parser.add_argument("--budget", type=int, default=None)
    args = parser.parse_args(argv)

    header = (
        f"{'seed':>4s}{'points':>8s}{'measured':>10s}{'iface 3x3':>11s}{'iface 4-nb':>12s}"
        f"{'edge run (s)':>14s}{'path px':>9s}{'unordered':>11s}{'agent ms':>10s}"
    )
    print(f"Edge-guided EELS on the twin's nanowire ({args.method}, sigma {args.sigma}, "
          f"spacing {args.spacing}, budget {args.budget})")  # fmt: skip
    print(header)
    print("-" * len(header))
    rows = []
    grid_seconds = None
    for seed in range(args.seeds):
        twin = TwinBackend("nanowire", seed=seed)
        image = twin.acquire_image()
        survey = image.images["HAADF"]
        truth = twin.get_truth()
        interface = truth["label_names"].index("interface")

        started = time.process_time()
        agent = EdgeAgent(
            survey, method=args.method, sigma=args.sigma, spacing=args.spacing,
            budget=args.budget,
        )  # fmt: skip
        points = np.array([[s["x"], s["y"]] for s in agent.suggest(len(agent.candidates))])
        agent_ms = 1000 * (time.process_time() - started)
        spectra = twin.acquire_spectra_at_points(points)
        score = evaluate_edge_points(truth["labels"], points, interface_label=interface)
        # the same points in the order they were chosen (strongest, then farthest-first)
        threshold = 0.0 if args.method == "canny" else None
        chosen, _ = edge_candidates(agent.edges, threshold, args.spacing, args.budget)
        edge_seconds = image.instrument_time + spectra.instrument_time
        if grid_seconds is None:  # the baseline: every pixel, once (same for every seed)
            rows_, cols_ = survey.shape
            grid = twin.acquire_spectrum_image(rows_, cols_)
            grid_seconds = image.instrument_time + grid.instrument_time
        rows.append(
            (
                len(points),
                score["fraction_measured"],
                score["interface_within_1px"],
                score["interface_within_1px_4"],
                edge_seconds,
                path_length(points, agent.start),
                path_length(chosen, agent.start),
                agent_ms,
            )
        )
        r = rows[-1]
        print(
            f"{seed:4d}{r[0]:8d}{r[1]:10.2%}{r[2]:11.1%}{r[3]:12.1%}{r[4]:14.1f}{r[5]:9.0f}"
            f"{r[6]:11.0f}{r[7]:10.1f}"
        )
    mean = np.mean(np.array(rows), axis=0)
    print("-" * len(header))
    print(
        f"{'mean':>4s}{mean[0]:8.0f}{mean[1]:10.2%}{mean[2]:11.1%}{mean[3]:12.1%}{mean[4]:14.1f}"
        f"{mean[5]:9.0f}{mean[6]:11.0f}{mean[7]:10.1f}"
    )
    arr = np.array(rows)
    ok_measured = int((arr[:, 1] <= 0.01).sum())
    ok_iface = int((arr[:, 2] >= 0.90).sum())
    print(f"\ngoals: measured <= 1 % in {ok_measured}/{len(rows)} seeds; "
          f"interface within 1 px >= 90 % in {ok_iface}/{len(rows)} seeds")  # fmt: skip
    assert grid_seconds is not None
    print(
        f"instrument time: edge-guided {mean[4]:.1f} s vs full {survey.shape[0]}x"
        f"{survey.shape[1]} grid {grid_seconds / 60:.1f} min ({grid_seconds / mean[4]:.0f}x)"
    )
    print(
        f"paper: {PAPER['points']}/{PAPER['pixels']} points "
        f"({PAPER['points'] / PAPER['pixels']:.2%}), {PAPER['minutes']:.0f} min vs "
        f"{PAPER['grid_minutes']:.0f} min for the grid"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
