"""``scaledql study CONFIG``: run a study (arms × seeds × budget), resumably, and report its claims."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scaledql.experiments.study import Study


def packaged() -> list[str]:
    """The packaged studies' names (``configs/studies/*.toml``; no torch import)."""
    from scaledql.experiments.study import STUDIES_DIR

    return sorted(p.stem for p in STUDIES_DIR.glob("*.toml"))


def register(sub: argparse._SubParsersAction) -> None:
    names = ", ".join(packaged())
    p = sub.add_parser("study", help=f"run a study of many runs (packaged: {names}) and "
                                     "write its claims report; finished runs are skipped")
    p.add_argument("config", help=f"a packaged study name ({names}) or a study TOML file")
    p.add_argument("--budget", default=None,
                   help="the study's budget (claims, nstep: smoke | cpu | gpu; tuning: smoke | "
                        "cpu | cpu-five; default: the study's first, smoke)")
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
    import os
    import sys

    from scaledql.experiments.study import study_home

    home = study_home(args.config)  # not the current directory: a packaged study's clone
    if home == Path.cwd():
        return _run(args)
    here = Path.cwd()
    args.runs = here / args.runs if args.runs is not None else None
    args.results = here / args.results if args.results is not None else None
    print(f"[study] in {home} (its runs/, results/, data/)", file=sys.stderr)
    os.chdir(home)
    try:
        return _run(args)
    finally:
        os.chdir(here)


def _run(args: argparse.Namespace) -> int:
    import os
    import sys

    from scaledql.errors import UserError
    from scaledql.experiments.archive import (
        ARCHIVE,
        archive_job,
        archive_log,
        archive_path,
        archive_unfinished,
        restore_jobs,
    )
    from scaledql.experiments.results import default_results, write_results
    from scaledql.experiments.study import job_done, load_study, run_study

    study = load_study(args.config, args.budget, args.runs)
    results = args.results or default_results(study)
    if args.list:
        found = (results / "report.md").is_file()
        print(f"[study] results: {Path.cwd() / results}" + ("" if found else
              " (none there yet; a clone of the project holds the committed ones, found "
              "from any directory when scaledql runs from it)"), file=sys.stderr)
        for job in study.jobs:
            state = "done " if job_done(job) else \
                "kept " if archive_path(results, job.id).is_file() else \
                "part " if archive_path(results, job.id, partial=True).is_file() else "to do"
            print(f"{state}  {job.id}: {job.command}")
        return 0
    jobs = args.jobs
    if jobs is None:
        import torch

        jobs = 1 if torch.cuda.is_available() or (os.cpu_count() or 1) < 2 else 2
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    from scaledql.device import describe_machine

    machine = describe_machine()
    outcome = None
    restored = restore_jobs(study, results)
    if restored:
        cut = sum(not job_done(job) for job in study.jobs if job.id in restored)
        print(f"[study] {len(restored) - cut} finished job(s) restored from {results / ARCHIVE}"
              + (f", and {cut} cut-off one(s) that continue from their checkpoints" if cut else ""),
              file=sys.stderr)
    if not args.report_only:
        def on_finish(job) -> None:
            write_results(study, results, machine, claims=False)
            archive_job(study, job, results)
            archive_log(study, results)

        outcome = run_study(study, jobs, on_finish=on_finish)
        if outcome["stopped"]:  # the commands and finished runs so far still go to results
            write_results(study, results, machine, claims=False)
            archive_log(study, results)
            for job_id in archive_unfinished(study, results):
                print(f"[study] {job_id}: cut off, kept in {results / ARCHIVE} with its "
                      "checkpoint", file=sys.stderr)
            raise UserError("study stopped by a signal; running jobs were recorded as "
                            "interrupted, and the same command continues them")
    if args.report_only:
        _refuse_a_worse_report(study, results, args.config)
    report = write_results(study, results, machine)
    for claim in report["claims"]:
        print(f"{claim['id']}: {claim['verdict']}")
    print(f"report: {results / 'report.md'}")
    if outcome and (outcome["failed"] or outcome["blocked"]):
        raise UserError(f"{len(outcome['failed'])} job(s) failed ({', '.join(outcome['failed'])})"
                        f", {len(outcome['blocked'])} could not start; see {study.runs}/logs")
    return 0


def _refuse_a_worse_report(study: Study, results: Path, name: str) -> None:
    """``--report-only`` never writes a worse report: a method the report has that cannot be
    scored here (its data or runs missing) is one line naming it and what makes it."""
    from scaledql.errors import UserError
    from scaledql.experiments.results import dropped_methods

    dropped = dropped_methods(study, results)
    if not dropped:
        return
    reasons = sorted(set(dropped.values()))
    makers = [job for job in study.jobs for m in study.methods if m["name"] in dropped
              and "behaviour" in m and _writes(job.argv, m["behaviour"])]
    rerun = f"scaledql study {name} --budget {study.budget}"
    if makers:
        job = makers[0]
        logs = _value(job.argv, "--log-dir")
        how = (f"`{rerun}` makes it first (its job {job.id!r}"
               + (f", rebuilt from the action logs in {logs}" if logs and Path(logs).is_dir()
                  else "") + f"; `{rerun} --list` shows its command)")
    else:
        how = f"`{rerun}` makes what is missing"
    raise UserError(f"--report-only would drop {', '.join(map(repr, dropped))} from "
                    f"{results / 'report.md'}: {'; '.join(reasons)}; {how}; the report is "
                    "left as it was")


def _value(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def _writes(argv: list[str], path: str) -> bool:
    out = _value(argv, "--out")
    return out is not None and Path(out) == Path(path)
