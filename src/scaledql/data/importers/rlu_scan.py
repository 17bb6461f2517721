"""An RL Unplugged run's timeline: its episode records read (frames left encoded), checked and
joined into episodes as the DQN Replay import makes them (``dqn_replay``).

RL Unplugged cut DQN Replay's runs at its 1M-step checkpoints: an episode under way at a
checkpoint's end is one record in each checkpoint it touches, every record but the last not
terminal. Here consecutive selected checkpoints join into a *window* and such records join back
into one episode. As in the DQN Replay import:

* every step of a record is a transition; an episode of ``T`` steps is ``T + 1`` frames, its
  steps' observations then one all-zero final frame (the observation after the last step is not
  in the data; after a terminal step it is never used);
* an episode cut by a window's end is *truncated* when another selected window follows (a gap in
  the selection), *unfinished* at the end of the run's selection (the last episode of a run
  that stopped mid-episode, or of a ``--fraction`` slice);
* the first episode of a window is *partial_start* (steps kept, return not a behaviour return)
  unless it is known to start there: at checkpoint 0, or when the previous checkpoint is on disk
  (selected or not) and its last record ended the game. A record that ends without a terminal
  step inside a checkpoint is a truncated episode.

Episodes are in time order: runs in the order given, checkpoints in order, records by
``episode_idx`` within a checkpoint (the files' order; a duplicate id is refused).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scaledql.data.importers.dqn_replay import _Episode
from scaledql.data.importers.rlu_source import RluSelection, Schema
from scaledql.data.importers.tf_example import ParsedExample
from scaledql.data.importers.tfrecord import TFRecordFile
from scaledql.errors import UserError


@dataclass
class Record:
    """One episode record's small arrays and where it is."""

    file: int  # index into its checkpoint's files
    index: int  # record number in that file
    episode: int  # episode_idx / episode_id
    actions: np.ndarray  # int32[T]
    rewards: np.ndarray  # float32[T]
    terminal: bool  # its last step ended the game

    @property
    def length(self) -> int:
        return len(self.actions)


@dataclass
class Episode(_Episode):
    """A ``dqn_replay`` episode, with the records its steps come from: ``(checkpoint, file,
    record, first step of the record in the episode)``."""

    pieces: list[tuple[int, int, int, int]] = field(default_factory=list)


def check_record(ex: ParsedExample, schema: Schema, features: dict[str, str],
                 where: str) -> int:
    """Check a record's feature names and kinds against its layout; returns its step count."""
    names = ex.names()
    if schema.layout == "raw":
        want = {n: k for n, k in features.items() if n in (
            schema.checkpoint, schema.episode, schema.observation, schema.action, schema.reward,
            schema.discount)}
        missing = sorted(set(want) - names)
        if missing:
            raise UserError(f"{where}: no feature {', '.join(missing)} (not an RL Unplugged "
                            "Atari episode)")
    else:
        want = features
        if names != set(features):
            extra, missing = sorted(names - set(features)), sorted(set(features) - names)
            raise UserError(f"{where}: the record disagrees with features.json ("
                            + "; ".join(s for s in (
                                f"features.json lacks {', '.join(extra)}" if extra else "",
                                f"the record lacks {', '.join(missing)}" if missing else "") if s)
                            + ")")
    for name, kind in want.items():
        if ex.kind(name) != kind:
            raise UserError(f"{where}: feature {name!r} is a {ex.kind(name)}, features"
                            f"{'.json' if schema.layout != 'raw' else ''} say {kind}")
    steps = {n: len(getattr(ex.features[n], want[n]).value) for n in want
             if "/" in n or n in (schema.observation, schema.action, schema.reward,
                                  schema.discount)}
    lengths = set(steps.values())
    if len(lengths) != 1:
        raise UserError(f"{where}: per-step features differ in length ("
                        + ", ".join(f"{n} {v}" for n, v in sorted(steps.items())) + ")")
    t = lengths.pop()
    if t == 0:
        raise UserError(f"{where}: an episode record with no steps")
    return t


