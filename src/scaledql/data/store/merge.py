"""``scaledql data merge``: one store per game from several runs' stores, in run order.

The DQN Replay Dataset holds five runs per game, and the paper's sub-optimal data is the first
20% of *each* run. A ``collect`` writes one run per store; this command lays several of them
(each cut to its first share of transitions, whole episodes, as ``--data-fraction`` and the DQN
Replay import's ``--fraction`` cut) one after another into a new store, each run in shards of
its own, and records the runs in the manifest's provenance (``merged_runs``: where each came from, its
share, episodes, transitions, shards and behaviour return, and the source's own provenance), so
``data card`` shows them and a run can be traced to the command that collected it.

Every source must hold the game with the same geometry, action set, reward clipping and
environment options (the runs of one dataset play one game). Written like every store write
(``GameWriter``: locked, staged, published by one rename); a game already merged from the same
runs is kept, so an interrupted merge of many games resumes, and the same sources give the same
arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.data.store.dataset import list_games, open_dataset
from scaledql.data.store.episodes import EpisodeSelection, check_fraction
from scaledql.data.store.format import FLAG_PARTIAL_START, FLAG_TERMINATED, FLAG_TRUNCATED
from scaledql.data.store.game import GameData
from scaledql.data.store.writer import GameWriter
from scaledql.errors import UserError

SOURCE = "scaledql data merge"
_SAME = ("suite", "num_actions", "action_set", "frame_shape", "stack", "rewards_clipped")


@dataclass(frozen=True)
class RunSource:
    """One run to merge: a dataset directory and the first share of each game's transitions."""

    path: Path
    fraction: float = 1.0


def _stored_episodes(g: GameData) -> list[tuple[int, int, int, int, int]]:
    """(shard, episode in the shard, frame start, transitions, flags) of every stored episode,
    in store order."""
    return [(si, i, int(start), int(t), int(flags)) for si, sh in enumerate(g.shards)
            for i, (start, t, flags) in enumerate(zip(np.asarray(sh.ep_frame_start).tolist(),
                                                      np.asarray(sh.ep_length).tolist(),
                                                      np.asarray(sh.ep_flags).tolist(),
                                                      strict=True))]


def _kept(episodes: list[tuple[int, int, int, int, int]], fraction: float, game: str) -> int:
    """How many first stored episodes hold ``fraction`` of the transitions: those up to the
    last episode with a step that ``EpisodeSelection`` keeps (the samplers' cut)."""
    with_steps = [i for i, e in enumerate(episodes) if e[3] > 0]
    if not with_steps:
        return 0
    lengths = np.array([episodes[i][3] for i in with_steps], np.int64)
    chosen = EpisodeSelection(fraction=fraction).episodes(lengths, game)
    return with_steps[int(chosen[-1])] + 1


def _run_record(number: int, src: RunSource, g: GameData, kept: list) -> dict[str, Any]:
    """What the merged store's provenance keeps of one run: where it came from, its share,
    its finished episodes' mean return and the source's own provenance."""
    returns = [float(g.shards[si].ep_return[i]) for si, i, _start, _t, flags in kept
               if flags & (FLAG_TERMINATED | FLAG_TRUNCATED) and not flags & FLAG_PARTIAL_START]
    prov = dict(g.provenance)
    return {"run": number, "from": str(src.path), "fraction": src.fraction,
            "episodes": len(returns), "transitions": int(sum(e[3] for e in kept)),
            "mean_return": float(np.mean(returns)) if returns else None,
            "seed": prov.get("seed"), "source_provenance": prov}


def _plan(sources: list[RunSource], game: str) -> tuple[list[GameData], list[list]]:
    data = [open_dataset(src.path, [game]).game(game) for src in sources]
    first = data[0]
    env = first.env_options_record
    for src, g in zip(sources[1:], data[1:], strict=True):
        for key in _SAME:
            if g.manifest.get(key) != first.manifest.get(key):
                raise UserError(f"{src.path / game}: {key} {g.manifest.get(key)!r} differs from "
                                f"{sources[0].path / game}'s {first.manifest.get(key)!r}: the "
                                "runs of one store must play one game")
        other = g.env_options_record
        if other != env:
            raise UserError(f"{src.path / game}: environment options {other} differ from "
                            f"{sources[0].path / game}'s {env}")
    episodes = []
    for src, g in zip(sources, data, strict=True):
        stored = _stored_episodes(g)
        episodes.append(stored[:_kept(stored, src.fraction, game)])
    return data, episodes


def merge_game(sources: list[RunSource], out: Path, game: str, command: str,
               overwrite: bool = False) -> dict[str, Any]:
    """Write ``out/game`` from the runs; returns {game, runs, transitions, skipped}."""
    data, episodes = _plan(sources, game)
    runs = [_run_record(k + 1, src, g, kept)
            for k, (src, g, kept) in enumerate(zip(sources, data, episodes, strict=True))]
    first = data[0]
    existing = out / game / "manifest.json"
    if existing.is_file() and not overwrite:
        prov = open_dataset(out, [game]).game(game).provenance
        if prov.get("source") == SOURCE and [_key(r) for r in prov.get("merged_runs", [])] == \
                [_key(r) for r in runs]:
            return {"game": game, "runs": runs, "transitions": sum(r["transitions"] for r in runs),
                    "skipped": True}
        raise UserError(f"{out / game} already holds other data; pass --overwrite to replace it")
    provenance = {"source": SOURCE, "command": command,
                  "env_options": first.env_options_record,
                  "merged_runs": runs}
    m = first.manifest
    with GameWriter(out, suite=m["suite"], game=game, num_actions=m["num_actions"],
                    frame_shape=tuple(m["frame_shape"]), stack=m["stack"],
                    action_set=m["action_set"], rewards_clipped=m["rewards_clipped"],
                    provenance=provenance, overwrite=overwrite) as writer:
        for g, kept, run in zip(data, episodes, runs, strict=True):
            shards_before = writer.shards_written
            for si, _i, start, t, flags in kept:
                sh = g.shards[si]
                writer.add_episode(np.asarray(sh.frames[start:start + t + 1]),
                                   np.asarray(sh.actions[start:start + t], np.int64),
                                   np.asarray(sh.rewards[start:start + t], np.float32),
                                   bool(flags & FLAG_TERMINATED), bool(flags & FLAG_TRUNCATED),
                                   partial_start=bool(flags & FLAG_PARTIAL_START))
            writer.end_shard()  # a run's episodes in shards of their own
            run["shards"] = [shards_before, writer.shards_written]
    return {"game": game, "runs": runs, "transitions": sum(r["transitions"] for r in runs),
            "skipped": False}


def _key(run: dict) -> tuple:
    """What identifies a merged run (not where its shards ended up)."""
    return (run.get("run"), run.get("from"), run.get("fraction"), run.get("transitions"),
            run.get("episodes"))


def merge(sources: list[RunSource], out: Path, games: list[str] | None, command: str,
          overwrite: bool = False) -> list[dict[str, Any]]:
    """Merge every game the first source holds (or ``games``) from all ``sources``."""
    if len(sources) < 2:
        raise UserError("data merge needs at least two runs to merge")
    for src in sources:
        check_fraction(src.fraction)
        if not src.path.is_dir():
            raise UserError(f"{src.path}: no such dataset directory")
        if src.path.resolve() == Path(out).resolve():
            raise UserError(f"{src.path}: a source cannot be the output")
    chosen = games or list_games(sources[0].path)
    if not chosen:
        raise UserError(f"{sources[0].path}: no game stores in it")
    return [merge_game(sources, Path(out), game, command, overwrite) for game in chosen]
