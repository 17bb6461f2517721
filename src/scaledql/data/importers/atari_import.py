"""``scaledql data import dqn-replay`` / ``rlu-atari``: many games, runs and checkpoint files;
parallel, resumable. What differs between the sources is in ``sources``.

Work, in processes (``jobs``; 1 runs everything in this process):

* a *plan* per game: read and check the small arrays of every selected checkpoint file of every
  run, lay the episodes out into shards and write everything but the frames (``dqn_layout``);
* a *unit* per checkpoint file: inflate its observation array and write each frame at its
  place in the game's shards. Units of all games and runs are independent and run in any
  order, so ``jobs`` processes stay busy whatever the number of games or runs.

This process is each game's only *publisher*: it records finished units, writes the manifest
and publishes the game with one ``rename`` as soon as all its units are done; workers only fill
frames that the plan has placed. One progress bar (stderr, on a terminal) counts the inflated
bytes of all files, with an ETA.

Resume, per checkpoint file: a game is built in ``DIR/.GAME.import/`` (hidden, never listed as a
game) with a ``plan.json`` holding the *fingerprint* of the import (parameters, selection, and
size and gzip CRC of every source file read) and ``done/`` holding one marker per finished unit,
written after its frames are fsynced. Run again with the same sources and selection, an import
re-plans in memory, skips the done units and redoes the others (rewriting a unit writes the same
bytes, so nothing is duplicated or skipped); a game already published with the same fingerprint
is skipped. A different fingerprint discards the staging directory and starts that game afresh.
A bad source file aborts the import and discards that game's staging directory (other games'
stay, to resume). A kill leaves no half-written published game.

Same input, same bytes: shards, counts and returns follow from the data alone; the manifest's
``created`` is the modification time of the newest source file and its ``command`` leaves out
``--jobs``, so a killed and resumed import and an uninterrupted one write identical stores.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaledql.atomic_files import (
    acquire_lock,
    atomic_write_json,
    fsync_dir,
    missing_dirs,
    release_lock,
    remove_empty_dirs,
    remove_stale_temporaries_in,
)
from scaledql.data.importers.dqn_layout import CHUNK_BYTES, GameLayout, Unit, layout_game
from scaledql.data.importers.sources import get_source
from scaledql.data.store.format import (
    MANIFEST,
    SCHEMA,
    SCHEMA_VERSION,
    game_lock_path,
    provenance_of,
    read_manifest,
)
from scaledql.data.store.game import GameData
from scaledql.data.store.validate import verify_game
from scaledql.errors import UserError
from scaledql.suites.base import validate_game_name
from scaledql.worker_pool import Inline, Pool, Progress, Stopped, stop_signals

FORMAT = 1  # bump when the layout of an import changes: older staging directories are discarded
PLAN = "plan.json"


@dataclass
class ImportOptions:
    src: Path
    out: Path
    runs: list[str] | None = None
    checkpoints: list[int] | None = None
    fraction: float | None = None
    stack: int = 4
    suite: str = "atari"
    shard_steps: int = 1_000_000
    overwrite: bool = False
    chunk_bytes: int = CHUNK_BYTES
    command: str | None = None
    source: str = "dqn-replay"  # or "rlu-atari" (sources)


@dataclass
class ImportSummary:
    game_dir: Path
    runs: list[str]
    checkpoints: dict[str, list[int]]
    transitions: int
    episodes: int
    skipped: bool = False  # published by an earlier run of the same import


@dataclass
class _PlanSpec:
    game: str
    num_actions: int
    stack: int
    shard_steps: int
    selection: list[Any]  # per run: dqn_replay.RunSelection, rlu_source.RluSelection
    staging: Path
    fingerprint: str
    write: bool
    source: str = "dqn-replay"


@dataclass
class _Game:
    spec: _PlanSpec
    final: Path
    base: dict[str, Any]  # the manifest's head: schema ... provenance
    created: str
    state: str  # "skip", "publish" (staging holds the manifest), "resume" or "fresh"
    layout: GameLayout | None = None
    pending: set[str] = field(default_factory=set)


# ------------------------------------------------------------------------------------------------
# Preparing a game: fingerprint, what is on disk already


def _fingerprint(spec: _PlanSpec, suite: str, base: Path) -> tuple[str, str]:
    """(sha256 of the import's parameters and source identities, newest source mtime as ISO)."""
    source = get_source(spec.source)
    files, newest = [], 0.0
    for sel in spec.selection:
        for path in source.files(sel):
            files.append([str(path.relative_to(base)), *source.identity(path)])
            newest = max(newest, path.stat().st_mtime)
    body = {"format": FORMAT, "suite": suite, "game": spec.game, "num_actions": spec.num_actions,
            "stack": spec.stack, "shard_steps": spec.shard_steps,
            "runs": {s.run: s.checkpoints for s in spec.selection}, "files": files}
    if spec.source != "dqn-replay":  # the DQN Replay fingerprints of earlier versions stand
        body["source"] = spec.source
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    created = _dt.datetime.fromtimestamp(int(newest), _dt.timezone.utc).isoformat()
    return digest, created


def _prepare(game: str, num_actions: int, opts: ImportOptions) -> _Game:
    validate_game_name(game)
    source = get_source(opts.source)
    selection = source.select(Path(opts.src), game, runs=opts.runs, checkpoints=opts.checkpoints,
                              fraction=opts.fraction)
    out = Path(opts.out)
    staging = out / f".{game}.import"
    spec = _PlanSpec(game, num_actions, opts.stack, opts.shard_steps, selection, staging, "",
                     write=True, source=opts.source)
    spec.fingerprint, created = _fingerprint(spec, opts.suite,
                                             source.base(selection, Path(opts.src)))
    base = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "suite": opts.suite,
            "game": game, "num_actions": num_actions, "action_set": "minimal",
            "frame_shape": None, "stack": opts.stack, "rewards_clipped": True,
            "provenance": {"source": opts.source, "path": str(Path(opts.src).resolve()),
                           "runs": {s.run: s.checkpoints for s in selection},
                           **source.provenance(selection),
                           "command": opts.command or " ".join(sys.argv),
                           "fingerprint": spec.fingerprint}}
    g = _Game(spec, out / game, base, created, "fresh")
    final = g.final
    if (final / MANIFEST).is_file():
        with contextlib.suppress(UserError):
            if provenance_of(read_manifest(final)).get("fingerprint") == spec.fingerprint:
                g.state = "skip"
                return g
        if not opts.overwrite:
            raise UserError(f"{final} already holds a dataset for {game}; pass --overwrite to "
                            "replace it")
    elif final.exists() and not opts.overwrite:
        raise UserError(f"{final} exists and is not a complete game store; remove it or pass "
                        "--overwrite")
    if (staging / MANIFEST).is_file() and _staged_fingerprint(staging / MANIFEST) == spec.fingerprint:
        g.state = "publish"
    elif (staging / PLAN).is_file() and _staged_fingerprint(staging / PLAN) == spec.fingerprint:
        g.state, spec.write = "resume", False
    return g


