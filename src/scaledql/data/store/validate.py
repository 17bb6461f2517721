"""Store validation: the contents scan and the full scan of an opened game store.

The cheap structural checks that run whenever a game store is opened (manifest, array headers,
episode tables; no frame read) are ``format``'s. Here:

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

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.data.store.format import (
    FLAG_PARTIAL_START,
    FLAG_TERMINATED,
    FLAG_TRUNCATED,
    MANIFEST,
    finished_mask,
)
from scaledql.data.store.format import check_game_name as check_game_name  # for checkpoint.py
from scaledql.data.store.game import GameData, Shard
from scaledql.errors import UserError
from scaledql.suites import suite_attribute

MINATAR_ON = 255
SCAN_FRAMES = 1 << 18  # frames per piece of the full scan (~10 MB of temporaries)


def _scan_shard(shard: Shard, num_actions: int, read_frames: bool, binary: bool,
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
    if read_frames:  # decoding a compressed block checks it; binary frames' cells are checked too
        for lo, block in _frame_chunks(shard):
            bad = (block != 0) & (block != MINATAR_ON) if binary else None
            if bad is not None and bad.any():
                f = lo + int(np.flatnonzero(bad.reshape(len(block), -1).any(1))[0])
                raise UserError(f"{where}/frames: frame {f} holds values other than 0 and "
                                f"{MINATAR_ON} (MinAtar cells are 0 or {MINATAR_ON})")
    return ep_return[finished_mask(shard.ep_flags)]


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
        binary = suite_attribute(g.suite, "binary_frames", False)
        read = frames and (binary or g.frame_codec is not None)
        returns.append(_scan_shard(shard, g.num_actions, read, binary, where))
        all_flags.append(np.asarray(shard.ep_flags))
    flags = np.concatenate(all_flags)
    got = np.concatenate(returns)
    path = g.directory / MANIFEST
    listed = np.asarray(m["episode_returns"], np.float64)
    if len(listed) != len(got) or not np.allclose(listed, got, rtol=1e-6, atol=1e-4):
        raise UserError(f"{path}: episode_returns do not match the finished episodes' rewards "
                        f"({len(listed)} listed, {len(got)} finished episodes)")
    want = {"stored_episodes": len(flags),
            "terminated": int(((flags & FLAG_TERMINATED) != 0).sum()),
            "truncated": int(((flags & FLAG_TRUNCATED) != 0).sum()),
            "unfinished": int(((flags & (FLAG_TERMINATED | FLAG_TRUNCATED)) == 0).sum()),
            "partial_start": int(((flags & FLAG_PARTIAL_START) != 0).sum()), "episodes": len(got)}
    for key, value in want.items():
        if key in m["counts"] and m["counts"][key] != value:
            raise UserError(f"{path}: counts.{key} is {m['counts'][key]}, the episode tables "
                            f"say {value}")
    return {"game": g.name, "suite": g.suite, "transitions": g.num_transitions,
            "episodes": len(got), "shards": len(g.shards)}
