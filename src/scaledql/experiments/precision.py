"""Which precision a study's runs trained in, and which jobs a machine leaves for another.

A learner left at ``bf16`` "auto" trains in bf16 where bf16 is native and in float32 elsewhere
(``agents.base.resolve_bf16``), so the same command gives other floating-point results on
another CPU kind. A study's jobs may name a precision ``group`` (the arms a claim compares):
once a run of a group has started training (its ``machines.json`` is written then), the
group's other jobs run only where the learners train in that same precision, and a machine that
would train them in another leaves them (and the jobs that wait on them) for one that does.
Runs pinned to float32 by an option (``--no-bf16``, ``--set learner.bf16=false``; the
collecting DQN) train alike everywhere and do not count. CUDA's and a CPU's bf16 share the
label: a study's budget names its machine kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scaledql.errors import UserError
from scaledql.experiments.archive import archive_path, archived_json
from scaledql.experiments.study import Job, Study, _base, job_done
from scaledql.run_folder import CONFIG, MACHINES, read_config, read_machines

PRECISIONS = ("bf16", "float32")


def local_precision() -> str:
    """What a learner with the default ``bf16=None`` trains in on this machine's default
    device: "bf16" or "float32" (``agents.base.resolve_bf16``, as the learners resolve it)."""
    from scaledql.agents.base import resolve_bf16
    from scaledql.device import pick_device

    return "bf16" if resolve_bf16(None, pick_device()) else "float32"


def trained_precisions(config: dict[str, Any], machines: list[dict[str, Any]]) -> set[str]:
    """The precisions a run's sessions trained in (``machines``: its ``machines.json``); empty
    when its config pins float32 (``learner.bf16`` false: alike everywhere) or none is recorded.
    ``bf16`` true still counts: where bf16 is not native such a run trains in float32."""
    learner = config.get("learner")
    if isinstance(learner, dict) and learner.get("bf16") is False:
        return set()
    return {str(r.get("precision")) for r in machines if isinstance(r, dict)} & set(PRECISIONS)


def run_precisions(run: Path) -> set[str]:
    """``trained_precisions`` of a run folder."""
    try:
        return trained_precisions(read_config(run), read_machines(run))
    except UserError:
        return set()


def group_precisions(study: Study, results: Path | None = None) -> dict[str, set[str]]:
    """Each precision group's trained precisions, over every run folder (finished or cut off)
    below its jobs' folders; a job with no folder here is read from its archive in
    ``results`` (so ``--list`` on a fresh clone says what ``study`` would do)."""
    out: dict[str, set[str]] = {}
    for job in study.jobs:
        if job.group is None:
            continue
        found = out.setdefault(job.group, set())
        if job.out.is_dir():
            for file in sorted(job.out.rglob(MACHINES)):
                found |= run_precisions(file.parent)
        elif results is not None:
            for files in archived_json(results, job.id, (CONFIG, MACHINES)).values():
                machines = files.get(MACHINES)
                found |= trained_precisions(files.get(CONFIG) or {},
                                            machines if isinstance(machines, list) else [])
    return out


def held_back(study: Study, here: str, results: Path | None = None
              ) -> tuple[list[Job], dict[str, set[str]]]:
    """The unfinished jobs this machine (its learners training in ``here``) leaves for
    another: those of groups that trained in another precision, and the jobs that wait on
    them; with those groups' precisions. A group that already mixes both is not held (no
    machine could keep it apart); ``mixed_note`` says so."""
    other = {g: p for g, p in group_precisions(study, results).items()
             if p - {here} and len(p) == 1}
    def done(job: Job) -> bool:  # here, or finished in the archive a clone restores
        return job_done(job) or (results is not None and archive_path(results, job.id).is_file())

    held = {j.id for j in study.jobs if j.group in other and not done(j)}
    while True:  # a job waiting on a held job cannot run here either
        bases = {_base(i) for i in held}
        more = {j.id for j in study.jobs
                if j.id not in held and not done(j) and set(j.after) & bases}
        if not more:
            break
        held |= more
    return [j for j in study.jobs if j.id in held], other


def mixed_note(study: Study, results: Path | None = None) -> str | None:
    """One line naming the groups whose runs already trained in both precisions; else None."""
    mixed = sorted(g for g, p in group_precisions(study, results).items() if len(p) > 1)
    if not mixed:
        return None
    return (f"[study] note: group(s) {', '.join(map(repr, mixed))} already trained in both bf16 "
            "and float32 (each run's machines.json; the report's 'Runs trained on' line): "
            "their comparisons mix precisions")


def held_back_note(held: list[Job], groups: dict[str, set[str]], here: str) -> str | None:
    """One line naming what this machine leaves and why; None when it leaves nothing."""
    if not held:
        return None
    trained = "; ".join(f"group {g!r} in {' and '.join(sorted(p))}"
                        for g, p in sorted(groups.items()))
    return (f"[study] the learners here train in {here}; the study's runs trained so far in "
            f"({trained}), so {len(held)} job(s) of those groups wait for a machine that trains "
            f"in their precision (docs/studies.md, 'Machines and precision'): "
            f"{', '.join(j.id for j in held)}")
