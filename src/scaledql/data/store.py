"""The on-disk multi-game transition store: one directory per game, frames stored once, memory-mapped.

Layout
======

A dataset is a directory with one self-contained *game store* per game::

    DIR/
      Pong/                      one game, named as its suite spells it
        manifest.json            written LAST: a game directory without it is not a dataset
        shard_00000/             a shard holds whole episodes (an episode never spans shards)
          frames.npy             uint8[F, C, H, W]   frame 0 is all zeros (the padding sentinel)
          actions.npy            int32[F]            action taken in frame f (0 on final frames)
          rewards.npy            float32[F]          raw reward after that action (0 on final frames)
          returns_to_go.npy      float32[F]          undiscounted sum of rewards from f to the
                                                     episode's end, as stored
          ep_frame_start.npy     int64[E]            frame index of each episode's obs_0
          ep_length.npy          int64[E]            T: transitions in the episode (it has T+1 frames)
          ep_step_offset.npy     int64[E]            transitions in the shard before the episode
          ep_flags.npy           uint8[E]            bit 0 terminated, bit 1 truncated,
                                                     bit 2 partial start (began before the data)
          ep_return.npy          float64[E]          undiscounted sum of the episode's raw rewards
        shard_00001/ ...
      Breakout/ ...

Every ``.npy`` file is a plain NumPy array (no pickles) opened with ``np.load(mmap_mode='r')``,
so opening a store reads its manifest and the array headers only: time and memory do not grow
with the number of frames. An episode of ``T`` transitions occupies ``T + 1`` consecutive frames
``obs_0 .. obs_T`` (the final observation is kept so that truncated episodes can bootstrap; for
episodes imported from DQN Replay, which never stored it, a terminated episode's final frame is
all zeros and is never used because ``done`` stops the bootstrap). Frame stacks are built at
sample time, zero-padded before ``obs_0`` by pointing at the sentinel frame 0 of the shard, the
Dopamine convention. Rewards are stored raw (``rewards_clipped`` in the manifest says whether the
source had already clipped them, as DQN Replay did).

An episode is *terminated* (game over: no bootstrap), *truncated* (cut by a step cap or a gap in
the source: bootstrap from ``obs_T``) or *unfinished* (neither: the trailing episode a collection
or an import stopped in). *Finished* episodes are the terminated and truncated ones whose start is
in the data; their returns are the behaviour policy's episode returns in the manifest.

``manifest.json`` keys: ``schema`` ("scaledql.game_store"), ``schema_version``, ``suite``,
``game``, ``num_actions``, ``action_set``, ``frame_shape`` [C, H, W], ``stack``,
``rewards_clipped``, ``counts`` {transitions, frames, episodes, terminated, truncated,
unfinished, partial_start, stored_episodes}, ``episode_returns`` (finished episodes, in order),
``shards`` [{name, frames, transitions, episodes}], ``provenance`` {source, command, ...},
``created`` (UTC ISO time).

Atomic writes: a ``GameWriter`` builds the whole game store in a hidden temporary directory next
to its destination (``DIR/.Pong.partial``), fsyncs every file, writes the manifest last and
publishes the directory with one ``rename``. An interrupted write leaves only the hidden
directory, which the next writer for that game removes; ``open_dataset`` never lists it. Growing a
game (``append=True``) writes new shards under temporary names, then renames them and replaces the
manifest atomically (``os.replace``): shards that no manifest lists are invisible.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.errors import UserError

SCHEMA = "scaledql.game_store"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"

FLAG_TERMINATED = 1
FLAG_TRUNCATED = 2
FLAG_PARTIAL_START = 4

_NPY_HEADER_BYTES = 128  # fixed-size .npy header so frames.npy can be streamed, then finalized


# ------------------------------------------------------------------------------------------------
# Small file helpers


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version-1.0 ``.npy`` header padded to exactly ``_NPY_HEADER_BYTES`` bytes.

    A fixed size lets ``frames.npy`` be written as a stream of frames and its header rewritten
    with the final frame count at the end.
    """
    d = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
         "shape": tuple(int(s) for s in shape)}
    body = repr(d).encode("latin1")
    prefix = b"\x93NUMPY\x01\x00"
    pad = _NPY_HEADER_BYTES - len(prefix) - 2 - len(body) - 1
    if pad < 0:
        raise ValueError(f"shape {shape} too long for a fixed .npy header")
    header = body + b" " * pad + b"\n"
    return prefix + len(header).to_bytes(2, "little") + header


