"""Which precision a study's runs trained in, and which jobs a machine leaves for another.

A learner left at ``bf16`` "auto" trains in bf16 where bf16 is native and in float32 elsewhere
(``agents.base.resolve_bf16``), so the same command gives other floating-point results on
another CPU kind. A study's jobs may name a precision ``group`` (the arms a claim compares):
once a run of a group has trained, the group's other jobs run only where the learners train in
that same precision, and a machine that would train them in another leaves them (and the jobs
that wait on them) for one that does. Runs whose precision is pinned by an option
(``--no-bf16``, the collecting DQN's float32) train alike everywhere and do not count.
"""

from __future__ import annotations

from pathlib import Path

from scaledql.errors import UserError
from scaledql.experiments.study import Job, Study, job_done
from scaledql.run_folder import MACHINES, read_config, read_machines

PRECISIONS = ("bf16", "float32")


def local_precision() -> str:
    """What a learner with the default ``bf16=None`` trains in on this machine's default
    device: "bf16" or "float32" (``agents.base.resolve_bf16``, as the learners resolve it)."""
    from scaledql.agents.base import resolve_bf16
    from scaledql.device import pick_device

    return "bf16" if resolve_bf16(None, pick_device()) else "float32"


def run_precisions(run: Path) -> set[str]:
    """The precisions a run's sessions trained in (its ``machines.json``); empty when its
    precision was pinned by an option (its learner's ``bf16`` set) or not recorded."""
    try:
        learner = read_config(run).get("learner")
    except UserError:
        return set()
    if isinstance(learner, dict) and learner.get("bf16") is not None:
        return set()
    return {str(r.get("precision")) for r in read_machines(run)} & set(PRECISIONS)


def group_precisions(study: Study) -> dict[str, set[str]]:
    """Each precision group's trained precisions, over every run folder (finished or cut off)
    below its jobs' folders."""
    out: dict[str, set[str]] = {}
    for job in study.jobs:
        if job.group is None:
            continue
        found = out.setdefault(job.group, set())
        for file in sorted(job.out.rglob(MACHINES)) if job.out.is_dir() else []:
            found |= run_precisions(file.parent)
    return out


def held_back(study: Study, here: str) -> tuple[list[Job], dict[str, set[str]]]:
    """The unfinished jobs this machine (its learners training in ``here``) leaves for
    another: those of groups that trained in another precision, and the jobs that wait on
    them; with those groups' precisions."""
    other = {g: p for g, p in group_precisions(study).items() if p - {here}}
    held = {j.id for j in study.jobs if j.group in other and not job_done(j)}
    while True:  # a job waiting on a held job cannot run here either
        bases = {i.split("/seed_")[0] for i in held}
        more = {j.id for j in study.jobs
                if j.id not in held and not job_done(j) and set(j.after) & bases}
        if not more:
            break
        held |= more
    return [j for j in study.jobs if j.id in held], other


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