def read_record(data: bytes, sel: RluSelection, n: int, where: str,
                num_actions: int) -> tuple[Record, int]:
    """Parse and check one record of checkpoint ``n``; (record, its checkpoint id)."""
    schema = sel.schema
    ex = ParsedExample(data, where)
    check_record(ex, schema, sel.features, where)
    ckpt = int(ex.scalar(schema.checkpoint, "int64_list"))
    if ckpt != n:
        raise UserError(f"{where}: checkpoint {ckpt} in a file of checkpoint {n}")
    actions = ex.ints(schema.action)
    if actions.min() < 0 or actions.max() >= num_actions:
        bad = int(actions.min() if actions.min() < 0 else actions.max())
        raise UserError(f"{where}: action {bad} out of range [0, {num_actions})")
    rewards = ex.floats(schema.reward)
    if not np.isfinite(rewards).all():
        raise UserError(f"{where}: NaN or infinite rewards")
    if schema.layout == "raw":
        discounts = ex.floats(schema.discount)
        terminal = bool(discounts[-1] == 0)
    else:
        first, last = ex.ints("steps/is_first"), ex.ints("steps/is_last")
        term = ex.ints("steps/is_terminal")
        if first[0] != 1 or first[1:].any() or last[-1] != 1 or last[:-1].any() \
                or term[:-1].any():
            raise UserError(f"{where}: is_first / is_last / is_terminal are not those of one "
                            "whole RLDS episode")
        terminal = bool(term[-1])
    episode = int(ex.scalar(schema.episode, "int64_list"))
    return Record(-1, -1, episode, actions.astype(np.int32), rewards, terminal), ckpt


def scan_checkpoint(sel: RluSelection, n: int, num_actions: int) -> list[Record]:
    """Every record of checkpoint ``n`` of a run, checked, in episode order."""
    ck = sel.files(n)
    out: list[Record] = []
    for fi, path in enumerate(ck.files):
        with TFRecordFile(path, sel.schema.compressed) as f:
            for data in f:
                rec, _ = read_record(data, sel, n, f"{path}: record {f.index}", num_actions)
                rec.file, rec.index = fi, f.index
                out.append(rec)
            if ck.counts is not None and f.index + 1 != ck.counts[fi]:
                raise UserError(f"{path}: {f.index + 1} records, dataset_info.json says "
                                f"{ck.counts[fi]}")
    out.sort(key=lambda r: r.episode)
    ids = [r.episode for r in out]
    dup = next((a for a, b in itertools.pairwise(ids) if a == b), None)
    if dup is not None:
        raise UserError(f"{ck.files[0].parent}: checkpoint {n} holds episode {dup} twice")
    if not out:
        raise UserError(f"{ck.files[0]}: checkpoint {n} holds no episodes")
    return out


def _ends_with_terminal(sel: RluSelection, n: int, num_actions: int) -> bool | None:
    """Whether checkpoint ``n``'s last episode ended the game; None when it cannot be read."""
    if n not in sel.available or not all(p.is_file() for p in sel.files(n).files):
        return None
    try:
        return scan_checkpoint(sel, n, num_actions)[-1].terminal
    except UserError:
        return None  # a damaged unselected file only costs us the history


@dataclass
class RluTimeline:
    """A run's selected checkpoints as episodes, per window (what ``dqn_layout`` lays out)."""

    sel: RluSelection
    episodes: list[list[Episode]]
    frame_hw: tuple[int, int]

    @property
    def where(self) -> Path:
        return self.sel.where


def windows(checkpoints: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for n in checkpoints:
        if out and out[-1][-1] == n - 1:
            out[-1].append(n)
        else:
            out.append([n])
    return out


def _episode(pieces: list[tuple[int, Record]], step: int, terminated: bool, truncated: bool,
             partial: bool) -> Episode:
    """One episode from its records (checkpoint, record), its first step ``step`` of the run."""
    ep = Episode(step, sum(r.length for _, r in pieces), terminated, truncated, partial,
                 np.concatenate([r.actions for _, r in pieces]),
                 np.concatenate([r.rewards for _, r in pieces]))
    off = 0
    for ck, r in pieces:
        ep.pieces.append((ck, r.file, r.index, off))
        off += r.length
    return ep


def load_run(sel: RluSelection, num_actions: int) -> RluTimeline:
    """Read a run's selected checkpoints (all records, frames left encoded) into episodes."""
    wins = windows(sel.checkpoints)
    per_window: list[list[Episode]] = []
    step = 0
    for wi, win in enumerate(wins):
        k = win[0]
        partial = not (k == 0 or bool(_ends_with_terminal(sel, k - 1, num_actions)))
        eps: list[Episode] = []
        cur: list[tuple[int, Record]] = []
        for n in win:
            for i, rec in enumerate(scan_checkpoint(sel, n, num_actions)):
                if cur and i > 0:  # a record that stopped mid-checkpoint: cut by the source
                    eps.append(_episode(cur, step, False, True, partial))
                    cur, partial, step = [], False, step + eps[-1].length
                cur.append((n, rec))
                if rec.terminal:
                    eps.append(_episode(cur, step, True, False, partial))
                    cur, partial, step = [], False, step + eps[-1].length
        if cur:  # cut by the window's end: truncated when a gap follows, else unfinished
            eps.append(_episode(cur, step, False, wi + 1 < len(wins), partial))
            step += eps[-1].length
        per_window.append(eps)
    return RluTimeline(sel, per_window, sel.frame_hw)
