"""Store validation: cheap structural checks on every open, and a full scan before publishing.

*Cheap* (``store.GameData`` runs them whenever a game store is opened; no frame is read, time
grows with shards and episodes only):

* the manifest's types and ranges: suite known, game canonical for the suite and equal to the
  directory's name, positive action count, stack and frame shape of sane size, counts that are
  non-negative integers, finite episode returns as many as the finished episodes, shard names of
  the form ``shard_N`` (so a shard path can never leave the store);
* every ``.npy`` header: the exact dtype and shape the manifest implies, C order, and a file size
  equal to header + data (a truncated file, or a header claiming 10^12 entries, is refused
  before anything is mapped); no object dtypes (pickles);
* the episode tables of each shard: lengths non-negative, frames laid out back to back from frame
  1 (an episode of ``T`` steps holds ``T + 1`` frames), step offsets the running sum of lengths,
  totals equal to the manifest's, flags made of known bits and never terminated *and* truncated.

*Full* (``verify_game``: ``scaledql data verify``; every ``GameWriter`` and the DQN Replay import
before they publish a game): the cheap checks, then every step's action in
``[0, num_actions)``, every reward finite, zeros on the sentinel and final frames, returns-to-go and
episode returns equal to the rewards' sums, the manifest's counts and behaviour returns equal to
what the episode tables and flags say; ``data verify`` also reads every frame: MinAtar cells
must be 0 or 255 (the suite's convention for a set cell; see ``minari_io``). Compressed stores
(``frame_blocks``): the block table is checked on open (bounds rise from frame 1 at episode
starts, byte offsets cover ``frames.zst`` exactly); ``data verify`` decodes every block (zstd's
content checksum and the block's size are checked).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scaledql.errors import UserError

if TYPE_CHECKING:
    from scaledql.data.store import GameData, Shard

FLAG_TERMINATED, FLAG_TRUNCATED, FLAG_PARTIAL_START = 1, 2, 4
SHARD_NAME = re.compile(r"shard_\d{1,9}")
MAX_ACTIONS = 1 << 16
MAX_STACK = 64
MAX_FRAME_BYTES = 1 << 26
MAX_COUNT = 1 << 48  # far above any real store; keeps every product of counts exact in int64
MINATAR_ON = 255
COUNT_KEYS = ("transitions", "frames", "episodes", "terminated", "truncated", "unfinished",
              "partial_start", "stored_episodes")


# ------------------------------------------------------------------------------------------------
# The manifest


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: Any, where: str, lo: int = 0, hi: int = MAX_COUNT) -> int:
    if not _is_int(value) or not lo <= value <= hi:
        raise UserError(f"{where} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def check_game_name(suite: Any, game: Any, where: str) -> None:
    """``suite`` must be a known suite and ``game`` one of its canonical game names."""
    from scaledql.suites import SUITE_NAMES, game_names

    if suite not in SUITE_NAMES:
        raise UserError(f"{where}: unknown suite {suite!r} (suites: {', '.join(SUITE_NAMES)})")
    if not isinstance(game, str) or game not in game_names(suite):
        raise UserError(f"{where}: {game!r} is not a {suite} game (see `scaledql suites`)")


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
        from scaledql.data.frame_blocks import check_codec

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
# Array files


def open_array(path: Path, dtype: type | np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Memory-map a ``.npy`` file after checking its header against ``dtype`` and ``shape``
    (exact), C order, and its size against the header's; ``UserError`` otherwise."""
    dtype = np.dtype(dtype)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                hshape, fortran, hdtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                hshape, fortran, hdtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise UserError(f"{path}: missing (the dataset is incomplete)") from None
    except (OSError, ValueError, SyntaxError, TypeError) as exc:
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


# ------------------------------------------------------------------------------------------------
# Episode tables (cheap) and the full scan


def _first_mismatch(got: np.ndarray, want: np.ndarray) -> int:
    return int(np.flatnonzero(got != want)[0])


