"""``scaledql report OUT``: (re)write the Markdown report and plots of a demo run folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="(re)write report.md and plots of a demo run folder")
    p.add_argument("out", type=Path, help="the folder `scaledql demo --out` wrote")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scaledql.report import write_report

    print(write_report(args.out))
    return 0
