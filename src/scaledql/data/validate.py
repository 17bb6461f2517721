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

*Contents* (``verify_game(frames=False)``: ``open_dataset(contents=True)``, which training,
fine-tuning, the data card and the Minari export use, so that no store's garbage reaches a
learner; every ``GameWriter`` and the DQN Replay import before they publish a game) and *full*
(``verify_game``: ``scaledql data verify``): the cheap checks, then every step's action in
``[0, num_actions)``, every reward finite, zeros on the sentinel and final frames, returns-to-go and
episode returns equal to the rewards' sums, the manifest's counts and behaviour returns equal to
what the episode tables and flags say; ``data verify`` also reads every frame: MinAtar cells
must be 0 or 255 (the suite's convention for a set cell; see ``minari_io``). Compressed stores
(``frame_blocks``): the block table is checked on open (bounds rise from frame 1 at episode
starts, byte offsets cover ``frames.zst`` exactly); ``data verify`` decodes every block (zstd's
content checksum and the block's size are checked).

The contents scan is vectorized over the small arrays (actions, rewards, returns-to-go,
episode tables; of the frames only the sentinel), in pieces of whole episodes: ~18 ns per
transition and at most ~10 MB of temporaries, whatever the store's size, measured by
``benchmarks/contents_check.py`` (``benchmarks/README.md``); too little to be worth a cache.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scaledql.data.npy_header import read_header
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
SCAN_FRAMES = 1 << 18  # frames per piece of the full scan (~10 MB of temporaries)
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
    """Full checks of one shard; returns the finished episodes' returns (float64[]).

    Vectorized over whole arrays, never per step in Python: the cheap checks already proved
    the episodes lie back to back from frame 1, so the frames that are not steps are exactly
    frame 0 and each episode's final frame, and every per-step sum is a difference of one
    running sum, taken over pieces of ``SCAN_FRAMES`` frames of whole episodes (memory stays
    bounded whatever the shard's size)."""
    starts = np.asarray(shard.ep_frame_start, np.int64)
    length = np.asarray(shard.ep_length, np.int64)
    ends = starts + length  # each episode's final frame
    off = np.concatenate([[0], ends])  # the frames that are not steps
    actions = np.asarray(shard.actions)
    if len(actions) and (actions.min() < 0 or actions.max() >= num_actions):
        bad = (actions < 0) | (actions >= num_actions)
        bad[off] = False  # a non-zero action there is reported below, as such
        if bad.any():
            f = int(np.flatnonzero(bad)[0])
            raise UserError(f"{where}/actions.npy: action {int(actions[f])} at frame {f} is "
                            f"out of range [0, {num_actions})")
    rewards = np.asarray(shard.rewards)
    if not np.isfinite(rewards).all():
        f = int(np.flatnonzero(~np.isfinite(rewards))[0])
        raise UserError(f"{where}/rewards.npy: reward {rewards[f]} at frame {f} is not finite")
    rtg = np.asarray(shard.returns_to_go)
    for name, arr in (("actions", actions), ("rewards", rewards), ("returns_to_go", rtg)):
        nonzero = arr[off] != 0
        if nonzero.any():
            f = int(off[np.flatnonzero(nonzero)[0]])
            raise UserError(f"{where}/{name}.npy: frame {f} is a sentinel or final frame but "
                            f"holds {arr[f]} (expected 0)")
    ep_sum = np.empty(len(starts), np.float64)
    i0 = 0
    while i0 < len(starts):  # pieces of whole episodes: frames [a, b)
        a = int(starts[i0])
        i1 = max(i0 + 1, int(np.searchsorted(ends, a + SCAN_FRAMES, side="left")))
        b = int(ends[i1 - 1]) + 1
        csum = np.zeros(b - a + 1, np.float64)  # csum[k]: rewards of frames [a, a + k)
        np.cumsum(rewards[a:b], dtype=np.float64, out=csum[1:])
        total = csum[ends[i0:i1] - a]  # each episode's rewards up to its final frame
        ep_sum[i0:i1] = total - csum[starts[i0:i1] - a]
        want = np.repeat(total, length[i0:i1] + 1)
        want -= csum[:-1]
        got = rtg[a:b]
        # written as "not within" so that a NaN return-to-go counts as wrong
        off_by = ~(np.abs(got - want) <= 1e-3 + 1e-5 * np.abs(want))
        if off_by.any():
            k = int(np.flatnonzero(off_by)[0])
            raise UserError(f"{where}/returns_to_go.npy: frame {a + k} holds {rtg[a + k]}, the "
                            f"rewards sum to {want[k]:.6g}")
        i0 = i1
    ep_return = np.asarray(shard.ep_return)
    off_by = ~(np.abs(ep_return - ep_sum) <= 1e-4 + 1e-6 * np.abs(ep_sum))
    if off_by.any():
        i = int(np.flatnonzero(off_by)[0])
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
