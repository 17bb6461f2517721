"""Writing a game store: ``GameWriter`` (``format``: the layout; ``store``: the checks and the
locks).

A ``GameWriter`` builds the whole game store in a hidden temporary directory next to its
destination (``DIR/.GAME.partial``), holding ``DIR/.GAME.lock`` all along, fsyncs every file,
runs the full scan (``validate.verify_game``), writes the manifest last and publishes the
directory with one ``rename``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.atomic_files import acquire_lock, atomic_write_json, fsync_dir, release_lock
from scaledql.data.store.format import (
    COUNT_KEYS,
    FLAG_PARTIAL_START,
    FLAG_TERMINATED,
    FLAG_TRUNCATED,
    MANIFEST,
    SCHEMA,
    SCHEMA_VERSION,
    check_game_name,
    game_lock_path,
    read_manifest,
    save_shard_tables,
    shard_name,
)
from scaledql.data.store.game import GameData
from scaledql.data.store.npy_header import fixed_header
from scaledql.data.store.validate import verify_game
from scaledql.errors import UserError
from scaledql.suites.base import validate_game_name


def publish_game_dir(work_dir: Path, final_dir: Path) -> None:
    """Rename a finished game store (manifest written) from its hidden ``work_dir`` to
    ``final_dir``, replacing what is there: the old store is renamed aside first and removed
    after, so a reader sees the old store or the new one, never a mix."""
    trash = final_dir.with_name(f".{final_dir.name}.old")
    if trash.exists():
        shutil.rmtree(trash)
    if final_dir.exists():
        os.rename(final_dir, trash)
    os.rename(work_dir, final_dir)
    fsync_dir(final_dir.parent)
    shutil.rmtree(trash, ignore_errors=True)


class _ShardWriter:
    """Streams the episodes of one shard to ``directory``; ``finish`` writes the small arrays."""

    def __init__(self, directory: Path, frame_shape: tuple[int, int, int]):
        self.directory = directory
        directory.mkdir(parents=True)
        self.frame_shape = frame_shape
        self._frames_file = open(directory / "frames.npy", "wb")  # noqa: SIM115 (closed in finish)
        self._frames_file.write(fixed_header(np.uint8, (0, *frame_shape)))
        self._frames_file.write(np.zeros(frame_shape, np.uint8).tobytes())  # sentinel frame 0
        self.num_frames = 1
        self.num_transitions = 0
        self._actions: list[np.ndarray] = [np.zeros(1, np.int32)]
        self._rewards: list[np.ndarray] = [np.zeros(1, np.float32)]
        self._rtg: list[np.ndarray] = [np.zeros(1, np.float32)]
        self._episodes: list[tuple[int, int, int, int, float]] = []

    def add(self, frames: np.ndarray, actions: np.ndarray, rewards: np.ndarray, flags: int) -> None:
        t = len(actions)
        self._frames_file.write(np.ascontiguousarray(frames).tobytes())
        self._actions.append(np.append(actions.astype(np.int32), np.int32(0)))
        self._rewards.append(np.append(rewards, np.float32(0)))
        # Suffix sums in float64, stored float32: returns-to-go for the trajectory sampler.
        rtg = np.cumsum(rewards[::-1].astype(np.float64))[::-1]
        self._rtg.append(np.append(rtg, 0.0).astype(np.float32))
        ret = float(rtg[0]) if t else 0.0
        self._episodes.append((self.num_frames, t, self.num_transitions, flags, ret))
        self.num_frames += t + 1
        self.num_transitions += t

    def finish(self) -> dict:
        f = self._frames_file
        f.flush()
        f.seek(0)
        f.write(fixed_header(np.uint8, (self.num_frames, *self.frame_shape)))
        f.flush()
        os.fsync(f.fileno())
        f.close()
        d, ep = self.directory, self._episodes
        save_shard_tables(d, self._actions, self._rewards, self._rtg, ep)
        return {"name": d.name, "frames": self.num_frames, "transitions": self.num_transitions,
                "episodes": len(ep)}

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._frames_file.close()


class GameWriter:
    """Writes one game's store ``root/<game>`` episode by episode; publishes it atomically.

    Usage::

        with GameWriter(root, suite="atari", game="Pong", num_actions=6,
                        frame_shape=(1, 84, 84), stack=4, provenance={...}) as w:
            w.add_episode(frames, actions, rewards, terminated=True, truncated=False)
        # published at DIR/Pong on a clean exit; nothing published if the block raised.

    ``add_episode(frames uint8[T+1, C, H, W] (obs_0 .. obs_T, single frames), actions int[T],
    rewards float32[T] raw, terminated, truncated)``: ``terminated`` = the game ended (no
    bootstrap from obs_T); ``truncated`` = cut (step cap, gap); neither = the unfinished trailing
    episode. ``partial_start=True`` marks an episode whose beginning is not in the data (an import
    that starts mid-episode): its steps are kept but its return is not a behaviour episode return.

    An existing complete store for the game is refused (``UserError``) unless ``overwrite=True``
    (replace it) or ``append=True`` (add shards to it; the game's metadata must match).
    Memory: the current shard's actions/rewards (a few bytes per step); frames are streamed.
    """

    def __init__(self, root: Path, *, suite: str, game: str, num_actions: int,
                 frame_shape: tuple[int, int, int], stack: int, action_set: str = "minimal",
                 rewards_clipped: bool = False, provenance: dict | None = None,
                 shard_steps: int = 1_000_000, overwrite: bool = False, append: bool = False):
        validate_game_name(game)
        check_game_name(suite, game, "GameWriter")
        if overwrite and append:
            raise ValueError("overwrite and append exclude each other")
        if len(frame_shape) != 3 or stack < 1 or num_actions < 1 or shard_steps < 1:
            raise ValueError(f"bad store geometry: frame_shape={frame_shape} stack={stack} "
                             f"num_actions={num_actions} shard_steps={shard_steps}")
        self.root = Path(root)
        self.game = game
        self.final_dir = self.root / game
        self.frame_shape = tuple(int(x) for x in frame_shape)
        self.num_actions = int(num_actions)
        self.shard_steps = int(shard_steps)
        self.append = append
        self._closed = False
        self._lock_fd = -1
        self._made_root = False
        self._shard: _ShardWriter | None = None
        self._shards: list[dict] = []
        self._counts = dict.fromkeys(COUNT_KEYS, 0)
        self._returns: list[float] = []
        self.manifest: dict[str, Any] = {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "suite": suite, "game": game,
            "num_actions": self.num_actions, "action_set": action_set,
            "frame_shape": list(self.frame_shape), "stack": int(stack),
            "rewards_clipped": bool(rewards_clipped),
            "provenance": dict(provenance or {"source": "unknown",
                                              "command": " ".join(sys.argv)}),
        }
        if self.final_dir.exists() and not self.final_dir.is_dir():
            raise UserError(f"{self.final_dir} exists and is not a game store directory")
        if not self.root.is_dir():
            if self.root.exists():
                raise UserError(f"{self.root} is not a directory")
            self.root.mkdir(parents=True)
            self._made_root = True
        # One writer per game store: a second one would delete the first's partial directory.
        try:
            self._lock_fd = acquire_lock(game_lock_path(self.root, game), "game-store",
                                         self.final_dir)
            self._prepare(overwrite)
        except BaseException:
            self._release()
            raise

    def _prepare(self, overwrite: bool) -> None:
        """Under the lock: what is there already, and where this write goes."""
        game = self.game
        complete = (self.final_dir / MANIFEST).is_file()
        if self.append:
            if not complete:
                raise UserError(f"cannot append to {self.final_dir}: no complete game store there")
            old = read_manifest(self.final_dir)
            if "frame_codec" in old:
                raise UserError(f"cannot append to {self.final_dir}: its frames are compressed "
                                "(append to the raw store, then compress it again)")
            for key in ("suite", "game", "num_actions", "action_set", "frame_shape", "stack",
                        "rewards_clipped"):
                if old[key] != self.manifest[key]:
                    raise UserError(f"cannot append to {self.final_dir}: {key} is {old[key]!r} "
                                    f"there, {self.manifest[key]!r} here")
            self._old_manifest = old
            # Shards of an interrupted earlier append are not in the manifest: remove them.
            listed = {s["name"] for s in old["shards"]}
            for p in self.final_dir.iterdir():
                if p.name.startswith(".shard_") or (p.name.startswith("shard_")
                                                    and p.name not in listed):
                    shutil.rmtree(p, ignore_errors=True)
            self._work_dir = self.final_dir
            self._next_shard_index = 1 + max(int(s["name"].split("_")[1]) for s in old["shards"])
        else:
            if (complete or self.final_dir.exists()) and not overwrite:
                if complete:
                    raise UserError(f"{self.final_dir} already holds a dataset for {game}; "
                                    "pass --overwrite (overwrite=True) to replace it")
                raise UserError(f"{self.final_dir} exists and is not a complete game store; "
                                "remove it or pass --overwrite")
            self._work_dir = self.root / f".{game}.partial"
            if self._work_dir.exists():  # left by an interrupted earlier write
                shutil.rmtree(self._work_dir)
            self._work_dir.mkdir()
            self._next_shard_index = 0

    def _release(self) -> None:
        """Give the game's lock back (its file goes too) and remove a root we made in vain."""
        if self._lock_fd >= 0:
            release_lock(self._lock_fd, game_lock_path(self.root, self.game))
            self._lock_fd = -1
        if self._made_root:
            with contextlib.suppress(OSError):
                self.root.rmdir()  # only when empty: nothing was published

    # -- context manager --------------------------------------------------------------------
    def __enter__(self) -> GameWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- writing -----------------------------------------------------------------------------
    def add_episode(self, frames: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                    terminated: bool, truncated: bool, *, partial_start: bool = False) -> None:
        """Append one episode (see the class docstring). ``UserError`` on malformed data."""
        if self._closed:
            raise RuntimeError("GameWriter is closed")
        frames = np.asarray(frames)
        actions = np.asarray(actions)
        rewards = np.asarray(rewards)
        where = f"episode {self._counts['stored_episodes']} of {self.game}"
        if frames.dtype != np.uint8:
            raise UserError(f"{where}: frames have dtype {frames.dtype}, expected uint8")
        if frames.ndim != 4 or tuple(frames.shape[1:]) != self.frame_shape:
            raise UserError(f"{where}: frames have shape {frames.shape}, expected "
                            f"(T+1, {', '.join(map(str, self.frame_shape))})")
        t = frames.shape[0] - 1
        if t < 0:
            raise UserError(f"{where}: no frames")
        if actions.shape != (t,) or rewards.shape != (t,):
            raise UserError(f"{where}: {t + 1} frames need {t} actions and rewards, got "
                            f"{actions.shape} and {rewards.shape}")
        if t and not np.issubdtype(actions.dtype, np.integer):
            raise UserError(f"{where}: actions have dtype {actions.dtype}, expected integers")
        if t and (actions.min() < 0 or actions.max() >= self.num_actions):
            raise UserError(f"{where}: action {int(actions.max() if actions.max() >= self.num_actions else actions.min())} "
                            f"out of range [0, {self.num_actions})")
        rewards = rewards.astype(np.float32, copy=False)
        if not np.isfinite(rewards).all():
            raise UserError(f"{where}: rewards contain NaN or infinity")
        if terminated and truncated:
            raise UserError(f"{where}: an episode cannot be both terminated and truncated")
        if t == 0 and not terminated:
            return  # a lone first observation: nothing to learn from, nothing to count
        if self._shard is None:
            name = shard_name(self._next_shard_index)
            self._next_shard_index += 1
            sub = f".{name}" if self.append else name  # appended shards get renamed at close
            self._shard = _ShardWriter(self._work_dir / sub, self.frame_shape)
        flags = ((FLAG_TERMINATED if terminated else 0) | (FLAG_TRUNCATED if truncated else 0)
                 | (FLAG_PARTIAL_START if partial_start else 0))
        self._shard.add(frames, actions, rewards, flags)
        c = self._counts
        c["stored_episodes"] += 1
        c["transitions"] += t
        c["frames"] += t + 1
        if terminated:
            c["terminated"] += 1
        elif truncated:
            c["truncated"] += 1
        else:
            c["unfinished"] += 1
        if partial_start:
            c["partial_start"] += 1
        elif terminated or truncated:
            c["episodes"] += 1
            self._returns.append(float(np.sum(rewards, dtype=np.float64)))
        if self._shard.num_transitions >= self.shard_steps:
            self._finish_shard()

    @property
    def shards_written(self) -> int:
        """Shards finished so far (the next episode goes into shard number ``shards_written``
        or later)."""
        return len(self._shards)

    def end_shard(self) -> None:
        """End the current shard here: the next episode starts a new one (an import that knows
        its source's shard boundaries keeps them). Nothing happens when the shard is empty."""
        if self._shard is not None:
            self._finish_shard()

    def _finish_shard(self) -> None:
        assert self._shard is not None
        info = self._shard.finish()
        if self.append:
            info["name"] = info["name"].lstrip(".")
        self._shards.append(info)
        self._shard = None

    def close(self) -> Path:
        """Finish the last shard, write the manifest last and publish; returns ``root/<game>``."""
        if self._closed:
            return self.final_dir
        try:
            if self._shard is not None:
                self._finish_shard()
            manifest = dict(self.manifest)
            if self.append:
                old = self._old_manifest
                for s in self._shards:
                    os.rename(self._work_dir / f".{s['name']}", self._work_dir / s["name"])
                fsync_dir(self._work_dir)
                counts = {k: old["counts"].get(k, 0) + v for k, v in self._counts.items()}
                manifest["shards"] = old["shards"] + self._shards
                manifest["episode_returns"] = old["episode_returns"] + self._returns
                manifest["provenance"] = {**old["provenance"],
                                          "appended": [*old["provenance"].get("appended", []),
                                                       self.manifest["provenance"]]}
            else:
                counts = dict(self._counts)
                manifest["shards"] = self._shards
                manifest["episode_returns"] = self._returns
            if not manifest["shards"]:
                raise UserError(f"no transitions to write for {self.game}")
            counts["frames"] = sum(s["frames"] for s in manifest["shards"])  # with sentinels
            manifest["counts"] = counts
            manifest["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            # The full scan, before anyone can see the game (data verify runs the same).
            verify_game(GameData(self._work_dir, name=self.game, manifest=manifest), frames=False)
            fsync_dir(self._work_dir)
            atomic_write_json(self._work_dir / MANIFEST, manifest, indent=1, durable=True)
            if not self.append:  # overwrite=True was checked in __init__
                publish_game_dir(self._work_dir, self.final_dir)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._made_root = False
        self._release()
        return self.final_dir

    def abort(self) -> None:
        """Discard everything written; the destination is left as it was."""
        if self._closed:
            return
        self._closed = True
        if self._shard is not None:
            self._shard.abort()
        if self.append:
            for s in self._shards:  # renamed or not yet: none of them is in the manifest
                shutil.rmtree(self._work_dir / f".{s['name']}", ignore_errors=True)
                shutil.rmtree(self._work_dir / s["name"], ignore_errors=True)
            if self._shard is not None:
                shutil.rmtree(self._shard.directory, ignore_errors=True)
        else:
            shutil.rmtree(self._work_dir, ignore_errors=True)
        self._shard = None
        self._release()