def validate_game_name(game: str) -> None:
    if not game or game.startswith(".") or "/" in game or "\\" in game or game in ("..",):
        raise UserError(f"invalid game name {game!r} for a dataset directory")


# ------------------------------------------------------------------------------------------------
# Writer


class _ShardWriter:
    """Streams the episodes of one shard to ``directory``; ``finish`` writes the small arrays."""

    def __init__(self, directory: Path, frame_shape: tuple[int, int, int]):
        self.directory = directory
        directory.mkdir(parents=True)
        self.frame_shape = frame_shape
        self._frames_file = open(directory / "frames.npy", "wb")  # noqa: SIM115 (closed in finish)
        self._frames_file.write(_npy_header(np.uint8, (0, *frame_shape)))
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
        f.write(_npy_header(np.uint8, (self.num_frames, *self.frame_shape)))
        f.flush()
        os.fsync(f.fileno())
        f.close()
        d = self.directory
        _save_npy(d / "actions.npy", np.concatenate(self._actions))
        _save_npy(d / "rewards.npy", np.concatenate(self._rewards))
        _save_npy(d / "returns_to_go.npy", np.concatenate(self._rtg))
        ep = self._episodes
        _save_npy(d / "ep_frame_start.npy", np.array([e[0] for e in ep], np.int64))
        _save_npy(d / "ep_length.npy", np.array([e[1] for e in ep], np.int64))
        _save_npy(d / "ep_step_offset.npy", np.array([e[2] for e in ep], np.int64))
        _save_npy(d / "ep_flags.npy", np.array([e[3] for e in ep], np.uint8))
        _save_npy(d / "ep_return.npy", np.array([e[4] for e in ep], np.float64))
        _fsync_dir(d)
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
        self._shard: _ShardWriter | None = None
        self._shards: list[dict] = []
        self._counts = dict.fromkeys(("transitions", "frames", "episodes", "terminated",
                                      "truncated", "unfinished", "partial_start",
                                      "stored_episodes"), 0)
        self._returns: list[float] = []
        self.manifest: dict[str, Any] = {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "suite": suite, "game": game,
            "num_actions": self.num_actions, "action_set": action_set,
            "frame_shape": list(self.frame_shape), "stack": int(stack),
            "rewards_clipped": bool(rewards_clipped),
            "provenance": dict(provenance or {"source": "unknown",
                                              "command": " ".join(sys.argv)}),
        }
        complete = (self.final_dir / MANIFEST).is_file()
        if self.final_dir.exists() and not complete and not self.final_dir.is_dir():
            raise UserError(f"{self.final_dir} exists and is not a game store directory")
        if append:
            if not complete:
                raise UserError(f"cannot append to {self.final_dir}: no complete game store there")
            old = read_manifest(self.final_dir)
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
            self.root.mkdir(parents=True, exist_ok=True)
            self._work_dir = self.root / f".{game}.partial"
            if self._work_dir.exists():  # left by an interrupted earlier write
                shutil.rmtree(self._work_dir)
            self._work_dir.mkdir()
            self._next_shard_index = 0

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
            name = f"shard_{self._next_shard_index:05d}"
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
                _fsync_dir(self._work_dir)
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
            _fsync_dir(self._work_dir)
            _write_json_atomic(self._work_dir / MANIFEST, manifest)
            if not self.append:
                trash = self.root / f".{self.game}.old"
                if trash.exists():
                    shutil.rmtree(trash)
                if self.final_dir.exists():  # overwrite=True was checked in __init__
                    os.rename(self.final_dir, trash)
                os.rename(self._work_dir, self.final_dir)
                _fsync_dir(self.root)
                shutil.rmtree(trash, ignore_errors=True)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.final_dir

    def abort(self) -> None:
        """Discard everything written; the destination is left as it was."""
        if self._closed:
            return
        self._closed = True
        if self._shard is not None:
            self._shard.abort()
        if self.append:
            for s in self._shards:
                shutil.rmtree(self._work_dir / f".{s['name']}", ignore_errors=True)
            if self._shard is not None:
                shutil.rmtree(self._shard.directory, ignore_errors=True)
        else:
            shutil.rmtree(self._work_dir, ignore_errors=True)
        self._shard = None


