"""A study's finished runs kept in its committed results folder, so that a study spans sessions.

A study of many hours outlives the machine that started it: its run folders (``runs/``, not
committed) are gone on a fresh clone, while its results folder is committed as parts land. So
each finished job's folder is also packed into ``RESULTS/archive/<job>.tar.gz`` — everything
but what a finished run no longer needs (the checkpoint, TensorBoard's copy of the metrics,
the CSV copy of the metrics log), a few hundred kB — and the study's command log
(``study.jsonl``) beside it. On the next start, a job with no folder here but an archive there
is unpacked and counts as finished: the same command, on any clone, goes on where the last
stopped. A job that other jobs start from (``after``: pretraining before fine-tuning) keeps its
checkpoint, since its dependants load it. Jobs with no run folder (data collection) are not
archived: they run again, and a collection rebuilds its games from their action logs
(``collect --log-dir``).

A job that a stopped study cut off (SIGTERM saved its checkpoints) is packed too, as
``RESULTS/archive/<job>.partial.tar.gz``, with the resume state (checkpoint, an online run's
replay) of each of its runs that has not finished: a job longer than what is left of a session
would otherwise start again on every fresh clone. That is a training job (``resume =
"train"``) and a job of several runs that its own command continues (``finetune``: finished
runs skipped, the cut-off one resumed). On the next start it is unpacked unfinished and
continues; when it finishes, its final archive replaces the partial one. A partial archive
costs the resume state's size (the networks, the target network and Adam's moments: ~10 MB
for the MinAtar preset, per unfinished run). Other finished runs keep none: the finetune
commands skip a run whose final evaluation is logged.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

from scaledql.atomic_files import atomic_output
from scaledql.errors import UserError
from scaledql.experiments.study import DONE, Job, Study, _base
from scaledql.run_folder import CONFIG, METRICS_CSV, REPLAY_GLOB, TENSORBOARD, Run

ARCHIVE = "archive"
_DROPPED = {METRICS_CSV, TENSORBOARD}  # copies of the metrics log


def archive_path(results: Path, job_id: str, *, partial: bool = False) -> Path:
    name = job_id.replace("/", "__")
    return Path(results) / ARCHIVE / f"{name}{'.partial' if partial else ''}.tar.gz"


def _is_run_job(out: Path) -> bool:
    return out.is_dir() and any(out.rglob(CONFIG))


def _is_resume_state(path: Path) -> bool:
    """A checkpoint (``checkpoint.pt``, kept history) or an online run's replay."""
    return path.suffix == ".pt" or path.match(REPLAY_GLOB)


def _kept(path: Path) -> bool:
    if path.name in _DROPPED:
        return False
    return not (path.name.startswith(".") and path.name != DONE) and ".tmp" not in path.name


def _finished(run: Path) -> bool:
    try:
        return Run(run).finished
    except UserError:  # a torn metrics log: keep what would continue it
        return False


def _unfinished_runs(folder: Path) -> set[Path]:
    """The run folders below ``folder`` (itself included) that have not finished."""
    return {c.parent for c in folder.rglob(CONFIG) if not _finished(c.parent)}


def _pack(folder: Path, keep_checkpoints: bool, target: Path) -> None:
    """Write ``folder``'s kept files to ``target`` (gzip tar, atomic; no times or owners, so the
    same files give the same bytes). Resume state is kept where ``keep_checkpoints`` (a
    job others start from) or in a run that has not finished."""
    unfinished = _unfinished_runs(folder)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=9) as tar:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if _is_resume_state(path) and not (
                    keep_checkpoints or unfinished.intersection(path.parents)):
                continue
            if path.is_file() and all(_kept(Path(*rel.parts[:i + 1]))
                                      for i in range(len(rel.parts))):
                info = tar.gettarinfo(str(path), rel.as_posix())
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with open(path, "rb") as f:
                    tar.addfile(info, f)
    with atomic_output(target) as tmp:
        tmp.write_bytes(buffer.getvalue())


def archive_job(study: Study, job: Job, results: Path) -> Path | None:
    """Pack a finished job's folder (None when it is not a run folder, e.g. data); its partial
    archive, if any, is then no longer needed."""
    if not ((job.out / DONE).is_file() and _is_run_job(job.out)):
        return None
    keep = _base(job.id) in {a for j in study.jobs for a in j.after}
    target = archive_path(results, job.id)
    _pack(job.out, keep, target)
    archive_path(results, job.id, partial=True).unlink(missing_ok=True)
    return target


def archive_unfinished(study: Study, results: Path) -> list[str]:
    """Pack every unfinished job that has runs to continue from (a stopped study's cut-off
    jobs: a checkpoint, or finished runs of a job of several) as a partial archive; returns
    their ids."""
    packed = []
    for job in study.jobs:
        if (job.out / DONE).is_file() or not _is_run_job(job.out):
            continue
        if any(job.out.rglob("*.pt")) or (job.resume == "rerun" and any(
                _finished(c.parent) for c in job.out.rglob(CONFIG))):
            # a training job continues with `train --resume`, which needs its checkpoint even
            # when the stop came between its final evaluation and its exit
            _pack(job.out, job.resume == "train", archive_path(results, job.id, partial=True))
            packed.append(job.id)
    return packed


def archive_log(study: Study, results: Path) -> None:
    """Keep the study's command log beside the archives."""
    log = study.runs / "study.jsonl"
    if log.is_file():
        with atomic_output(Path(results) / ARCHIVE / "study.jsonl") as tmp:
            shutil.copyfile(log, tmp)


def archived_json(results: Path, job_id: str, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The JSON files ``names`` of each run folder in a job's archive (the final one, else the
    partial one), read without unpacking: ``{run folder inside the archive: {name: value}}``;
    {} when there is no archive or it cannot be read."""
    final, partial = archive_path(results, job_id), archive_path(results, job_id, partial=True)
    source = final if final.is_file() else partial
    found: dict[str, dict[str, Any]] = {}
    if not source.is_file():
        return found
    try:
        with tarfile.open(source, "r:gz") as tar:
            for member in tar.getmembers():
                rel = PurePosixPath(member.name)
                if rel.name in names and member.isfile():
                    data = tar.extractfile(member)
                    if data is not None:
                        found.setdefault(str(rel.parent), {})[rel.name] = json.loads(data.read())
    except (tarfile.TarError, OSError, EOFError, ValueError):
        return {}
    return found


def restore_jobs(study: Study, results: Path) -> list[str]:
    """Unpack every archived job that has no folder here; returns their ids. A finished job's
    archive comes back finished, a partial one unfinished (its checkpoint continues it). The
    command log comes back too when this runs folder has none."""
    restored = []
    for job in study.jobs:
        final, partial = archive_path(results, job.id), archive_path(results, job.id, partial=True)
        source = final if final.is_file() else partial
        if job.out.exists() or not source.is_file():
            continue
        work = job.out.with_name(f".{job.out.name}.restoring")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            with tarfile.open(source, "r:gz") as tar:
                tar.extractall(work, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise UserError(f"{source}: not a readable run archive ({exc})") from None
        if source == final:
            (work / DONE).touch()
        work.rename(job.out)
        restored.append(job.id)
    log, here = Path(results) / ARCHIVE / "study.jsonl", study.runs / "study.jsonl"
    if log.is_file() and not here.exists():
        here.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, here)
    return restored
