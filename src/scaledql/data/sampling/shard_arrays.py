"""The arrays a sampler reads per shard: a raw shard's memory maps as plain ndarrays, or a
resident block of ``block_pool.py`` in the same shape."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scaledql.data.store.game import Shard


@dataclass
class ShardArrays:
    """Plain-ndarray views of one shard's memory maps (no copy; skips np.memmap's per-slice
    Python overhead)."""

    frames: np.ndarray  # uint8[F, C, H, W]
    actions: np.ndarray  # int32[F]
    rewards: np.ndarray  # float32[F]
    returns_to_go: np.ndarray  # float32[F]

    @classmethod
    def of(cls, shard: Shard) -> ShardArrays:
        return cls(frames=np.asarray(shard.frames), actions=np.asarray(shard.actions),
                   rewards=np.asarray(shard.rewards), returns_to_go=np.asarray(shard.returns_to_go))
