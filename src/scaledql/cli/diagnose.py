"""``scaledql diagnose RUN [RUN ...]``: a run's learning diagnostics as curves and a health check."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diagnose", help="plot a run's learning diagnostics (RUN/diagnostics.png) and name "
                         "warning signs (ε-dominated Adam steps, flat Q, one-action policies)",
        description="Per RUN: every learning-diagnostic curve of its metrics log in one figure "
                    "(loss, CQL term per game beside ln|A|, Q spread and action gap, "
                    "ε-dominated Adam steps and update-to-weight ratio per part, feature norm, "
                    "srank, DR3 co-adaptation, scores, top action share), and one line per "
                    "warning sign. docs/diagnostics.md says what healthy runs look like.")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="training run folders")
    p.add_argument("--out", type=Path, default=None,
                   help="the plot's file for a single RUN (default: RUN/diagnostics.png)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scaledql.errors import UserError

    if args.out is not None and len(args.runs) != 1:
        raise UserError("--out names one plot: give one RUN")
    from scaledql.run_folder import METRICS, metrics_file

    for folder in args.runs:
        if not metrics_file(folder).is_file():
            raise UserError(f"{folder} is not a training run (no {METRICS})")
    from scaledql.reports.diagnostics import diagnose_run

    for folder in args.runs:
        path, warnings = diagnose_run(folder, args.out)
        print(f"{folder}: {path}")
        for line in warnings or ["no warning sign"]:
            print(f"  {line}")
    return 0