# ------------------------------------------------------------------------------------------------
# Reader


def read_manifest(game_dir: Path) -> dict:
    path = Path(game_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{game_dir} is not a game store (no {MANIFEST}; an interrupted write?)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise UserError(f"{path}: not a scaledql game-store manifest")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path}: schema version {manifest.get('schema_version')} is not "
                        f"{SCHEMA_VERSION}, the one this scaledql reads")
    missing = [k for k in ("suite", "game", "num_actions", "frame_shape", "stack", "counts",
                           "shards", "episode_returns") if k not in manifest]
    if missing:
        raise UserError(f"{path}: manifest lacks {', '.join(missing)}")
    return manifest


@dataclass
class Shard:
    """Memory-mapped arrays of one shard (see the module docstring for their meaning)."""

    frames: np.ndarray  # uint8[F, C, H, W], frame 0 zeros
    actions: np.ndarray  # int32[F]
    rewards: np.ndarray  # float32[F]
    returns_to_go: np.ndarray  # float32[F]
    ep_frame_start: np.ndarray  # int64[E]
    ep_length: np.ndarray  # int64[E]
    ep_step_offset: np.ndarray  # int64[E]
    ep_flags: np.ndarray  # uint8[E]
    ep_return: np.ndarray  # float64[E]
    num_transitions: int

    @classmethod
    def open(cls, directory: Path, info: dict, frame_shape: tuple[int, ...]) -> Shard:
        arrays = {}
        expect = {"frames": (np.uint8, (info["frames"], *frame_shape)),
                  "actions": (np.int32, (info["frames"],)),
                  "rewards": (np.float32, (info["frames"],)),
                  "returns_to_go": (np.float32, (info["frames"],)),
                  "ep_frame_start": (np.int64, (info["episodes"],)),
                  "ep_length": (np.int64, (info["episodes"],)),
                  "ep_step_offset": (np.int64, (info["episodes"],)),
                  "ep_flags": (np.uint8, (info["episodes"],)),
                  "ep_return": (np.float64, (info["episodes"],))}
        for name, (dtype, shape) in expect.items():
            path = directory / f"{name}.npy"
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except FileNotFoundError:
                raise UserError(f"{path}: missing (the dataset is incomplete)") from None
            except (OSError, ValueError) as exc:
                raise UserError(f"{path}: corrupt array file ({exc})") from None
            if arr.dtype != dtype or arr.shape != shape:
                raise UserError(f"{path}: holds {arr.dtype}{list(arr.shape)}, the manifest "
                                f"says {np.dtype(dtype)}{list(shape)}")
            arrays[name] = arr
        return cls(**arrays, num_transitions=int(info["transitions"]))


