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
``created`` (UTC ISO time); a compressed store (``scaledql data compress``) adds
``frame_codec`` and keeps its frames as zstd blocks of whole episodes instead of ``frames.npy``
(``frame_blocks.py``: the format; ``pool.py``: how it is sampled).

Checks: opening a game store runs ``validate``'s cheap structural checks (manifest types and
ranges, shard paths inside the store, array headers against the manifest and the file sizes,
episode tables); ``open_dataset(contents=True)``, for whatever learns from the data, also
scans the small arrays; ``GameWriter.close`` runs the full scan (``validate.verify_game``)
before it publishes. One writer per game: ``DIR/.GAME.lock`` (``io.acquire_lock``) is held from the
writer's creation to its publication; a second writer gets one line naming the first.

Atomic writes: a ``GameWriter`` (``writer.py``) builds the whole game store in a hidden
temporary directory next to its destination (``DIR/.Pong.partial``), fsyncs every file, writes
the manifest last and publishes the directory with one ``rename``. An interrupted write leaves only the hidden
directory, which the next writer for that game removes; ``open_dataset`` never lists it. Growing a
game (``append=True``) writes new shards under temporary names, then renames them and replaces the
manifest atomically (``os.replace``): shards that no manifest lists are invisible.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.data.frame_blocks import CompressedFrames
from scaledql.data.validate import check_episode_tables, check_manifest, open_array, verify_game
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


def save_shard_tables(directory: Path, actions: list[np.ndarray], rewards: list[np.ndarray],
                      returns_to_go: list[np.ndarray], episodes: list[tuple]) -> None:
    """Write a shard's per-step arrays and its episode table (everything but ``frames.npy``).

    episodes: (frame_start, length, step_offset, flags, return) per episode, in order.
    Every store writer (collection, Minari, DQN Replay import) ends a shard here.
    """
    _save_npy(directory / "actions.npy", np.concatenate(actions))
    _save_npy(directory / "rewards.npy", np.concatenate(rewards))
    _save_npy(directory / "returns_to_go.npy", np.concatenate(returns_to_go))
    columns = (("ep_frame_start", np.int64), ("ep_length", np.int64),
               ("ep_step_offset", np.int64), ("ep_flags", np.uint8), ("ep_return", np.float64))
    for i, (name, dtype) in enumerate(columns):
        _save_npy(directory / f"{name}.npy", np.array([e[i] for e in episodes], dtype))
    _fsync_dir(directory)


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


def game_lock_path(root: Path, game: str) -> Path:
    """The lock every writer of ``root/<game>`` holds (GameWriter, the DQN Replay import)."""
    return Path(root) / f".{game}.lock"


def validate_game_name(game: str) -> None:
    if not game or game.startswith(".") or "/" in game or "\\" in game or game in ("..",):
        raise UserError(f"invalid game name {game!r} for a dataset directory")


# ------------------------------------------------------------------------------------------------
# Reader


def read_manifest(game_dir: Path, name: str | None = None) -> dict:
    """A game store's manifest, its types and ranges checked (``validate.check_manifest``);
    ``name``: the game it must hold (default: the directory's name)."""
    path = Path(game_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{game_dir} is not a game store (no {MANIFEST}; an interrupted write?)") from None
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
        raise UserError(f"{path}: unreadable manifest ({str(exc)[:120]})") from None
    return checked_manifest(manifest, path, name if name is not None else Path(game_dir).name)


def checked_manifest(manifest: Any, path: Path, dir_name: str | None) -> dict:
    """``manifest`` if it is one this scaledql reads (``UserError`` naming the problem)."""
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise UserError(f"{path}: not a scaledql game-store manifest")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path}: schema version {manifest.get('schema_version')} is not "
                        f"{SCHEMA_VERSION}, the one this scaledql reads")
    missing = [k for k in ("suite", "game", "num_actions", "frame_shape", "stack", "counts",
                           "shards", "episode_returns") if k not in manifest]
    if missing:
        raise UserError(f"{path}: manifest lacks {', '.join(missing)}")
    check_manifest(manifest, path, dir_name)
    return manifest


