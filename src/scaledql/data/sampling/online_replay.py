"""An in-memory ring replay for *online* learners (collection, online fine-tuning).

Offline training reads the on-disk store (``store.py``/``sampler.py``); an online learner needs a
buffer it can write and sample in the same loop, before anything is published. Each slot keeps
the stacked observation and only the *newest* frame of the next observation (the rest of the next
stack is the current stack shifted by one), so a slot costs (S + 1)·C·H·W bytes.

``save``/``load`` keep the filled slots, the cursor and the sampling RNG in one compressed
``.npz`` (plain arrays, no pickles), written atomically: a resumed online run continues with
the same replay contents and the same sample sequence.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scaledql.atomic_files import atomic_output
from scaledql.data.sampling.sampler import TransitionBatch


class RingReplay:
    """Uniform 1-step replay. obs: uint8[S*C, H, W]; next_frame: uint8[C, H, W]."""

    def __init__(self, capacity: int, obs_shape: tuple[int, int, int], frame_channels: int,
                 reward_clip: float | None = 1.0, gamma: float = 0.99, seed: int = 0,
                 game_id: int = 0):
        c, h, w = obs_shape
        self.capacity = int(capacity)
        self.frame_channels = frame_channels
        self.reward_clip = reward_clip
        self.gamma = gamma
        self.game_id = game_id  # the head this game's samples train
        self.obs = np.zeros((capacity, c, h, w), np.uint8)
        self.next_frame = np.zeros((capacity, frame_channels, h, w), np.uint8)
        self.action = np.zeros(capacity, np.int64)
        self.reward = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.size = 0
        self.cursor = 0
        self.rng = np.random.default_rng(seed)

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
            terminated: np.ndarray, next_obs: np.ndarray) -> None:
        """Add a batch of N transitions (obs/next_obs: uint8[N, S*C, H, W])."""
        n = len(obs)
        idx = (self.cursor + np.arange(n)) % self.capacity
        self.obs[idx] = obs
        self.next_frame[idx] = next_obs[:, -self.frame_channels:]
        self.action[idx] = action
        self.reward[idx] = reward
        self.terminated[idx] = terminated
        self.cursor = int((self.cursor + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int) -> TransitionBatch:
        idx = self.rng.integers(0, self.size, size=batch_size)
        obs = self.obs[idx]
        next_obs = np.concatenate([obs[:, self.frame_channels:], self.next_frame[idx]], axis=1)
        reward = self.reward[idx]
        if self.reward_clip is not None:
            reward = np.clip(reward, -self.reward_clip, self.reward_clip)
        return TransitionBatch(
            obs=obs, action=self.action[idx], reward=reward.astype(np.float32),
            discount=np.full(batch_size, self.gamma, np.float32), done=self.terminated[idx],
            next_obs=next_obs, game_id=np.full(batch_size, self.game_id, np.int64),
        )

    # -- saving --------------------------------------------------------------------------------
    _ARRAYS = ("obs", "next_frame", "action", "reward", "terminated")

    def save(self, path: Path) -> None:
        """Write the filled slots, cursor, capacity and RNG state to ``path`` (atomically)."""
        meta = {"capacity": self.capacity, "size": self.size, "cursor": self.cursor,
                "game_id": self.game_id, "rng": self.rng.bit_generator.state}
        with atomic_output(Path(path), fsync=True) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(meta)),
                                **{k: getattr(self, k)[:self.size] for k in self._ARRAYS})

    def load(self, path: Path) -> None:
        """Restore what ``save`` wrote into this (same-shaped) replay."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta["capacity"] != self.capacity or z["obs"].shape[1:] != self.obs.shape[1:]:
                raise ValueError(f"{path}: a replay of capacity {meta['capacity']} and obs "
                                 f"{z['obs'].shape[1:]}, not {self.capacity} and {self.obs.shape[1:]}")
            for k in self._ARRAYS:
                getattr(self, k)[:meta["size"]] = z[k]
        self.size, self.cursor, self.game_id = meta["size"], meta["cursor"], meta["game_id"]
        self.rng.bit_generator.state = meta["rng"]