def check_episode_tables(shard: Shard, info: Mapping[str, Any], where: Path) -> None:
    """The shard's episode tables against each other and the manifest's totals (O(episodes))."""
    length = np.asarray(shard.ep_length)
    frames = int(info["frames"])
    if len(length) and (length.min() < 0 or length.max() >= frames):
        i = _first_mismatch((length < 0) | (length >= frames), np.zeros(len(length), bool))
        raise UserError(f"{where}: episode {i} has length {int(length[i])} (the shard holds "
                        f"{frames} frames)")
    start = np.asarray(shard.ep_frame_start)
    want_start = 1 + np.concatenate([[0], np.cumsum(length + 1)])[:len(length)].astype(np.int64)
    if not np.array_equal(start, want_start):
        i = _first_mismatch(start, want_start)
        raise UserError(f"{where}: ep_frame_start[{i}] is {int(start[i])}, expected "
                        f"{int(want_start[i])} (episodes lie back to back from frame 1)")
    offset = np.asarray(shard.ep_step_offset)
    want_offset = np.concatenate([[0], np.cumsum(length)])[:len(length)].astype(np.int64)
    if not np.array_equal(offset, want_offset):
        i = _first_mismatch(offset, want_offset)
        raise UserError(f"{where}: ep_step_offset[{i}] is {int(offset[i])}, expected "
                        f"{int(want_offset[i])} (the running sum of episode lengths)")
    if int(length.sum()) != int(info["transitions"]) or 1 + int((length + 1).sum()) != frames:
        raise UserError(f"{where}: episodes hold {int(length.sum())} steps in "
                        f"{1 + int((length + 1).sum())} frames, the manifest says "
                        f"{info['transitions']} in {frames}")
    flags = np.asarray(shard.ep_flags)
    bad = ((flags & ~np.uint8(7)) != 0) | ((flags & 3) == 3)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(f"{where}: episode {i} has flags {int(flags[i])} (bits: 1 terminated, "
                        "2 truncated, 4 partial start; never 1 and 2 together)")


def _scan_shard(shard: Shard, num_actions: int, read_frames: bool, minatar: bool,
                where: Path) -> np.ndarray:
    """Full checks of one shard; returns the finished episodes' returns (float64[])."""
    starts = np.asarray(shard.ep_frame_start)
    length = np.asarray(shard.ep_length)
    frames = len(shard.actions)
    total = int(length.sum())
    step = np.repeat(starts, length) + (np.arange(total) - np.repeat(
        np.asarray(shard.ep_step_offset), length))
    is_step = np.zeros(frames, bool)
    is_step[step] = True
    actions = np.asarray(shard.actions)
    a = actions[step]
    if total and (a.min() < 0 or a.max() >= num_actions):
        f = int(step[np.flatnonzero((a < 0) | (a >= num_actions))[0]])
        raise UserError(f"{where}/actions.npy: action {int(actions[f])} at frame {f} is out of "
                        f"range [0, {num_actions})")
    rewards = np.asarray(shard.rewards)
    if not np.isfinite(rewards).all():
        f = int(np.flatnonzero(~np.isfinite(rewards))[0])
        raise UserError(f"{where}/rewards.npy: reward {rewards[f]} at frame {f} is not finite")
    rtg = np.asarray(shard.returns_to_go)
    for name, arr in (("actions", actions), ("rewards", rewards), ("returns_to_go", rtg)):
        off = (arr != 0) & ~is_step
        if off.any():
            f = int(np.flatnonzero(off)[0])
            raise UserError(f"{where}/{name}.npy: frame {f} is a sentinel or final frame but "
                            f"holds {arr[f]} (expected 0)")
    csum = np.cumsum(rewards, dtype=np.float64)
    last = np.repeat(starts + length - 1, length)
    want = csum[last] - csum[step - 1]
    got = rtg[step].astype(np.float64)
    off = ~np.isclose(got, want, rtol=1e-5, atol=1e-3)
    if off.any():
        f = int(step[np.flatnonzero(off)[0]])
        raise UserError(f"{where}/returns_to_go.npy: frame {f} holds {rtg[f]}, the rewards sum "
                        f"to {want[np.flatnonzero(off)[0]]:.6g}")
    ep_sum = csum[starts + length - 1] - csum[starts - 1]
    ep_return = np.asarray(shard.ep_return)
    off = ~np.isclose(ep_return, ep_sum, rtol=1e-6, atol=1e-4)
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise UserError(f"{where}/ep_return.npy: episode {i} holds {ep_return[i]}, its rewards "
                        f"sum to {ep_sum[i]:.6g}")
    raw = isinstance(shard.frames, np.ndarray)  # else compressed blocks (no sentinel stored)
    if raw and np.asarray(shard.frames[0]).any():
        raise UserError(f"{where}/frames.npy: the sentinel frame 0 is not all zeros")
    if read_frames:  # decoding a compressed block checks it; MinAtar cells are checked too
        for lo, block in _frame_chunks(shard):
            bad = (block != 0) & (block != MINATAR_ON) if minatar else None
            if bad is not None and bad.any():
                f = lo + int(np.flatnonzero(bad.reshape(len(block), -1).any(1))[0])
                raise UserError(f"{where}/frames: frame {f} holds values other than 0 and "
                                f"{MINATAR_ON} (MinAtar cells are 0 or {MINATAR_ON})")
    flags = np.asarray(shard.ep_flags)
    finished = ((flags & 3) != 0) & ((flags & FLAG_PARTIAL_START) == 0)
    return ep_return[finished]


