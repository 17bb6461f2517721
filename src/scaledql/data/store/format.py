"""The game-store format: its layout, manifest and flags, and the reads, writes and cheap checks
that every module of a store shares (``game`` opens it, ``writer``, ``compress`` and the DQN
Replay import write it, ``validate`` scans it, ``frame_blocks`` compresses its frames). This
module imports none of them.

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

Every ``.npy`` file is a plain NumPy array (no pickles) opened with ``open_array`` (a checked
memory map), so opening a store reads its manifest and the array headers only: time and memory
do not grow with the number of frames. An episode of ``T`` transitions occupies ``T + 1``
consecutive frames ``obs_0 .. obs_T`` (the final observation is kept so that truncated episodes
can bootstrap; for episodes imported from DQN Replay, which never stored it, a terminated
episode's final frame is all zeros and is never used because ``done`` stops the bootstrap).
Frame stacks are built at sample time, zero-padded before ``obs_0`` by pointing at the sentinel
frame 0 of the shard, the Dopamine convention. Rewards are stored raw (``rewards_clipped`` in the
manifest says whether the source had already clipped them, as DQN Replay did).

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
(``frame_blocks.py``: the blocks; ``data/sampling/block_pool.py``: how they are sampled).

Cheap checks, here, run whenever a game store is opened (no frame is read; time grows with shards
and episodes only): the manifest's types and ranges (``check_manifest``: suite known, game
canonical for the suite and equal to the directory's name, sane geometry, non-negative integer
counts, finite episode returns as many as the finished episodes, shard names ``shard_N`` so that
a shard path never leaves the store); every ``.npy`` header against the manifest and the file's
size, no object dtypes (``open_array``); each shard's episode tables (``check_episode_tables``).
The full scan is ``validate``'s.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.atomic_files import fsync_dir
from scaledql.data.store.npy_header import read_header
from scaledql.errors import UserError

SCHEMA = "scaledql.game_store"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"

FLAG_TERMINATED = 1
FLAG_TRUNCATED = 2
FLAG_PARTIAL_START = 4

COUNT_KEYS = ("transitions", "frames", "episodes", "terminated", "truncated", "unfinished",
              "partial_start", "stored_episodes")
REQUIRED_KEYS = ("suite", "game", "num_actions", "frame_shape", "stack", "counts", "shards",
                 "episode_returns")
# A shard's arrays (files NAME.npy): dtype, and whether there is one entry per frame or per
# episode (frames.npy is [F, C, H, W]); the ep_* ones, in this order, make the episode table.
SHARD_ARRAYS: dict[str, tuple[type, str]] = {
    "frames": (np.uint8, "frame"), "actions": (np.int32, "frame"),
    "rewards": (np.float32, "frame"), "returns_to_go": (np.float32, "frame"),
    "ep_frame_start": (np.int64, "episode"), "ep_length": (np.int64, "episode"),
    "ep_step_offset": (np.int64, "episode"), "ep_flags": (np.uint8, "episode"),
    "ep_return": (np.float64, "episode")}
EPISODE_COLUMNS = ("ep_frame_start", "ep_length", "ep_step_offset", "ep_flags", "ep_return")
CODEC = "zstd"  # the one frame codec a compressed store's manifest may name (frame_blocks)

SHARD_NAME = re.compile(r"shard_\d{1,9}")
MAX_ACTIONS = 1 << 16
MAX_STACK = 64
MAX_FRAME_BYTES = 1 << 26
MAX_COUNT = 1 << 48  # far above any real store; keeps every product of counts exact in int64


def shard_name(index: int) -> str:
    return f"shard_{index:05d}"


def game_lock_path(root: Path, game: str) -> Path:
    """The lock every writer of ``root/<game>`` holds (GameWriter, the DQN Replay import)."""
    return Path(root) / f".{game}.lock"


# ------------------------------------------------------------------------------------------------
# Writing a shard's arrays


def save_npy(path: Path, array: np.ndarray) -> None:
    """``array`` as a plain ``.npy`` file, fsynced."""
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def save_shard_tables(directory: Path, actions: list[np.ndarray], rewards: list[np.ndarray],
                      returns_to_go: list[np.ndarray], episodes: Sequence[tuple]) -> None:
    """Write a shard's per-step arrays and its episode table (everything but its frames).

    episodes: (frame_start, length, step_offset, flags, return) per episode, in order.
    Every store writer (collection, Minari, DQN Replay import, compression) ends a shard here.
    """
    save_npy(directory / "actions.npy", np.concatenate(actions))
    save_npy(directory / "rewards.npy", np.concatenate(rewards))
    save_npy(directory / "returns_to_go.npy", np.concatenate(returns_to_go))
    for i, name in enumerate(EPISODE_COLUMNS):
        save_npy(directory / f"{name}.npy", np.array([e[i] for e in episodes],
                                                     SHARD_ARRAYS[name][0]))
    fsync_dir(directory)


# ------------------------------------------------------------------------------------------------
# The manifest


def read_manifest(game_dir: Path, name: str | None = None) -> dict:
    """A game store's manifest, its types and ranges checked (``checked_manifest``);
    ``name``: the game it must hold (default: the directory's name)."""
    path = Path(game_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{game_dir} is not a game store (no {MANIFEST}; an interrupted write?)") from None
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
        raise UserError(f"{path}: unreadable manifest ({str(exc)[:120]})") from None
    return checked_manifest(manifest, path, name if name is not None else Path(game_dir).name)


def provenance_of(manifest: dict) -> dict:
    """Where a checked manifest's data came from (its ``provenance`` table; ``{}``: none
    recorded). The one reader of that key: ``GameData.provenance`` and the writers that check
    what an earlier write left go through it."""
    return manifest.get("provenance") or {}


def checked_manifest(manifest: Any, path: Path, dir_name: str | None) -> dict:
    """``manifest`` if it is one this scaledql reads (``UserError`` naming the problem)."""
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise UserError(f"{path}: not a scaledql game-store manifest")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path}: schema version {manifest.get('schema_version')} is not "
                        f"{SCHEMA_VERSION}, the one this scaledql reads")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise UserError(f"{path}: manifest lacks {', '.join(missing)}")
    check_manifest(manifest, path, dir_name)
    return manifest


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: Any, where: str, lo: int = 0, hi: int = MAX_COUNT) -> int:
    if not _is_int(value) or not lo <= value <= hi:
        raise UserError(f"{where} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def check_game_name(suite: Any, game: Any, where: str) -> None:
    """``suite`` must be a known suite and ``game`` one of its canonical game names."""
    from scaledql.suites import SUITE_NAMES, game_names, get_suite

    if not isinstance(suite, str):
        raise UserError(f"{where}: suite must be a name, got {suite!r}")
    if suite not in SUITE_NAMES:
        try:
            get_suite(suite)  # a registered one may load here (SCALEDQL_PLUGINS, entry points)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
    if not isinstance(game, str) or game not in game_names(suite):
        raise UserError(f"{where}: {game!r} is not a {suite} game (see `scaledql suites`)")


def check_codec(codec: Any, where: str) -> None:
    """A manifest's ``frame_codec`` table: a codec this scaledql decodes and sane numbers."""
    if (not isinstance(codec, dict) or codec.get("name") != CODEC
            or not isinstance(codec.get("level"), int)
            or not isinstance(codec.get("block_frames"), int) or codec["block_frames"] < 1):
        raise UserError(f"{where}: frame_codec must be {{name: {CODEC!r}, level: int, "
                        f"block_frames: int >= 1}}, got {codec!r}")


def check_manifest(m: Mapping[str, Any], path: Path, dir_name: str | None) -> None:
    """Types and ranges of a manifest's fields (``UserError`` naming the first bad one).
    ``dir_name``: the game directory's name, which must be the manifest's game."""
    where = str(path)
    check_game_name(m["suite"], m["game"], where)
    if dir_name is not None and dir_name != m["game"]:
        raise UserError(f"{where}: the manifest is for game {m['game']!r}, its directory is "
                        f"named {dir_name!r}")
    _int(m["num_actions"], f"{where}: num_actions", 1, MAX_ACTIONS)
    _int(m["stack"], f"{where}: stack", 1, MAX_STACK)
    shape = m["frame_shape"]
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(_is_int(s) and s >= 1 for s in shape)
            or int(np.prod(shape, dtype=object)) > MAX_FRAME_BYTES):
        raise UserError(f"{where}: frame_shape must be 3 positive integers [C, H, W] of at most "
                        f"{MAX_FRAME_BYTES} bytes, got {shape!r}")
    if not isinstance(m.get("rewards_clipped", False), bool):
        raise UserError(f"{where}: rewards_clipped must be true or false")
    if not isinstance(m.get("provenance", {}), dict):
        raise UserError(f"{where}: provenance must be a table")
    counts = m["counts"]
    if not isinstance(counts, dict) or "transitions" not in counts or "episodes" not in counts:
        raise UserError(f"{where}: counts must be a table with transitions and episodes")
    for key in COUNT_KEYS:
        if key in counts:
            _int(counts[key], f"{where}: counts.{key}")
    returns = m["episode_returns"]
    if not isinstance(returns, list) or not all(
            (_is_int(r) or isinstance(r, float)) and np.isfinite(r) for r in returns):
        raise UserError(f"{where}: episode_returns must be a list of finite numbers")
    if len(returns) != counts["episodes"]:
        raise UserError(f"{where}: {len(returns)} episode returns for counts.episodes = "
                        f"{counts['episodes']}")
    compressed = "frame_codec" in m
    if compressed:
        check_codec(m["frame_codec"], where)
    shards = m["shards"]
    if not isinstance(shards, list) or not shards:
        raise UserError(f"{where}: shards must be a non-empty list")
    names = set()
    for i, s in enumerate(shards):
        if not isinstance(s, dict):
            raise UserError(f"{where}: shards[{i}] must be a table")
        name = s.get("name")
        if not isinstance(name, str) or not SHARD_NAME.fullmatch(name) or name in names:
            raise UserError(f"{where}: shards[{i}].name must be a distinct shard_N inside the "
                            f"store, got {name!r}")
        names.add(name)
        frames = _int(s.get("frames"), f"{where}: shards[{i}].frames", 1)
        _int(s.get("transitions"), f"{where}: shards[{i}].transitions", 0, frames - 1)
        _int(s.get("episodes"), f"{where}: shards[{i}].episodes", 0, frames - 1)
        if compressed:
            _int(s.get("blocks"), f"{where}: shards[{i}].blocks", 0, frames - 1)
    if "frames" in counts and counts["frames"] != sum(s["frames"] for s in shards):
        raise UserError(f"{where}: counts.frames is {counts['frames']}, the shards hold "
                        f"{sum(s['frames'] for s in shards)}")


