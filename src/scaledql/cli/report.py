"""``scaledql report RUN [RUN ...]``: a report over runs, or a demo folder's own report."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from scaledql.stats import IMPROVEMENT_REPS, REPS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="IQM, median, mean, optimality gap with CIs over seeds × games, "
                       "performance profiles and P(X > Y) of run folders (rliable)",
        description="A report over runs: every RUN's final evaluation, normalized, grouped into "
                    "methods (seeds are rows), aggregated by rliable with 95% stratified-"
                    "bootstrap CIs over seeds × games. A RUN may be a training run folder, a "
                    "fine-tuning experiment (its runs, one method per arm) or a demo folder "
                    "(its learners' runs). `scaledql report DEMO` alone re-writes the demo "
                    "folder's own report.")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folders")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default: RUN/report for one RUN, else report/ in the "
                        "RUNs' common parent folder)")
    p.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                   help="one method label per RUN, in order: RUNs with the same label are one "
                        "method (its seeds); default: the learner plus the options that tell "
                        "its runs apart, or a fine-tuning experiment's arm")
    p.add_argument("--group-by", default=None, metavar="KEY[,KEY]",
                   help="name methods by these config options instead, e.g. "
                        "algo,learner.encoder,learner.feature_norm (default: the labels above)")
    p.add_argument("--common-games", action="store_true",
                   help="compare methods scored on different games on the games they share "
                        "(refused otherwise)")
    p.add_argument("--allow-unfinished", action="store_true",
                   help="score a run whose last evaluation is before its final step")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    p.add_argument("--reps", type=int, default=REPS,
                   help="bootstrap replications of the aggregates (default: %(default)s)")
    p.add_argument("--improvement-reps", type=int, default=IMPROVEMENT_REPS,
                   help="bootstrap replications of P(X > Y) (default: %(default)s)")
    p.set_defaults(func=run)


def _is_demo(path: Path) -> bool:
    from scaledql.run_folder import is_run

    return (path / "summary.json").is_file() and not is_run(path)


def default_out(runs: list[Path]) -> Path:
    if len(runs) == 1:
        return runs[0] / "report"
    try:
        return Path(os.path.commonpath([str(r) for r in runs])) / "report"
    except ValueError:  # absolute and relative paths mixed
        return Path(os.path.commonpath([str(r.resolve()) for r in runs])) / "report"


def _command(args: argparse.Namespace, out: Path) -> str:
    words = ["scaledql", "report", *map(str, args.runs), "--out", str(out)]
    if args.labels:
        words += ["--labels", *args.labels]
    if args.group_by:
        words += ["--group-by", args.group_by]
    words += [flag for flag, on in (("--common-games", args.common_games),
                                    ("--allow-unfinished", args.allow_unfinished)) if on]
    for flag, value, default in (("--seed", args.seed, 0), ("--reps", args.reps, REPS),
                                 ("--improvement-reps", args.improvement_reps, IMPROVEMENT_REPS)):
        if value != default:
            words += [flag, str(value)]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from scaledql.errors import UserError

    runs: list[Path] = args.runs
    if (len(runs) == 1 and _is_demo(runs[0]) and not args.labels and not args.group_by
            and (args.out is None or args.out.resolve() == runs[0].resolve())):
        from scaledql.reports.demo_report import write_report

        print(write_report(runs[0]))
        return 0
    if args.labels is not None and len(args.labels) != len(runs):
        raise UserError(f"--labels: {len(args.labels)} label(s) for {len(runs)} RUN(s); give "
                        "one per RUN")
    if args.labels is not None and not all(label.strip() for label in args.labels):
        raise UserError("--labels: a label is empty")
    if not 0 <= args.seed < 2**32:
        raise UserError(f"--seed must be in [0, 2**32), got {args.seed}")
    for flag, value in (("--reps", args.reps), ("--improvement-reps", args.improvement_reps)):
        if value <= 0:
            raise UserError(f"{flag} must be positive, got {value}")
    group_by = [k.strip() for k in args.group_by.split(",") if k.strip()] if args.group_by \
        else None
    if args.group_by is not None and not group_by:
        raise UserError("--group-by: no option named")
    from scaledql.reports.over_runs import report_runs

    out = args.out if args.out is not None else default_out(runs)
    labels = dict(zip(runs, args.labels, strict=True)) if args.labels else None
    if labels is not None and len(set(runs)) != len(runs):
        raise UserError("a RUN is given twice")
    report = report_runs(runs, out, labels, group_by=group_by, common_games=args.common_games,
                         allow_unfinished=args.allow_unfinished, reps=args.reps,
                         improvement_reps=args.improvement_reps, seed=args.seed,
                         command=_command(args, out))
    for name, m in report["methods"].items():
        agg = m["aggregates"]
        print(f"{name}: IQM {agg['iqm']:.3f} [{agg['iqm_ci'][0]:.3f}, {agg['iqm_ci'][1]:.3f}] "
              f"over {len(m['seeds'])} seed(s) × {len(report['games'])} game(s)")
    print(Path(out) / "report.md")
    return 0