def _frame_chunks(shard: Shard) -> Iterator[tuple[int, np.ndarray]]:
    """(first frame index, uint8[n, C, H, W]) pieces of a shard's frames, ~16 MB each for raw
    frames, one block each for compressed ones (decoding checks each block's checksum)."""
    frames = shard.frames
    if isinstance(frames, np.ndarray):
        chunk = max(1, (1 << 24) // max(1, int(np.prod(frames.shape[1:]))))
        for lo in range(0, len(frames), chunk):
            yield lo, np.asarray(frames[lo:lo + chunk])
    else:
        for b in range(frames.num_blocks):
            yield int(frames.bounds[b]), frames.decode(b)


def verify_game(g: GameData, frames: bool = True) -> dict[str, Any]:
    """The full scan of an opened game store (the cheap checks ran when it was opened).
    ``frames``: also read every frame (MinAtar cells must be 0 or 255); writers, which built the
    frames themselves, skip that. Returns a summary; ``UserError`` naming the first problem."""
    m = g.manifest
    returns, all_flags = [], []
    for info, shard in zip(m["shards"], g.shards, strict=True):
        where = g.directory / info["name"]
        minatar = g.suite == "minatar"
        read = frames and (minatar or g.frame_codec is not None)
        returns.append(_scan_shard(shard, g.num_actions, read, minatar, where))
        all_flags.append(np.asarray(shard.ep_flags))
    flags = np.concatenate(all_flags)
    got = np.concatenate(returns)
    path = g.directory / "manifest.json"
    listed = np.asarray(m["episode_returns"], np.float64)
    if len(listed) != len(got) or not np.allclose(listed, got, rtol=1e-6, atol=1e-4):
        raise UserError(f"{path}: episode_returns do not match the finished episodes' rewards "
                        f"({len(listed)} listed, {len(got)} finished episodes)")
    want = {"stored_episodes": len(flags), "terminated": int(((flags & 1) != 0).sum()),
            "truncated": int(((flags & 2) != 0).sum()),
            "unfinished": int(((flags & 3) == 0).sum()),
            "partial_start": int(((flags & 4) != 0).sum()), "episodes": len(got)}
    for key, value in want.items():
        if key in m["counts"] and m["counts"][key] != value:
            raise UserError(f"{path}: counts.{key} is {m['counts'][key]}, the episode tables "
                            f"say {value}")
    return {"game": g.name, "suite": g.suite, "transitions": g.num_transitions,
            "episodes": len(got), "shards": len(g.shards)}
