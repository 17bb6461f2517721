"""``scaledql study CONFIG``: a set of runs (arms × seeds × budget) made one after another or side by side.

A study is a TOML file (packaged ones: ``configs/studies/<name>.toml``) of

- ``name``, ``suite``, ``budgets`` (the budget names it defines, the first is the default);
- ``[vars]``: values the commands use; any value may be a table keyed by budget
  (``steps = {smoke = 20, cpu = 6000}``) and is resolved for the chosen budget;
- ``[[job]]``: one ``scaledql`` command each — ``id``, ``argv`` (a list; ``{name}`` fills in a
  var or ``{runs}``, ``{out}`` (this job's folder ``{runs}/{id}``, per seed
  ``{runs}/{id}/seed_{seed}``), ``{seed}``, ``{budget}``), optional ``seeds`` (the job runs once
  per seed), ``after`` (ids that must finish first), ``resume`` (``"train"``: a killed run
  continues with ``train --out OUT --resume``; ``"rerun"``: the same command continues it),
  ``group`` (a precision group: the learners of its jobs' runs train in one precision, so a
  machine that would train them in another leaves them for one that does; ``precision``);
- ``[[method]]`` and ``[[claim]]``: what the report compares (``experiments/method_scores.py``,
  ``experiments/claims.py``).

Any ``[[job]]``, ``[[method]]`` or ``[[claim]]`` may say ``budgets = [...]``: it exists only in
those budgets (an arm too slow for the CPU budget, and the claims that need it).

Running is resumable: a job whose command exited 0 leaves ``OUT/.study-done`` and is skipped;
a killed one is continued as its ``resume`` says. Jobs run in ``jobs`` worker processes at once
(dependencies respected), each with ``cores // jobs`` torch threads: the small MinAtar networks
run faster as two one-thread processes than as one two-thread process on a 2-core machine
(benchmarks/README.md). Every command, its wall time and its exit status go to
``{runs}/study.jsonl``; a job's output to ``{runs}/logs/<id>.log``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaledql.atomic_files import atomic_write_text
from scaledql.errors import UserError
from scaledql.run_folder import checkpoint_file

STUDIES_DIR = Path(__file__).resolve().parent.parent / "configs" / "studies"
DONE = ".study-done"
_FIELD = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass
class Job:
    id: str  # unique: "<job id>" or "<job id>/seed_<s>"
    argv: list[str]  # scaledql arguments
    out: Path
    after: list[str] = field(default_factory=list)  # job ids (any seed of them)
    resume: str = "rerun"
    group: str | None = None  # precision group (``precision.held_back``); None: any machine

    @property
    def command(self) -> str:
        return shlex.join(["scaledql", *self.argv])


@dataclass
class Study:
    name: str
    suite: str
    budget: str
    runs: Path
    vars: dict[str, Any]
    jobs: list[Job]
    methods: list[dict[str, Any]]
    claims: list[dict[str, Any]]
    description: str = ""


def study_path(name: str) -> Path:
    """A packaged study name (``claims``) or a TOML path."""
    packaged = STUDIES_DIR / f"{name}.toml"
    if packaged.is_file():
        return packaged
    path = Path(name)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in STUDIES_DIR.glob("*.toml")))
        raise UserError(f"no study {name!r}: neither a packaged study ({known}) nor a file")
    return path


def study_home(name: str) -> Path:
    """The folder a study's relative paths (``runs/``, ``results/``, ``data/``,
    ``action-logs/``) are read and written from: for a packaged study run from a clone of the
    project (``src/`` installed in place), the clone, so that its committed results are found
    from any directory; otherwise (a study file, an installed package) the current directory."""
    clone = STUDIES_DIR.parents[3]  # src/scaledql/configs/studies → the clone
    if ((STUDIES_DIR / f"{name}.toml").is_file() and (clone / "pyproject.toml").is_file()
            and (clone / "results").is_dir()):
        return clone
    return Path.cwd()


def _resolve(value: Any, budget: str, budgets: list[str], where: str) -> Any:
    """A per-budget table → its value for ``budget``; anything else as is."""
    if isinstance(value, dict) and value and set(value) <= set(budgets):
        if budget not in value:
            raise UserError(f"{where}: no value for budget {budget!r} (has {', '.join(value)})")
        return value[budget]
    return value


def _fill(text: str, values: dict[str, Any], where: str) -> str:
    def sub(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise UserError(f"{where}: unknown field {{{key}}} (known: {', '.join(sorted(values))})")
        value = values[key]
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)

    return _FIELD.sub(sub, text)


def _fill_argv(argv: list[str], values: dict[str, Any], where: str) -> list[str]:
    """Fill every argument; an argument that is exactly ``{name}`` of a list of strings becomes
    those arguments (so a budget can add flags: ``gpu_args = {gpu = ["--bf16"], cpu = []}``)."""
    out: list[str] = []
    for arg in argv:
        match = _FIELD.fullmatch(arg)
        value = values.get(match.group(1)) if match else None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            out.extend(_fill(v, values, where) for v in value)
        else:
            out.append(_fill(arg, values, where))
    return out


# ``series``: methods that share one are points of one capacity curve (score against
# parameter count) in the report.
METHOD_KEYS = {"name", "runs", "behaviour", "fraction", "games", "series", "budgets", "step",
               "reading"}
CLAIM_KEYS = {"id", "text", "test", "pairs", "budgets", "episodes", "games"}


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")


def load_study(name: str, budget: str | None = None, runs: Path | None = None) -> Study:
    """Read a study file and resolve it for ``budget`` (default: its first budget)."""
    from scaledql.training.config import read_toml

    path = study_path(name)
    raw = read_toml(path)
    where = str(path)
    _check_keys(raw, {"name", "description", "suite", "budgets", "vars", "job", "method", "claim"},
                where)
    budgets = raw.get("budgets")
    if not (isinstance(budgets, list) and budgets and all(isinstance(b, str) for b in budgets)):
        raise UserError(f"{where}: budgets must be a non-empty list of names")
    budget = budget or budgets[0]
    if budget not in budgets:
        raise UserError(f"study {raw.get('name', name)} has no budget {budget!r} "
                        f"(budgets: {', '.join(budgets)})")
    study_name = str(raw.get("name", path.stem))
    runs = Path(runs) if runs is not None else Path("runs") / "studies" / f"{study_name}-{budget}"
    values: dict[str, Any] = {"runs": runs.as_posix(), "budget": budget}
    for key, value in (raw.get("vars") or {}).items():
        value = _resolve(value, budget, budgets, f"{where} [vars] {key}")
        values[key] = _fill(value, values, f"{where} [vars] {key}") if isinstance(value, str) \
            else value
    jobs: list[Job] = []
    ids: set[str] = set()
    for i, table in enumerate(raw.get("job") or []):
        jwhere = f"{where} [[job]] #{i + 1}"
        _check_keys(table, {"id", "argv", "seeds", "after", "resume", "budgets", "group"}, jwhere)
        if not _in_budget(table, budget, budgets, jwhere):
            continue
        job_id = table.get("id")
        if not isinstance(job_id, str) or not job_id or job_id in ids:
            raise UserError(f"{jwhere}: id must be a unique non-empty string")
        ids.add(job_id)
        argv = table.get("argv")
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            raise UserError(f"{jwhere} ({job_id}): argv must be a non-empty list of strings")
        seeds = _resolve(table.get("seeds"), budget, budgets, f"{jwhere} seeds")
        if isinstance(seeds, str):
            if seeds.strip("{}") not in values:
                raise UserError(f"{jwhere} ({job_id}): seeds names {seeds!r}, not a [vars] key")
            seeds = values[seeds.strip("{}")]
        if seeds is not None and not (isinstance(seeds, list) and seeds and all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in seeds)
                and len(set(seeds)) == len(seeds)):
            raise UserError(f"{jwhere} ({job_id}): seeds must be a list of distinct "
                            f"non-negative integers, got {seeds!r}")
        after = list(table.get("after") or [])
        unknown = [a for a in after if a not in ids]
        if unknown:
            raise UserError(f"{jwhere} ({job_id}): after names {unknown[0]!r}, not an earlier job")
        resume = table.get("resume", "rerun")
        if resume not in ("rerun", "train"):
            raise UserError(f"{jwhere} ({job_id}): resume must be 'rerun' or 'train'")
        group = table.get("group")
        if group is not None and not (isinstance(group, str) and group):
            raise UserError(f"{jwhere} ({job_id}): group must be a non-empty string")
        for seed in (seeds if seeds is not None else [None]):
            out = runs / job_id if seed is None else runs / job_id / f"seed_{seed}"
            fields = {**values, "out": out.as_posix(), "seed": "" if seed is None else seed}
            jobs.append(Job(job_id if seed is None else f"{job_id}/seed_{seed}",
                            _fill_argv(argv, fields, f"{jwhere} ({job_id}) argv"),
                            out, after, resume, group))
    methods = [{k: _resolve(v, budget, budgets, f"{where} [[method]]") for k, v in m.items()
                if k != "budgets"}
               for m in raw.get("method") or [] if _in_budget(m, budget, budgets, where)]
    for m in methods:
        for key, value in m.items():
            if isinstance(value, str) and key != "name":
                m[key] = _fill(value, values, f"{where} [[method]] {m.get('name')}")
    claims = [{k: _resolve(v, budget, budgets, f"{where} [[claim]]") for k, v in c.items()
               if k != "budgets"}
              for c in raw.get("claim") or [] if _in_budget(c, budget, budgets, where)]
    _check_methods_and_claims(methods, claims, where)
    return Study(study_name, str(raw.get("suite", "minatar")), budget, runs, values, jobs,
                 methods, claims, str(raw.get("description", "")))


def _in_budget(table: dict, budget: str, budgets: list[str], where: str) -> bool:
    """A [[job]], [[method]] or [[claim]] with ``budgets = [...]`` exists only in those budgets
    (e.g. arms too slow for a CPU budget); without the key, in every budget."""
    only = table.get("budgets")
    if only is None:
        return True
    if not (isinstance(only, list) and only and all(b in budgets for b in only)):
        raise UserError(f"{where}: budgets of {table.get('id') or table.get('name') or '?'} must "
                        f"be a non-empty list of the study's budgets ({', '.join(budgets)})")
    return budget in only


def _check_methods_and_claims(methods: list[dict[str, Any]], claims: list[dict[str, Any]],
                              where: str) -> None:
    """Keys, types and names, at load time: a typo is one line now, not a traceback after
    hours."""
    names = set()
    for m in methods:
        _check_keys(m, METHOD_KEYS, f"{where} [[method]] {m.get('name', '?')}")
        name = m.get("name")
        if not isinstance(name, str) or not name or name in names:
            raise UserError(f"{where} [[method]]: name must be a unique non-empty string, got "
                            f"{name!r}")
        names.add(name)
        mwhere = f"{where} [[method]] {name}"
        if ("runs" in m) == ("behaviour" in m):
            raise UserError(f"{mwhere}: give either runs = GLOB or behaviour = DATA")
        for key in ("runs", "behaviour", "series"):
            if key in m and not (isinstance(m[key], str) and m[key]):
                raise UserError(f"{mwhere}: {key} must be a non-empty string")
        fraction = m.get("fraction", 1.0)
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
                0 < fraction <= 1):
            raise UserError(f"{mwhere}: fraction must be a number in (0, 1], got {fraction!r}")
        step = m.get("step")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 1
                                 or "runs" not in m):
            raise UserError(f"{mwhere}: step must be a positive whole number of gradient steps, "
                            f"given with runs = GLOB (got {step!r})")
    for c in claims:
        cwhere = f"{where} [[claim]] {c.get('id', '?')}"
        _check_keys(c, CLAIM_KEYS, cwhere)
        pairs = c.get("pairs")
        if not (isinstance(pairs, list) and pairs and all(
                isinstance(p, list) and len(p) == 2 for p in pairs)):
            raise UserError(f"{cwhere}: pairs must be a non-empty list of [a, b] method names")
        unknown = [x for p in pairs for x in p if x not in names]
        if unknown:
            raise UserError(f"{cwhere}: pairs name {unknown[0]!r}, not a [[method]]")
        games = c.get("games", [])
        if not (isinstance(games, list) and all(isinstance(g, str) and g for g in games)):
            raise UserError(f"{cwhere}: games must be a list of game names, got {games!r}")


# -- running ---------------------------------------------------------------------------------
def job_done(job: Job) -> bool:
    """The job's command exited 0 (a marker the runner leaves in its folder)."""
    return (job.out / DONE).is_file()