# ------------------------------------------------------------------------------------------------
# Array files and episode tables


def open_array(path: Path, dtype: type | np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Memory-map a ``.npy`` file after checking its header against ``dtype`` and ``shape``
    (exact), C order, and its size against the header's; ``UserError`` otherwise."""
    dtype = np.dtype(dtype)
    try:
        with open(path, "rb") as f:
            hshape, fortran, hdtype = read_header(f)
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise UserError(f"{path}: missing (the dataset is incomplete)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: corrupt array file ({str(exc)[:120]})") from None
    if hdtype != dtype or tuple(hshape) != tuple(shape):
        raise UserError(f"{path}: holds {hdtype}{list(hshape)}, the manifest says "
                        f"{dtype}{list(shape)}")
    if fortran and len(shape) > 1:
        raise UserError(f"{path}: Fortran-order array (the store holds C-order arrays)")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if size != offset + nbytes:
        what = "truncated" if size < offset + nbytes else "has trailing bytes"
        raise UserError(f"{path}: {what}: {size} bytes for a {dtype}{list(shape)} array "
                        f"({offset + nbytes} expected)")
    if nbytes == 0:
        out = np.zeros(shape, dtype)
        out.flags.writeable = False
        return out
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))


def _first_mismatch(got: np.ndarray, want: np.ndarray) -> int:
    return int(np.flatnonzero(got != want)[0])