@dataclass
class Shard:
    """Memory-mapped arrays of one shard (see the module docstring for their meaning)."""

    frames: np.ndarray | CompressedFrames  # uint8[F, C, H, W], frame 0 zeros (or zstd blocks)
    actions: np.ndarray  # int32[F]
    rewards: np.ndarray  # float32[F]
    returns_to_go: np.ndarray  # float32[F]
    ep_frame_start: np.ndarray  # int64[E]
    ep_length: np.ndarray  # int64[E]
    ep_step_offset: np.ndarray  # int64[E]
    ep_flags: np.ndarray  # uint8[E]
    ep_return: np.ndarray  # float64[E]
    num_transitions: int
    directory: Path | None = None

    @classmethod
    def open(cls, directory: Path, info: dict, frame_shape: tuple[int, int, int],
             compressed: bool = False) -> Shard:
        """Map the shard's arrays; headers, file sizes and episode tables are checked
        (``validate``), so a damaged shard is one ``UserError`` here, not a wrong sample later.
        ``compressed``: frames are zstd blocks (``frame_blocks``), their block table checked."""
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
        if not directory.is_dir():
            raise UserError(f"{directory}: missing shard directory (the dataset is incomplete)")
        if compressed:
            del expect["frames"]
        for name, (dtype, shape) in expect.items():
            arrays[name] = open_array(directory / f"{name}.npy", dtype, shape)
        if compressed:
            arrays["frames"] = CompressedFrames(directory, info["frames"], frame_shape,
                                                info["blocks"], np.asarray(arrays["ep_frame_start"]))
        shard = cls(**arrays, num_transitions=int(info["transitions"]), directory=directory)
        check_episode_tables(shard, info, directory)
        return shard


class GameData:
    """One game's store, opened read-only: manifest plus memory-mapped shards.

    Attributes: ``name``, ``manifest`` (dict), ``suite``, ``num_transitions`` (real steps),
    ``num_episodes`` (finished episodes), ``frame_shape`` (C, H, W), ``stack``, ``num_actions``,
    ``obs_shape`` (stack*C, H, W), ``episode_returns`` float64[num_episodes],
    ``rewards_clipped``, ``shards`` (list of ``Shard``), ``shard_step_offsets`` int64[len(shards)+1],
    ``frame_codec`` (dict, or None for raw frames).
    """

    def __init__(self, directory: Path, *, name: str | None = None, manifest: dict | None = None):
        """Open ``directory``; ``name``: the game it must hold (default: the directory's name);
        ``manifest``: use this (checked) manifest instead of the directory's file."""
        self.directory = Path(directory)
        dir_name = name if name is not None else self.directory.name
        m = (read_manifest(self.directory, dir_name) if manifest is None
             else checked_manifest(manifest, self.directory / MANIFEST, dir_name))
        self.manifest = m
        self.name: str = m["game"]
        self.suite: str = m["suite"]
        self.frame_shape: tuple[int, int, int] = tuple(int(x) for x in m["frame_shape"])
        self.stack: int = int(m["stack"])
        self.num_actions: int = int(m["num_actions"])
        self.rewards_clipped: bool = bool(m.get("rewards_clipped", False))
        self.obs_shape = (self.stack * self.frame_shape[0], *self.frame_shape[1:])
        self.frame_codec: dict | None = m.get("frame_codec")  # None: raw frames.npy
        self.shards = [Shard.open(self.directory / s["name"], s, self.frame_shape,
                                  compressed=self.frame_codec is not None) for s in m["shards"]]
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
            "frame_codec": self.frame_codec,
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


def data_identity(data: list[GameData]) -> str:
    """A fingerprint of the games a run trains on: their manifests (counts, shards, episode
    returns, provenance). A resumed run must see the same data, wherever it now lies; reports
    name the data of each run by it."""
    manifests = {d.name: d.manifest for d in data}
    return hashlib.sha256(json.dumps(manifests, sort_keys=True, default=str).encode()).hexdigest()


def list_games(root: Path) -> list[str]:
    """Names of the complete game stores under ``root`` (directories with a manifest)."""
    root = Path(root)
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file())


def open_dataset(root: Path, games: list[str] | None = None, *,
                 contents: bool = False) -> Dataset:
    """Open ``root`` (a multi-game dataset directory) for reading; only manifests and headers are read.

    ``games``: the games to open (default: every complete game store). ``UserError`` when the
    directory, a requested game or any file is missing or corrupt. A single game directory
    (``DIR/Pong``) is accepted too and opens as a one-game dataset.

    ``contents``: also scan what the small arrays hold (``validate.verify_game`` without the
    frames), as whatever learns from or scores the data needs (training, fine-tuning, the data
    card, export): ~18 ms per million transitions (``benchmarks/contents_check.py``).
    """
    dataset = _open_dataset(Path(root), games)
    if contents:
        for name in dataset.games:
            verify_game(dataset.game(name), frames=False)
    return dataset


def _open_dataset(root: Path, games: list[str] | None) -> Dataset:
    if not root.is_dir():
        raise UserError(f"dataset directory {root} " + (
            "is not a directory" if root.exists() else "does not exist"))
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


def __getattr__(name: str) -> Any:
    """``store.GameWriter`` (where it used to live) is ``writer.GameWriter``."""
    if name == "GameWriter":
        from scaledql.data.writer import GameWriter

        return GameWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