class GameData:
    """One game's store, opened read-only: manifest plus memory-mapped shards.

    Attributes: ``name``, ``manifest`` (dict), ``suite``, ``num_transitions`` (real steps),
    ``num_episodes`` (finished episodes), ``frame_shape`` (C, H, W), ``stack``, ``num_actions``,
    ``obs_shape`` (stack*C, H, W), ``episode_returns`` float64[num_episodes],
    ``rewards_clipped``, ``shards`` (list of ``Shard``), ``shard_step_offsets`` int64[len(shards)+1].
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        m = read_manifest(self.directory)
        self.manifest = m
        self.name: str = m["game"]
        self.suite: str = m["suite"]
        self.frame_shape: tuple[int, int, int] = tuple(int(x) for x in m["frame_shape"])
        self.stack: int = int(m["stack"])
        self.num_actions: int = int(m["num_actions"])
        self.rewards_clipped: bool = bool(m.get("rewards_clipped", False))
        self.obs_shape = (self.stack * self.frame_shape[0], *self.frame_shape[1:])
        self.shards = [Shard.open(self.directory / s["name"], s, self.frame_shape)
                       for s in m["shards"]]
        self.shard_step_offsets = np.concatenate(
            [[0], np.cumsum([s.num_transitions for s in self.shards])]).astype(np.int64)
        self.num_transitions = int(self.shard_step_offsets[-1])
        if self.num_transitions != int(m["counts"]["transitions"]):
            raise UserError(f"{self.directory / MANIFEST}: shards hold {self.num_transitions} "
                            f"transitions, counts say {m['counts']['transitions']}")
        self.episode_returns = np.asarray(m["episode_returns"], dtype=np.float64)
        self.num_episodes = len(self.episode_returns)

    def info(self) -> dict:
        """Summary for ``data info``: counts, behaviour returns, normalized behaviour score."""
        m = self.manifest
        returns = self.episode_returns
        out: dict[str, Any] = {
            "transitions": self.num_transitions,
            "episodes": self.num_episodes,
            "episode_returns": [float(r) for r in returns],
            "mean_return": float(returns.mean()) if len(returns) else None,
            "suite": self.suite,
            "num_actions": self.num_actions,
            "action_set": m.get("action_set"),
            "frame_shape": list(self.frame_shape),
            "stack": self.stack,
            "rewards_clipped": self.rewards_clipped,
            "shards": len(self.shards),
            "counts": dict(m["counts"]),
            "provenance": m.get("provenance", {}),
        }
        out["normalized_score"] = _behaviour_normalized(self.suite, self.name, returns)
        return out


def _behaviour_normalized(suite: str, game: str, returns: np.ndarray) -> float | None:
    """Mean behaviour return normalized by the suite's reference table (None if unknown/empty)."""
    if not len(returns):
        return None
    try:
        from scaledql.suites import scores
    except ImportError:  # the suites' score tables are optional for reading data
        return None
    try:
        if not scores.has_reference(suite, game):
            return None
        return float(scores.normalize(suite, game, float(returns.mean())))
    except (KeyError, ValueError, UserError):
        return None


class Dataset:
    """A multi-game dataset directory, opened read-only. ``games``: names in sorted order."""

    def __init__(self, root: Path, games: dict[str, GameData]):
        self.root = Path(root)
        self._games = games
        self.games: list[str] = list(games)

    def game(self, name: str) -> GameData:
        try:
            return self._games[name]
        except KeyError:
            raise UserError(f"{self.root}: no game {name!r} in this dataset "
                            f"(it has {', '.join(self.games)})") from None

    def info(self) -> dict:
        """The ``data info --json`` dict: ``{"games": {GAME: {...}}, "total_transitions": n}``."""
        games = {name: g.info() for name, g in self._games.items()}
        return {"root": str(self.root), "games": games,
                "total_transitions": sum(g["transitions"] for g in games.values())}


def list_games(root: Path) -> list[str]:
    """Names of the complete game stores under ``root`` (directories with a manifest)."""
    root = Path(root)
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file())


def open_dataset(root: Path, games: list[str] | None = None) -> Dataset:
    """Open ``root`` (a multi-game dataset directory) for reading; only manifests and headers are read.

    ``games``: the games to open (default: every complete game store). ``UserError`` when the
    directory, a requested game or any file is missing or corrupt. A single game directory
    (``DIR/Pong``) is accepted too and opens as a one-game dataset.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset directory {root} does not exist")
    if (root / MANIFEST).is_file():  # pointed at one game's store
        g = GameData(root)
        if games is not None and list(games) != [g.name]:
            raise UserError(f"{root} holds only game {g.name!r}")
        return Dataset(root.parent, {g.name: g})
    available = list_games(root)
    if games is None:
        if not available:
            partial = [p.name for p in root.iterdir() if p.name.endswith(".partial")]
            hint = " (only interrupted writes: " + ", ".join(partial) + ")" if partial else ""
            raise UserError(f"{root} holds no game stores{hint}")
        names = available
    else:
        names = list(games)
        unknown = [g for g in names if g not in available]
        if unknown:
            raise UserError(f"{root}: no complete game store for {', '.join(unknown)} "
                            f"(it has {', '.join(available) or 'none'})")
    return Dataset(root, {name: GameData(root / name) for name in names})
