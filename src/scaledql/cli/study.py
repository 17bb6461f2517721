"""``scaledql study CONFIG``: run a study (arms × seeds × budget), resumably, and report its claims."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from scaledql.experiments.lifecycle import packaged_studies

    studies = packaged_studies()
    names = ", ".join(studies)
    by_budgets: dict[tuple[str, ...], list[str]] = {}
    for name, budgets in studies.items():
        by_budgets.setdefault(tuple(budgets), []).append(name)
    budgets = "; ".join(f"{', '.join(group)}: {' | '.join(b)}" for b, group in by_budgets.items())
    p = sub.add_parser("study", help=f"run a study of many runs (packaged: {names}) and "
                                     "write its claims report; finished runs are skipped")
    p.add_argument("config", help=f"a packaged study name ({names}) or a study TOML file")
    p.add_argument("--budget", default=None,
                   help=f"the study's budget ({budgets}; default: the study's first, smoke)")
    p.add_argument("--runs", type=Path, default=None,
                   help="folder of the runs (default: runs/studies/NAME-BUDGET)")
    p.add_argument("--results", type=Path, default=None,
                   help="folder of the report, per-run JSON and commands, small enough to commit "
                        "(default: results/NAME-SUITE-BUDGET)")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs side by side, the cores shared among them (default: 2 on a CPU "
                        "with at least 2 cores — faster for MinAtar-size networks — else 1)")
    p.add_argument("--list", action="store_true",
                   help="print the jobs and their commands, run nothing")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the results from the runs as they are, run nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Relative paths are the study home's (``study_home``: the clone for a packaged study),
    whatever the current directory; paths given on the line are the current directory's."""
    from scaledql.experiments.lifecycle import in_study_home

    with in_study_home(args.config, args.runs, args.results) as (args.runs, args.results):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import sys

    from scaledql.experiments.lifecycle import job_states, results_folder, run_and_report
    from scaledql.experiments.study import load_study

    study = load_study(args.config, args.budget, args.runs)
    results = results_folder(study, args.results)
    if args.list:
        found = (results / "report.md").is_file()
        print(f"[study] results: {Path.cwd() / results}" + ("" if found else
              " (none there yet; a clone of the project holds the committed ones, found "
              "from any directory when scaledql runs from it)"), file=sys.stderr)
        for state, job in job_states(study, results):
            print(f"{state:<5}  {job.id}: {job.command}")
        return 0
    outcome = run_and_report(study, results, args.config, jobs=args.jobs,
                             report_only=args.report_only)
    for claim in outcome.report["claims"]:
        print(f"{claim['id']}: {claim['verdict']}")
    print(f"report: {results / 'report.md'}")
    failure = outcome.failure(study)
    if failure is not None:
        raise failure
    return 0
