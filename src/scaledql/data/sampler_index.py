"""The samplers' per-game episode index and per-shard arrays (``sampler.py`` draws from them).

``_GameIndex``: a game's episodes over all its shards in step order, a few numbers each, so a
batch's steps are located with one ``searchsorted`` per game; ``_ShardArrays``: the arrays a
sampler reads per shard (a raw shard's memory maps, or a resident block of ``pool.py``);
``fraction_of``: what ``data_fraction`` keeps of a game.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaledql.data.format import FLAG_TERMINATED
from scaledql.data.game import GameData, Shard
from scaledql.errors import UserError


@dataclass
class _ShardArrays:
    """Plain-ndarray views of one shard's memory maps (no copy; skips np.memmap's per-slice
    Python overhead)."""

    frames: np.ndarray  # uint8[F, C, H, W]
    actions: np.ndarray  # int32[F]
    rewards: np.ndarray  # float32[F]
    returns_to_go: np.ndarray  # float32[F]

    @classmethod
    def of(cls, shard: Shard) -> _ShardArrays:
        return cls(frames=np.asarray(shard.frames), actions=np.asarray(shard.actions),
                   rewards=np.asarray(shard.rewards), returns_to_go=np.asarray(shard.returns_to_go))


@dataclass
class _GameIndex:
    """One game's non-empty episodes over all its shards, concatenated in step order (arrays [E]).

    Built once from the shards' small episode tables: memory grows with the number of episodes
    (a few dozen bytes each), not with frames.
    """

    step_offset: np.ndarray  # int64 game-wide index of the episode's first step
    frame_start: np.ndarray  # int64 shard-local frame index of the episode's obs_0
    length: np.ndarray  # int64 transitions in the episode (>= 1)
    terminated: np.ndarray  # bool: the episode ended in a terminal state
    shard: np.ndarray  # int64 sampler-wide shard id (index into _MultiGameSampler._shards)

    @classmethod
    def build(cls, game: GameData, first_shard_id: int) -> _GameIndex:
        parts = []
        for si, sh in enumerate(game.shards):
            length = np.asarray(sh.ep_length, np.int64)
            keep = length > 0  # a lone terminal frame holds no step to sample
            parts.append((np.asarray(sh.ep_step_offset, np.int64)[keep] + game.shard_step_offsets[si],
                          np.asarray(sh.ep_frame_start, np.int64)[keep], length[keep],
                          (np.asarray(sh.ep_flags)[keep] & FLAG_TERMINATED) != 0,
                          np.full(int(keep.sum()), first_shard_id + si, np.int64)))
        return cls(*(np.concatenate(cols) for cols in zip(*parts, strict=True)))

    def first(self, count: int) -> _GameIndex:
        """The first ``count`` episodes only."""
        return _GameIndex(self.step_offset[:count], self.frame_start[:count],
                          self.length[:count], self.terminated[:count], self.shard[:count])

    def episodes_for(self, fraction: float) -> int:
        """How many first episodes hold at least ``fraction`` of the transitions (>= 1)."""
        cumulative = np.cumsum(self.length)
        # A tolerance: 0.3 of 20 transitions is 6, though 0.3 * 20 is 6.000000000000001.
        need = fraction * float(cumulative[-1]) * (1 - 1e-12)
        return max(1, int(np.searchsorted(cumulative, need, side="left")) + 1)


def check_fraction(fraction: float) -> float:
    if not (np.isfinite(fraction) and 0.0 < fraction <= 1.0):
        raise UserError(f"data fraction must be in (0, 1], got {fraction}")
    return float(fraction)


def fraction_of(game: GameData, fraction: float) -> dict[str, int]:
    """What ``data_fraction`` keeps of one game: episodes and transitions kept, and the totals
    (episodes counted as the sampler does: those with at least one transition)."""
    index = _GameIndex.build(game, 0)
    kept = index.episodes_for(check_fraction(fraction)) if len(index.length) else 0
    return {"episodes": kept, "transitions": int(index.length[:kept].sum()),
            "total_episodes": len(index.length), "total_transitions": game.num_transitions}
