"""A study's lifecycle as ``scaledql study`` drives it: where it runs (``in_study_home``), what
state each job is in (``job_states``), restoring the archived runs, running the rest (each
finished one archived, the results rewritten), and writing the claims report
(``run_and_report``). The command only parses its arguments, calls these and prints.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scaledql.errors import UserError
from scaledql.experiments.archive import (
    ARCHIVE,
    archive_job,
    archive_log,
    archive_path,
    archive_unfinished,
    restore_jobs,
)
from scaledql.experiments.precision import (
    held_back,
    held_back_note,
    local_precision,
    mixed_note,
)
from scaledql.experiments.results import default_results, dropped_methods, write_results
from scaledql.experiments.study import (
    STUDIES_DIR,
    Job,
    Study,
    job_done,
    run_study,
    study_home,
)

Echo = Callable[[str], None]


@dataclass
class StudyOutcome:
    """What ``run_and_report`` did: the report it wrote, the jobs that failed or could not
    start (their one line: ``failure``)."""

    report: dict[str, Any]
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def failure(self, study: Study) -> UserError | None:
        if not (self.failed or self.blocked):
            return None
        return UserError(f"{len(self.failed)} job(s) failed ({', '.join(self.failed)}), "
                         f"{len(self.blocked)} could not start; see {study.runs}/logs")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def packaged_studies() -> dict[str, list[str]]:
    """The packaged studies (``configs/studies/*.toml``) by name, each with the budgets it
    defines (its first the default); a file whose budgets cannot be read has none here (the
    study itself then says what is wrong). No torch import: ``--help`` lists them."""
    import tomllib

    studies: dict[str, list[str]] = {}
    for path in sorted(STUDIES_DIR.glob("*.toml")):
        try:
            budgets = tomllib.loads(path.read_text()).get("budgets")
        except (OSError, ValueError):
            budgets = None
        ok = isinstance(budgets, list) and all(isinstance(b, str) for b in budgets)
        studies[path.stem] = list(budgets) if ok else []
    return studies


@contextmanager
def in_study_home(name: str, *paths: Path | None, echo: Echo = _stderr
                  ) -> Iterator[list[Path | None]]:
    """Run inside the study's home (``study_home``: the clone for a packaged study), whatever
    the current directory: its relative paths are the home's. ``paths`` given on the command
    line are the current directory's: yielded made absolute (None stays None)."""
    home = study_home(name)
    here = Path.cwd()
    if home == here:
        yield list(paths)
        return
    absolute: list[Path | None] = [here / p if p is not None else None for p in paths]
    echo(f"[study] in {home} (its runs/, results/, data/)")
    os.chdir(home)
    try:
        yield absolute
    finally:
        os.chdir(here)


def results_folder(study: Study, results: Path | None) -> Path:
    """The folder of the study's report, per-run JSON and archive (default: ``default_results``)."""
    return results or default_results(study)


def job_states(study: Study, results: Path) -> list[tuple[str, Job]]:
    """Each job with its state: "done" (its run finished here), "kept" / "part" (archived
    finished / cut off in ``results``), "wait" (left for a machine that trains in its group's
    precision: ``precision.held_back``), or "to do"."""
    held = {j.id for j in held_back(study, local_precision(), results)[0]}
    return [("done" if job_done(job) else
             "kept" if archive_path(results, job.id).is_file() else
             "part" if archive_path(results, job.id, partial=True).is_file() else
             "wait" if job.id in held else "to do", job)
            for job in study.jobs]


def default_jobs() -> int:
    """Runs side by side: 2 on a CPU with at least 2 cores (faster for MinAtar-size networks),
    else 1 (one GPU, or one core)."""
    import torch

    return 1 if torch.cuda.is_available() or (os.cpu_count() or 1) < 2 else 2


def run_and_report(study: Study, results: Path, name: str, *, jobs: int | None = None,
                   report_only: bool = False, echo: Echo = _stderr) -> StudyOutcome:
    """Restore the archived runs, run the unfinished jobs (``jobs`` side by side; none with
    ``report_only``) and write the report (``write_results``). ``UserError`` when a signal
    stopped the study (what finished is archived) or ``report_only`` would write a worse
    report; jobs that failed are in the outcome (the report is written all the same).
    ``name``: the study as the command named it."""
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    from scaledql.device import describe_machine

    machine = describe_machine()
    outcome = None
    restored = restore_jobs(study, results)
    if restored:
        cut = sum(not job_done(job) for job in study.jobs if job.id in restored)
        echo(f"[study] {len(restored) - cut} finished job(s) restored from {results / ARCHIVE}"
             + (f", and {cut} cut-off one(s) that continue where they stopped" if cut else ""))
    if not report_only:
        here = local_precision()
        held, groups = held_back(study, here)
        for note in (mixed_note(study), held_back_note(held, groups, here)):
            if note:
                echo(note)

        def on_finish(job: Job) -> None:
            write_results(study, results, machine, claims=False)
            archive_job(study, job, results)
            archive_log(study, results)

        left = {j.id for j in held}
        outcome = run_study(replace(study, jobs=[j for j in study.jobs if j.id not in left]),
                            jobs, on_finish=on_finish)
        if outcome["stopped"]:  # the commands and finished runs so far still go to results
            write_results(study, results, machine, claims=False)
            archive_log(study, results)
            for job_id in archive_unfinished(study, results):
                echo(f"[study] {job_id}: cut off, kept in {results / ARCHIVE} with what "
                     "continues it")
            raise UserError("study stopped by a signal; running jobs were recorded as "
                            "interrupted, and the same command continues them")
    if report_only:
        refuse_a_worse_report(study, results, name)
    report = write_results(study, results, machine)
    if outcome is None:
        return StudyOutcome(report)
    return StudyOutcome(report, list(outcome["failed"]), list(outcome["blocked"]))


def refuse_a_worse_report(study: Study, results: Path, name: str) -> None:
    """``--report-only`` never writes a worse report: a method the report has that cannot be
    scored here (its data or runs missing) is one line naming it and what makes it."""
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