def _argv_now(job: Job) -> list[str]:
    """The command that (re)starts ``job``: a killed training run continues with --resume."""
    if job.resume == "train" and checkpoint_file(job.out).is_file():
        extra = [a for a in ("--no-progress", "--quiet") if a in job.argv]
        return ["train", "--out", job.out.as_posix(), "--resume", *extra]
    return job.argv


def _run_job(job: Job, runs: Path, threads: int) -> dict[str, Any]:
    argv = _argv_now(job)
    log = runs / "logs" / f"{job.id.replace('/', '__')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.time()
    with open(log, "a") as f:
        f.write(f"$ {shlex.join(['scaledql', *argv])}\n")
        f.flush()
        # Each job's seeds and settings are its own command's; only the thread count is set here.
        code = subprocess.call([sys.executable, "-m", "scaledql", *argv], stdout=f,
                               stderr=subprocess.STDOUT, env=env)
    seconds = time.time() - start
    if code == 0:
        job.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(job.out / DONE, json.dumps({"seconds": seconds}) + "\n")
    return {"job": job.id, "command": shlex.join(["scaledql", *argv]), "exit": code,
            "seconds": round(seconds, 1), "threads": threads, "log": log.as_posix(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def run_study(study: Study, jobs: int = 1, echo=None, on_finish=None) -> dict[str, Any]:
    """Run every unfinished job (``jobs`` at a time, in file order as dependencies allow);
    ``on_finish(job)`` after each job that finished (the results are rewritten there). ``stopped``:
    a signal ended it early (``_stop_on_signal``)."""
    from scaledql.atomic_files import exclusive_lock

    echo = echo or (lambda message: print(message, file=sys.stderr, flush=True))
    study.runs.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    todo = [j for j in study.jobs if not job_done(j)]
    skipped = len(study.jobs) - len(todo)
    if skipped:
        echo(f"[study] {skipped}/{len(study.jobs)} jobs already finished, skipped")
    failed: list[str] = []
    blocked: list[str] = []
    stopping = threading.Event()
    with exclusive_lock(study.runs, "study"), _stop_on_signal(stopping), \
            ThreadPoolExecutor(max(1, jobs)) as pool:
        running: dict[Future, Job] = {}
        while todo or running:
            # A job waiting on a failed (or blocked) job cannot run: set it aside.
            dead = {_base(i) for i in failed + blocked}
            for job in [j for j in todo if set(j.after) & dead]:
                todo.remove(job)
                blocked.append(job.id)
            pending = {_base(j.id) for j in todo} | {_base(j.id) for j in running.values()}
            ready = [j for j in todo if not (set(j.after) & pending)]
            for job in ready[:max(0, jobs - len(running))] if not stopping.is_set() else []:
                todo.remove(job)
                echo(f"[study] start {job.id}: {shlex.join(['scaledql', *_argv_now(job)])}")
                running[pool.submit(_run_job, job, study.runs, threads)] = job
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                record = future.result()
                if record["exit"] != 0 and stopping.is_set():
                    record["interrupted"] = True  # its time and command still count
                with open(study.runs / "study.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                if record["exit"] == 0:
                    echo(f"[study] done {job.id} in {record['seconds']:.0f} s")
                    if on_finish is not None:
                        on_finish(job)
                elif record.get("interrupted"):
                    echo(f"[study] stopped {job.id} (exit {record['exit']}); the same command "
                         "continues it")
                else:
                    failed.append(job.id)
                    echo(f"[study] FAILED {job.id} (exit {record['exit']}): see {record['log']}")
    return {"jobs": len(study.jobs), "skipped": skipped, "failed": failed, "blocked": blocked,
            "stopped": stopping.is_set()}


@contextmanager
def _stop_on_signal(stopping: threading.Event) -> Iterator[None]:
    """Ctrl-C or SIGTERM: start no more jobs, and wait for the running ones — which got the
    signal too when it went to the process group (a terminal's Ctrl-C, ``kill -- -PGID``, a
    scheduler) and save where they are — so that their attempts are recorded; sent to the study
    alone, it lets them finish."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, frame):
        stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _base(job_id: str) -> str:
    """A job's id without its seed: what ``after`` names."""
    return job_id.split("/seed_")[0]


def job_records(runs: Path) -> list[dict[str, Any]]:
    """Every command the study ran (``study.jsonl``), oldest first."""
    path = runs / "study.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