@contextlib.contextmanager
def _writing(where: Path):
    """A failed write (disk full, permissions) becomes one ``UserError`` line."""
    try:
        yield
    except OSError as exc:
        raise UserError(f"{where}: writing failed ({exc})") from None


def _staged_fingerprint(path: Path) -> str | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(d, dict):
        return None
    prov = d.get("provenance")
    return d.get("fingerprint") or (prov.get("fingerprint") if isinstance(prov, dict) else None)


def _lock(directory: Path) -> int:
    """An exclusive lock on a staging directory (held until its descriptor is closed)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{directory}: another import of this game into {directory.parent} is "
                        "running") from None
    except OSError:  # a filesystem without flock (some network ones): go on unguarded
        pass
    return fd


def _clean(g: _Game) -> int:
    """Lock the game's staging directory; remove what interrupted writes of this game left: an
    old store being replaced, a ``GameWriter``'s partial directory, and (unless resuming) the
    staging directory itself. Returns the lock's descriptor."""
    out = g.final.parent
    staging = g.spec.staging
    fd = _lock(staging) if staging.is_dir() else -1
    for leftover in (out / f".{g.spec.game}.old", out / f".{g.spec.game}.partial"):
        shutil.rmtree(leftover, ignore_errors=True)
    if g.state == "fresh":
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        if fd >= 0:
            os.close(fd)
        fd = _lock(staging)
    else:  # temporary files of killed writes (*.tmp: those of earlier scaledql versions)
        for tmp in staging.glob("*.tmp"):
            tmp.unlink()
        remove_stale_temporaries_in(staging)
    return fd