def check_episode_tables(tables: Mapping[str, np.ndarray], info: Mapping[str, Any],
                         where: Path) -> None:
    """A shard's episode tables (``EPISODE_COLUMNS`` → array) against each other and the
    manifest's totals ``info`` (O(episodes))."""
    length = np.asarray(tables["ep_length"])
    frames = int(info["frames"])
    if len(length) and (length.min() < 0 or length.max() >= frames):
        i = _first_mismatch((length < 0) | (length >= frames), np.zeros(len(length), bool))
        raise UserError(f"{where}: episode {i} has length {int(length[i])} (the shard holds "
                        f"{frames} frames)")
    start = np.asarray(tables["ep_frame_start"])
    want_start = 1 + np.concatenate([[0], np.cumsum(length + 1)])[:len(length)].astype(np.int64)
    if not np.array_equal(start, want_start):
        i = _first_mismatch(start, want_start)
        raise UserError(f"{where}: ep_frame_start[{i}] is {int(start[i])}, expected "
                        f"{int(want_start[i])} (episodes lie back to back from frame 1)")
    offset = np.asarray(tables["ep_step_offset"])
    want_offset = np.concatenate([[0], np.cumsum(length)])[:len(length)].astype(np.int64)
    if not np.array_equal(offset, want_offset):
        i = _first_mismatch(offset, want_offset)
        raise UserError(f"{where}: ep_step_offset[{i}] is {int(offset[i])}, expected "
                        f"{int(want_offset[i])} (the running sum of episode lengths)")
    if int(length.sum()) != int(info["transitions"]) or 1 + int((length + 1).sum()) != frames:
        raise UserError(f"{where}: episodes hold {int(length.sum())} steps in "
                        f"{1 + int((length + 1).sum())} frames, the manifest says "
                        f"{info['transitions']} in {frames}")
    flags = np.asarray(tables["ep_flags"])
    known = FLAG_TERMINATED | FLAG_TRUNCATED | FLAG_PARTIAL_START
    ended = FLAG_TERMINATED | FLAG_TRUNCATED
    bad = ((flags & ~np.uint8(known)) != 0) | ((flags & ended) == ended)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(f"{where}: episode {i} has flags {int(flags[i])} (bits: 1 terminated, "
                        "2 truncated, 4 partial start; never 1 and 2 together)")


def finished_mask(flags: np.ndarray) -> np.ndarray:
    """bool[E]: the finished episodes of an ``ep_flags`` table (terminated or truncated, their
    start in the data): those whose returns the manifest lists as ``episode_returns``."""
    flags = np.asarray(flags)
    return (((flags & (FLAG_TERMINATED | FLAG_TRUNCATED)) != 0)
            & ((flags & FLAG_PARTIAL_START) == 0))
