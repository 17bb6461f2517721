"""Multi-game batches from a memory-mapped store: n-step transitions and sub-trajectories.

Both samplers draw, per batch, a fixed share of samples from each game (uniform over games by
default, ``game_weights`` to change it; the share is ``floor(B * w)`` per game and the remainder
drawn at random), then, within a game, a transition uniformly over all its stored steps. A sample
never straddles two episodes: n-step returns stop at the episode's last transition, frame stacks
are zero-padded before the episode's first frame (the Dopamine convention), trajectories end at
the episode's end (``mask`` 0 after it).

Speed: everything is vectorized NumPy over the whole batch. Each game's episode tables of all its
shards are concatenated once, when the sampler is built, into one global index (a few numbers per
episode), so locating a batch's steps is one ``searchsorted`` per game, and the n-step arithmetic,
stack indices, discounts and done flags are computed once for the whole batch. Only what reads
per-shard files (frames, actions, rewards) loops over the (game, shard) runs of rows, a handful of
calls each; frames are gathered with ``np.take`` from the memory map straight into the output
array (no intermediate copy), in ascending frame order (steps are sorted) for locality. Batch
rows are ordered by game, then by step (hence by shard); ``game_id`` says which game each row
is from.

Limited data (``data_fraction`` < 1, offline fine-tuning with 1% or 10% of a game): each game
keeps only its first episodes in time order, whole, as few as hold at least that share of its
transitions (at least one episode) — the way the DQN Replay subsets are "the first X%" of a run.
By transitions rather than by episode count, because a learning behaviour policy's episodes grow
longer over the run (10% of the episodes can be far less than 10% of the data). Other selections
(``EpisodeSelection``, ``episodes.py``): a seeded *uniform* sample of episodes holding the
share (every skill level of the run), and a validation split of held-out episodes that the
training part never draws; the kept episodes' steps are renumbered so the draw stays uniform.

Compressed stores, or a RAM budget (``block_pool``): the samplers draw from a bounded pool of decoded
blocks of whole episodes, rotated every so many batches (``block_pool.py`` says how that changes the
sampling distribution); with every block resident the batches are exactly those above.

Reproducibility: one ``numpy.random.Generator`` (PCG64) seeded by ``seed``; ``state_dict`` /
``load_state_dict`` save and restore it for an exact resume. Different processes (DDP ranks)
construct samplers with different seeds over the same files.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from scaledql.data.sampling.shard_arrays import ShardArrays
from scaledql.data.store.dataset import Dataset
from scaledql.data.store.episodes import EpisodeIndex, EpisodeSelection, check_fraction, fraction_of
from scaledql.data.store.game import GameData
from scaledql.errors import UserError

if TYPE_CHECKING:
    from scaledql.data.sampling.block_pool import PoolOptions, ResidentPool

BatchKind = Literal["transitions", "trajectories"]
__all__ = ["BatchSpec", "EpisodeSelection", "TrajectoryBatch", "TrajectorySampler", "TransitionBatch",
           "TransitionSampler", "check_fraction", "fraction_of", "make_sampler"]


@dataclass(frozen=True)
class BatchSpec:
    """The batches a learner needs; ``make_sampler`` builds the sampler that draws them.

    transitions: ``n_step`` returns discounted by ``gamma``, rewards clipped to ±``reward_clip``
    (None: raw); trajectories: windows of ``length`` steps with returns-to-go.
    ``batch_size`` is the global batch (the training loop splits it over DDP processes).
    """

    kind: BatchKind
    batch_size: int
    n_step: int = 1
    gamma: float = 0.99
    reward_clip: float | None = 1.0
    length: int = 1


@dataclass
class TransitionBatch:
    """A batch of n-step transitions (NumPy arrays; rows grouped by game).

    obs: uint8[B, S*C, H, W]; action: int64[B]; reward: float32[B] (n-step discounted sum of the
    optionally clipped rewards, stopped at the episode's end); discount: float32[B] (gamma**k, k
    the steps summed, k <= n); done: float32[B] (1 if the episode terminated within those k
    steps); next_obs: uint8[B, S*C, H, W] (stacked observation k steps later); game_id: int64[B].
    """

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    discount: np.ndarray
    done: np.ndarray
    next_obs: np.ndarray
    game_id: np.ndarray


@dataclass
class TrajectoryBatch:
    """Contiguous sub-trajectories, each within one episode.

    obs: uint8[B, L, S*C, H, W]; action: int64[B, L]; reward: float32[B, L] (raw, or clipped if
    the sampler clips); return_to_go: float32[B, L] (undiscounted raw return from that step to
    the stored episode's end); timestep: int64[B, L] (step index within the episode);
    terminal: float32[B, L] (1 on the last step of an episode that ended in a terminal state);
    mask: float32[B, L] (1 on real steps, 0 on padding after the episode's end; padded steps
    hold zeros); game_id: int64[B].
    """

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    return_to_go: np.ndarray
    timestep: np.ndarray
    terminal: np.ndarray
    mask: np.ndarray
    game_id: np.ndarray


@dataclass
class _Located:
    """Where a batch's sampled steps lie (arrays [B], rows in batch order)."""

    frame: np.ndarray  # int64 shard-local frame index of the sampled step's observation
    ep_start: np.ndarray  # int64 frame index of the episode's obs_0
    ep_end: np.ndarray  # int64 frame index of the episode's final observation obs_T
    terminated: np.ndarray  # bool: the episode ended in a terminal state
    runs: list[tuple[int, int, int]]  # (shard id, first row, end row): rows of one shard
    game_id: np.ndarray  # int64


class _MultiGameSampler:
    """Shared part: game shares, uniform step sampling, locating steps in shards, RNG state."""

    def __init__(self, dataset: Dataset, games: list[str], *, batch_size: int,
                 game_weights: dict[str, float] | None, seed: int | np.random.SeedSequence,
                 data_fraction: float = 1.0, pool: PoolOptions | None = None,
                 episodes: EpisodeSelection | None = None):
        if not games:
            raise UserError("no games to sample from")
        if len(set(games)) != len(games):
            raise UserError(f"games listed twice: {games}")
        if batch_size < 1:
            raise UserError(f"batch size must be positive, got {batch_size}")
        self.games = list(games)
        self.data: list[GameData] = [dataset.game(g) for g in self.games]
        first = self.data[0]
        for g in self.data[1:]:
            if g.frame_shape != first.frame_shape or g.stack != first.stack:
                raise UserError(f"games {first.name} and {g.name} have different observations "
                                f"({first.stack}x{first.frame_shape} vs {g.stack}x{g.frame_shape}); "
                                "one batch needs one shape")
        for g in self.data:
            if g.num_transitions == 0:
                raise UserError(f"game {g.name} has no transitions to sample")
        self.frame_shape = first.frame_shape
        self.stack = first.stack
        self.batch_size = int(batch_size)
        weights = np.ones(len(self.games))
        if game_weights is not None:
            unknown = set(game_weights) - set(self.games)
            if unknown:
                raise UserError(f"game_weights names games not sampled: {sorted(unknown)}")
            weights = np.array([float(game_weights.get(g, 0.0)) for g in self.games])
            if (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
                raise UserError(f"game weights must be non-negative with a positive sum: {game_weights}")
        self.game_weights = weights / weights.sum()
        self._rng = np.random.Generator(np.random.PCG64(seed))
        # Shard ids increase with game order, then shard order, so a batch's rows (game, then
        # sorted step) come in runs of one shard each.
        # ``data_fraction`` alone is the common case: the first share of each game.
        self.episodes = (episodes or EpisodeSelection(fraction=check_fraction(data_fraction))
                         ).validate()
        self._index: list[EpisodeIndex] = []
        first_shard = 0
        for g in self.data:
            index = self.episodes.apply(EpisodeIndex.build(g, first_shard), g.name)
            first_shard += len(g.shards)
            if len(index.length) == 0:
                raise UserError(f"game {g.name}: the {self.episodes.part} part of its episodes is "
                                "empty (too few episodes for this validation split)")
            self._index.append(index)
        # Steps drawn per game: the kept episodes' steps are numbered [0, n) in order.
        self._num_steps = [int(index.length.sum()) for index in self._index]
        self._stack_offsets = np.arange(1 - self.stack, 1, dtype=np.int64)
        self.pool: ResidentPool | None = None  # the resident blocks (None: memory maps)
        if pool is not None:  # blocks in RAM (block_pool.py); shards and index are the pool's view
            from scaledql.data.sampling.block_pool import ResidentPool

            self.pool = ResidentPool(self.data, self._index, pool, seed)
            self._shards: list[ShardArrays] = []
        else:
            packed = [g.name for g in self.data if g.frame_codec is not None]
            if packed:
                raise UserError(f"the frames of {', '.join(packed)} are compressed: sample them "
                                "through the resident pool (--resident-gb)")
            self._shards = [ShardArrays.of(sh) for g in self.data for sh in g.shards]

    # -- RNG state ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The RNG state (a JSON-able dict); ``load_state_dict`` resumes the exact sequence."""
        state = {"bit_generator": self._rng.bit_generator.state}
        if self.pool is not None:
            state["pool"] = self.pool.state_dict()
        return state

    def load_state_dict(self, d: dict) -> None:
        self._rng.bit_generator.state = d["bit_generator"]
        if self.pool is not None:
            self.pool.load_state_dict(d["pool"])

    # -- sampling helpers ---------------------------------------------------------------------
    def _game_counts(self) -> np.ndarray:
        """int64[G]: how many rows each game gets in the next batch (sums to batch_size)."""
        base = np.floor(self.batch_size * self.game_weights).astype(np.int64)
        rest = self.batch_size - int(base.sum())
        if rest:
            base += np.bincount(self._rng.choice(len(self.games), size=rest, p=self.game_weights),
                                minlength=len(self.games))
        return base

    def _locate(self) -> _Located:
        """Draw the batch's steps (sorted within each game) and look them up in the global index."""
        if self.pool is not None and self.pool.advance():
            self._shards, self._index, self._num_steps = self.pool.view()
        counts = self._game_counts()
        parts = []
        for num_steps, index, k in zip(self._num_steps, self._index, counts, strict=True):
            if k == 0:
                continue
            steps = np.sort(self._rng.integers(0, num_steps, size=int(k)))
            ep = np.searchsorted(index.step_offset, steps, side="right") - 1
            start = index.frame_start[ep]
            parts.append((start + (steps - index.step_offset[ep]), start,
                          start + index.length[ep], index.terminated[ep], index.shard[ep]))
        frame, start, end, terminated, shard = (
            cols[0] if len(parts) == 1 else np.concatenate(cols)
            for cols in zip(*parts, strict=True))
        cuts = [0, *(np.flatnonzero(shard[1:] != shard[:-1]) + 1).tolist(), len(shard)]
        runs = [(int(shard[lo]), lo, hi) for lo, hi in itertools.pairwise(cuts)]
        game_id = np.repeat(np.arange(len(self.games), dtype=np.int64), counts)
        return _Located(frame=frame, ep_start=start, ep_end=end, terminated=terminated,
                        runs=runs, game_id=game_id)

    def _stack_indices(self, frame: np.ndarray, ep_start: np.ndarray) -> np.ndarray:
        """int64[..., S]: frame indices of the stacks ending at ``frame``; 0 (zeros) before start."""
        idx = frame[..., None] + self._stack_offsets
        return np.where(idx >= ep_start[..., None], idx, 0)


class TransitionSampler(_MultiGameSampler):
    """Multi-game n-step transitions; see the module docstring.

    ``reward_clip``: clip each reward to [-c, c] before summing (None: raw rewards).
    """

    def __init__(self, dataset: Dataset, games: list[str], *, batch_size: int, n_step: int = 1,
                 gamma: float = 0.99, reward_clip: float | None = None,
                 game_weights: dict[str, float] | None = None,
                 seed: int | np.random.SeedSequence = 0, data_fraction: float = 1.0,
                 pool: PoolOptions | None = None, episodes: EpisodeSelection | None = None):
        super().__init__(dataset, games, batch_size=batch_size, game_weights=game_weights,
                         seed=seed, data_fraction=data_fraction, pool=pool,
                         episodes=episodes)
        if n_step < 1:
            raise UserError(f"n_step must be >= 1, got {n_step}")
        if not 0.0 <= gamma <= 1.0:
            raise UserError(f"gamma must be in [0, 1], got {gamma}")
        if reward_clip is not None and reward_clip <= 0:
            raise UserError(f"reward_clip must be positive, got {reward_clip}")
        self.n_step = int(n_step)
        self.gamma = float(gamma)
        self.reward_clip = reward_clip
        self._gamma_powers = self.gamma ** np.arange(self.n_step + 1, dtype=np.float64)

    def empty_batch(self) -> TransitionBatch:
        """A batch of uninitialized arrays of the right shapes, to pass to ``sample(out=...)``."""
        b, s = self.batch_size, self.stack
        c, h, w = self.frame_shape
        return TransitionBatch(
            obs=np.empty((b, s * c, h, w), np.uint8), action=np.empty(b, np.int64),
            reward=np.empty(b, np.float32), discount=np.empty(b, np.float32),
            done=np.empty(b, np.float32), next_obs=np.empty((b, s * c, h, w), np.uint8),
            game_id=np.empty(b, np.int64))

    def sample(self, out: TransitionBatch | None = None) -> TransitionBatch:
        """Draw a batch. ``out``: a batch (from ``empty_batch``, or numpy views of pinned
        tensors; C-contiguous) to fill in place instead of allocating; reusing one roughly
        doubles the speed for Atari frames, because fresh 14 MB arrays cost page faults on
        every call."""
        batch = self.empty_batch() if out is None else out
        if not (batch.obs.flags.c_contiguous and batch.next_obs.flags.c_contiguous):
            raise ValueError("sample(out=...) needs C-contiguous obs/next_obs arrays")
        loc = self._locate()
        batch.game_id[:] = loc.game_id
        f, ep_start, ep_end = loc.frame, loc.ep_start, loc.ep_end
        k = np.minimum(self.n_step, ep_end - f)  # steps summed, >= 1
        nxt = f + k
        s = self.stack
        obs_idx = self._stack_indices(f, ep_start)  # [B, S]
        next_idx = self._stack_indices(nxt, ep_start)
        j = np.arange(self.n_step)
        inside = j < k[:, None]
        reward_idx = np.where(inside, f[:, None] + j, 0)  # [B, n]; frame 0's reward is 0
        rewards = np.empty(reward_idx.shape, np.float32)
        # Flat views of the output stacks (C-contiguous): row i's frames are [i*S, (i+1)*S).
        obs = batch.obs.reshape(-1, *self.frame_shape)
        next_obs = batch.next_obs.reshape(-1, *self.frame_shape)
        for shard_id, lo, hi in loc.runs:
            sh = self._shards[shard_id]
            np.take(sh.frames, obs_idx[lo:hi].ravel(), axis=0, out=obs[lo * s:hi * s],
                    mode="clip")
            np.take(sh.frames, next_idx[lo:hi].ravel(), axis=0, out=next_obs[lo * s:hi * s],
                    mode="clip")
            batch.action[lo:hi] = sh.actions[f[lo:hi]]
            rewards[lo:hi] = sh.rewards[reward_idx[lo:hi]]
        r = rewards.astype(np.float64)
        if self.reward_clip is not None:
            r = np.clip(r, -self.reward_clip, self.reward_clip)
        # A row-wise sum, not a matmul: BLAS may round differently with the batch's size.
        batch.reward[:] = (np.where(inside, r, 0.0) * self._gamma_powers[: self.n_step]).sum(1)
        batch.discount[:] = self._gamma_powers[k]
        batch.done[:] = loc.terminated & (nxt == ep_end)
        return batch


class TrajectorySampler(_MultiGameSampler):
    """Multi-game contiguous sub-trajectories of ``length`` steps (Decision-Transformer style).

    A step is drawn uniformly; the window starts there, moved earlier so that it fits in the
    episode when the episode is long enough (so every window of a long episode is full), and
    is padded (``mask`` 0, zeros) past the end of shorter episodes.
    ``reward_clip`` clips ``reward`` only; ``return_to_go`` stays the raw stored return.
    """

    def __init__(self, dataset: Dataset, games: list[str], *, batch_size: int, length: int,
                 reward_clip: float | None = None, game_weights: dict[str, float] | None = None,
                 seed: int | np.random.SeedSequence = 0, data_fraction: float = 1.0,
                 pool: PoolOptions | None = None, episodes: EpisodeSelection | None = None):
        super().__init__(dataset, games, batch_size=batch_size, game_weights=game_weights,
                         seed=seed, data_fraction=data_fraction, pool=pool,
                         episodes=episodes)
        if length < 1:
            raise UserError(f"trajectory length must be >= 1, got {length}")
        if reward_clip is not None and reward_clip <= 0:
            raise UserError(f"reward_clip must be positive, got {reward_clip}")
        self.length = int(length)
        self.reward_clip = reward_clip

    def empty_batch(self) -> TrajectoryBatch:
        """A batch of uninitialized arrays of the right shapes, to pass to ``sample(out=...)``."""
        b, s, n = self.batch_size, self.stack, self.length
        c, h, w = self.frame_shape
        return TrajectoryBatch(
            obs=np.empty((b, n, s * c, h, w), np.uint8), action=np.empty((b, n), np.int64),
            reward=np.empty((b, n), np.float32), return_to_go=np.empty((b, n), np.float32),
            timestep=np.empty((b, n), np.int64), terminal=np.empty((b, n), np.float32),
            mask=np.empty((b, n), np.float32), game_id=np.empty(b, np.int64))

    def sample(self, out: TrajectoryBatch | None = None) -> TrajectoryBatch:
        """Draw a batch; ``out`` (from ``empty_batch``; C-contiguous) is filled in place."""
        batch = self.empty_batch() if out is None else out
        if not batch.obs.flags.c_contiguous:
            raise ValueError("sample(out=...) needs a C-contiguous obs array")
        s, n = self.stack, self.length
        c, h, w = self.frame_shape
        obs, action, reward, rtg = batch.obs, batch.action, batch.reward, batch.return_to_go
        loc = self._locate()
        first = np.maximum(loc.ep_start, np.minimum(loc.frame, loc.ep_end - n))
        frame = first[:, None] + np.arange(n)  # [B, L]
        real = frame < loc.ep_end[:, None]
        safe = np.where(real, frame, 0)  # frame 0 is the zero sentinel: padding reads zeros
        stacks = self._stack_indices(safe, np.where(real, loc.ep_start[:, None], 0))
        flat_obs = obs.reshape(-1, c, h, w)
        for shard_id, lo, hi in loc.runs:
            sh = self._shards[shard_id]
            np.take(sh.frames, stacks[lo:hi].ravel(), axis=0,
                    out=flat_obs[lo * n * s:hi * n * s], mode="clip")
            action[lo:hi] = sh.actions[safe[lo:hi]]
            reward[lo:hi] = sh.rewards[safe[lo:hi]]
            rtg[lo:hi] = sh.returns_to_go[safe[lo:hi]]
        if self.reward_clip is not None:
            np.clip(reward, -self.reward_clip, self.reward_clip, out=reward)
        batch.timestep[:] = np.where(real, frame - loc.ep_start[:, None], 0)
        batch.terminal[:] = loc.terminated[:, None] & (frame == loc.ep_end[:, None] - 1)
        batch.mask[:] = real
        batch.game_id[:] = loc.game_id
        return batch


def make_sampler(dataset: Dataset, games: list[str], spec: BatchSpec, batch_size: int,
                 seed: int | np.random.SeedSequence,
                 data_fraction: float = 1.0,
                 pool: PoolOptions | None = None,
                 episodes: EpisodeSelection | None = None) -> TransitionSampler | TrajectorySampler:
    """The sampler of ``spec``'s kind drawing ``batch_size`` rows (one process's share) from
    the first ``data_fraction`` of each game (see the module docstring); ``pool``: from a
    bounded, rotating pool of blocks in RAM (``block_pool.py``; needed for compressed stores);
    ``episodes``: another selection of episodes (``EpisodeSelection``: a uniform sample, a
    validation split) in place of ``data_fraction``."""
    if spec.kind == "transitions":
        return TransitionSampler(dataset, games, batch_size=batch_size, n_step=spec.n_step,
                                 gamma=spec.gamma, reward_clip=spec.reward_clip, seed=seed,
                                 data_fraction=data_fraction, pool=pool, episodes=episodes)
    if spec.kind == "trajectories":
        return TrajectorySampler(dataset, games, batch_size=batch_size, length=spec.length,
                                 reward_clip=spec.reward_clip, seed=seed,
                                 data_fraction=data_fraction, pool=pool, episodes=episodes)
    raise ValueError(f"unknown batch kind {spec.kind!r}")