# ------------------------------------------------------------------------------------------------
# Tasks (run in a worker process, or here when jobs == 1)


def _plan(spec: _PlanSpec, progress: Callable[[int], None] | None = None) -> GameLayout:
    source = get_source(spec.source)
    timelines = (source.load(sel, spec.num_actions, spec.stack) for sel in spec.selection)
    with _writing(spec.staging):
        layout = (layout_game(spec.game, timelines, spec.staging, spec.shard_steps, spec.write)
                  if source.units is None else
                  layout_game(spec.game, timelines, spec.staging, spec.shard_steps, spec.write,
                              source.units))
        if spec.write:
            atomic_write_json(spec.staging / PLAN, {"fingerprint": spec.fingerprint}, indent=1,
                              durable=True)
    return layout


def _copy(task: tuple[Unit, int], progress: Callable[[int], None] | None = None) -> int:
    unit, chunk_bytes = task  # a dqn_layout.Unit or an rlu_copy.RluUnit
    return unit.copy(chunk_bytes, progress)


# ------------------------------------------------------------------------------------------------
# The import


def _marker(g: _Game, unit: Unit) -> Path:
    return g.spec.staging / "done" / unit.marker


def _mark_done(g: _Game, unit: Unit) -> None:
    path = _marker(g, unit)
    path.parent.mkdir(exist_ok=True)
    with open(path, "w") as f:
        os.fsync(f.fileno())
    fsync_dir(path.parent)


def _publish(g: _Game) -> ImportSummary:
    staging = g.spec.staging
    if g.state != "publish":
        assert g.layout is not None
        manifest = dict(g.base)
        manifest["frame_shape"] = [1, *g.layout.frame_hw]
        manifest.update(shards=g.layout.shards, episode_returns=g.layout.episode_returns,
                        counts=g.layout.counts, created=g.created)
        atomic_write_json(staging / MANIFEST, manifest, indent=1, durable=True)
    verify_game(GameData(staging, name=g.spec.game), frames=False)  # before anyone sees it
    shutil.rmtree(staging / "done", ignore_errors=True)
    (staging / PLAN).unlink(missing_ok=True)
    fsync_dir(staging)
    out = g.final.parent
    old = out / f".{g.spec.game}.old"
    if g.final.exists():  # --overwrite was checked in _prepare
        os.rename(g.final, old)
    os.rename(staging, g.final)
    fsync_dir(out)
    shutil.rmtree(old, ignore_errors=True)
    return _summary(g)


def _summary(g: _Game, skipped: bool = False) -> ImportSummary:
    m = read_manifest(g.final)
    sel = g.spec.selection
    return ImportSummary(g.final, [s.run for s in sel], {s.run: s.checkpoints for s in sel},
                         m["counts"]["transitions"], m["counts"]["episodes"], skipped)


def import_games(games: dict[str, int | None], opts: ImportOptions, *, jobs: int = 1,
                 progress: bool = False) -> list[ImportSummary]:
    """Import ``SRC/GAME/RUN/replay_logs`` (``opts.source`` "dqn-replay"; "rlu-atari": RL
    Unplugged's files, ``rlu_source``) of each game (name → action count, None: the suite's
    minimal set) into ``opts.out/GAME``; ``jobs`` processes; resumes an interrupted import of
    the same selection. ``UserError`` on bad input. Summaries in ``games`` order.

    ``jobs > 1`` spawns worker processes, which import the caller's main module: a script
    calling this must do so under ``if __name__ == "__main__":``."""
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    state: dict[str, _Game] = {}
    for game, num_actions in games.items():
        if num_actions is None:
            from scaledql.suites import get_suite

            num_actions = get_suite(opts.suite).spec(game).num_actions
        state[game] = _prepare(game, num_actions, opts)  # all checks before any write
    summaries: dict[str, ImportSummary] = {}
    made = missing_dirs(Path(opts.out))
    try:
        _run_import(state, summaries, opts, jobs, progress)
    except BaseException:
        remove_empty_dirs(made)  # a refused import leaves no empty --out behind
        raise
    return [summaries[name] for name in games]


def _run_import(state: dict[str, _Game], summaries: dict[str, ImportSummary],
                opts: ImportOptions, jobs: int, progress: bool) -> None:
    """``import_games`` under the games' locks: plan, copy and publish every game."""
    with contextlib.ExitStack() as locks, Progress(progress) as bar, stop_signals():
        # One writer per game store (any importer, any collection): then look again, under it.
        for game in state:
            lock = game_lock_path(opts.out, game)
            with _writing(opts.out):
                locks.callback(release_lock, acquire_lock(lock, "game-store", Path(opts.out) / game),
                               lock)
        state = {game: _prepare(game, g.spec.num_actions, opts) for game, g in state.items()}
        for g in state.values():
            if g.state != "skip":
                with _writing(g.spec.staging):
                    locks.callback(os.close, _clean(g))
        runner: Inline | Pool = Inline(bar.update) if jobs == 1 else Pool(jobs, bar.update)
        ok = False
        try:
            busy = 0
            for name, g in state.items():
                if g.state == "skip":
                    summaries[name] = _summary(g, skipped=True)
                elif g.state == "publish":
                    with _writing(g.final):
                        summaries[name] = _publish(g)
                else:
                    runner.submit(("plan", name), _plan, g.spec)
                    busy += 1
            while busy:
                kind, key, result = runner.next_event()
                busy -= 1
                if kind == "cancelled":
                    continue
                g = state[key[1]]
                if kind == "error":
                    runner.close(terminate=True)
                    if isinstance(result, UserError):  # bad input: this game cannot finish
                        shutil.rmtree(g.spec.staging, ignore_errors=True)
                    raise result
                if key[0] == "plan":
                    g.layout = result
                    todo = [u for u in result.units if not _marker(g, u).exists()]
                    total = sum(u.nbytes for u in result.units)
                    bar.add_work(total, total - sum(u.nbytes for u in todo), len(result.units),
                                 len(result.units) - len(todo))
                    g.pending = {u.key for u in todo}
                    for u in todo:
                        runner.submit(("unit", key[1], u), _copy, (u, opts.chunk_bytes))
                        busy += 1
                else:
                    with _writing(g.spec.staging):
                        _mark_done(g, key[2])
                    g.pending.discard(key[2].key)
                    bar.file_done()
                if g.layout is not None and not g.pending and key[1] not in summaries:
                    with _writing(g.final):
                        summaries[key[1]] = _publish(g)
            ok = True
        except Stopped as stop:
            raise stop.saying(_kept(state, summaries)) from None
        finally:
            runner.close(terminate=not ok)


def _kept(state: dict[str, _Game], summaries: dict[str, ImportSummary]) -> str:
    """What a stopped import keeps, for its one line."""
    parts = []
    for name, g in state.items():
        if name in summaries:
            parts.append(f"{name} published")
        elif g.spec.staging.is_dir():
            done = len(list((g.spec.staging / "done").glob("*")))
            total = f" of {len(g.layout.units)}" if g.layout is not None else ""
            parts.append(f"{name}: {done}{total} files staged in {g.spec.staging}")
    return (f"kept {'; '.join(parts) or 'nothing yet'}; run the same command to continue "
            "(it redoes only what is missing)")
