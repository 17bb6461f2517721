"""A bounded pool of decoded blocks in RAM, rotated: how the samplers read a compressed store.

Blocks: each game's shards are cut into blocks of whole episodes — a compressed store's own zstd
blocks (``frame_blocks``), or, for a raw store, the same cut computed from its episode tables
(``block_frames`` frames). Frame stacks, n-step returns and trajectory windows never leave an
episode, so they never leave a block: a block read on its own is all a sample needs, and the
samplers' code runs unchanged on the resident blocks (each game's arena below is the one
"shard" they read, its frame 0 the zero sentinel they pad with).

Budget: ``resident_bytes`` per sampler, split evenly over its games. Each game gets one arena
of that many bytes (an anonymous memory map: frames, actions, rewards, returns-to-go; frame 0 the
zero sentinel) and keeps ``m`` blocks resident in it, ``m`` the largest count for which its ``m``
largest blocks fit, so any choice of ``m`` blocks fits: the pool never holds more than
``resident_bytes``, and nothing is allocated after the start (a rotation moves the blocks that
stay down the arena and decodes the new ones straight into it). One arena per game also keeps
a batch's reads to one run per game however many blocks are resident. A game whose largest
block does not fit is one ``UserError``.

Rotation (Dopamine's ``FixedReplayRunner`` reloads a random subset of its replay checkpoints
the same way): the pool starts with ``m`` blocks per game drawn uniformly without replacement;
every ``rotate_every`` batches, ``max(1, round(rotate_share * m))`` of them, drawn uniformly, are
replaced by as many drawn uniformly from the game's non-resident blocks. A game whose blocks all
fit stays fully resident. Its own RNG (seeded from the sampler's seed, independent of the batch
draws) makes it deterministic; ``state_dict`` holds that RNG, the batch count and the resident
block ids, so a resumed run continues with the same pool.

Sampling distribution: a batch's per-game shares are unchanged (``game_weights``); within a game,
a step is drawn uniformly over the *resident* steps. By symmetry every block is resident with
probability ``m / N`` (N blocks), so over time a step's probability is ``E[1{its block is
resident} / R]`` (R: resident steps), which is uniform over the game up to the spread of block
sizes (O(1/m) for blocks of similar size; exactly uniform when all blocks fit). Within one period
the batches see only ``m / N`` of the game (more correlated than uniform sampling); a block
outside the pool waits on average ``(N - m) / r`` rotations to come in.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np

from scaledql.data.sampling.shard_arrays import ShardArrays
from scaledql.data.store.episodes import EpisodeIndex
from scaledql.data.store.frame_blocks import DEFAULT_BLOCK_FRAMES, episode_blocks
from scaledql.data.store.game import GameData
from scaledql.errors import UserError

_TABLE_BYTES = 12  # per frame: int32 action, float32 reward, float32 return-to-go


@dataclass(frozen=True)
class PoolOptions:
    """``resident_bytes``: RAM for decoded blocks per sampler; ``rotate_every`` batches between
    rotations; ``rotate_share`` of each game's resident blocks replaced per rotation;
    ``block_frames``: block size for raw stores (compressed stores have their own)."""

    resident_bytes: int
    rotate_every: int = 1000
    rotate_share: float = 0.25
    block_frames: int = DEFAULT_BLOCK_FRAMES

    def check(self) -> None:
        if self.resident_bytes <= 0:
            raise UserError(f"resident_gb must be positive, got {self.resident_bytes / 1e9:g}")
        if self.rotate_every < 1:
            raise UserError(f"rotate_every must be >= 1 batch, got {self.rotate_every}")
        if not 0 < self.rotate_share <= 1:
            raise UserError(f"rotate_share must be in (0, 1], got {self.rotate_share}")
        if self.block_frames < 1:
            raise UserError(f"block_frames must be positive, got {self.block_frames}")


@dataclass
class _Blocks:
    """One game's blocks (arrays [N]) and which episodes of its sampler index each holds."""

    shard: np.ndarray  # int64 game-local shard
    number: np.ndarray  # int64 block number within the shard (a compressed store's block)
    lo: np.ndarray  # int64 first frame (shard-local)
    hi: np.ndarray  # int64 end frame (exclusive)
    first_ep: np.ndarray  # int64 first episode in the game's sampler index
    end_ep: np.ndarray  # int64 end episode (exclusive)

    @property
    def frames(self) -> np.ndarray:
        """int64[N]: frames of each block."""
        return self.hi - self.lo

    @classmethod
    def of(cls, game: GameData, index: EpisodeIndex, first_shard: int,
           block_frames: int) -> _Blocks:
        keys, base, bounds_of = [], 0, []
        local_shard = index.shard - first_shard
        for si, sh in enumerate(game.shards):
            bounds = (sh.frames.bounds if game.frame_codec is not None else episode_blocks(
                sh.ep_frame_start, sh.ep_length, len(sh.frames), block_frames))
            bounds_of.append(bounds)
            mine = local_shard == si
            keys.append(base + np.searchsorted(bounds, index.frame_start[mine], side="right") - 1)
            base += len(bounds) - 1
        key = np.concatenate(keys)  # nondecreasing: the index is in (shard, frame) order
        used, first = np.unique(key, return_index=True)
        offsets = np.cumsum([0] + [len(b) - 1 for b in bounds_of])
        shard = np.searchsorted(offsets, used, side="right") - 1
        number = used - offsets[shard]
        lo = np.array([bounds_of[s][n] for s, n in zip(shard, number, strict=True)], np.int64)
        hi = np.array([bounds_of[s][n + 1] for s, n in zip(shard, number, strict=True)], np.int64)
        return cls(shard=shard.astype(np.int64), number=number.astype(np.int64), lo=lo, hi=hi,
                   first_ep=first.astype(np.int64),
                   end_ep=np.append(first[1:], len(key)).astype(np.int64))


def _anonymous(shape: tuple[int, ...], dtype: type | np.dtype) -> np.ndarray:
    """A zeroed array in its own anonymous memory map: pages become resident only when
    written (an arena sized to the budget costs nothing until filled) and go back to the system
    when the array is dropped."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes == 0:
        return np.zeros(shape, dtype)
    # private: counted as the process's own (anonymous) memory, like malloc's
    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
    buf = mmap.mmap(-1, nbytes, flags=flags) if flags else mmap.mmap(-1, nbytes)
    return np.frombuffer(buf, dtype).reshape(shape)


class ResidentPool:
    """The resident blocks of a sampler's games; ``advance()`` once per batch, then ``view()``."""

    def __init__(self, data: list[GameData], index: list[EpisodeIndex], options: PoolOptions,
                 seed: int | np.random.SeedSequence):
        options.check()
        self.options = options
        self.data, self._full = data, index
        first_shard = np.cumsum([0] + [len(g.shards) for g in data])
        self.blocks = [_Blocks.of(g, ix, int(first_shard[i]), options.block_frames)
                       for i, (g, ix) in enumerate(zip(data, index, strict=True))]
        share = options.resident_bytes // len(data)
        self.slots: list[int] = []  # blocks resident per game
        self._arenas: list[ShardArrays] = []
        for g, b in zip(data, self.blocks, strict=True):
            frame_bytes = int(np.prod(g.frame_shape)) + _TABLE_BYTES
            capacity = share // frame_bytes - 1  # frames besides the sentinel
            fits = int(np.searchsorted(np.cumsum(np.sort(b.frames)[::-1]), capacity,
                                       side="right"))
            if fits == 0:
                raise UserError(
                    f"resident_gb {options.resident_bytes / 1e9:g} gives {share / 1e9:.3g} GB to "
                    f"each of {len(data)} games; {g.name}'s largest block needs "
                    f"{(b.frames.max() + 1) * frame_bytes / 1e9:.3g} GB (raise --resident-gb, or "
                    "compress with a smaller --block-transitions)")
            self.slots.append(min(fits, len(b.frames)))
            size = 1 + min(capacity, int(b.frames.sum()))
            self._arenas.append(ShardArrays(
                frames=_anonymous((size, *g.frame_shape), np.uint8),
                actions=_anonymous((size,), np.int32), rewards=_anonymous((size,), np.float32),
                returns_to_go=_anonymous((size,), np.float32)))
        # where each resident block's frames start in its game's arena
        self._where: list[dict[int, int]] = [{} for _ in data]
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        # A child key of its own: the pool's draws never shift the batches' draws.
        self._rng = np.random.Generator(np.random.PCG64(
            np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, 0x900D))))
        self.batches = 0
        self.resident: list[np.ndarray] | None = None  # sorted block ids per game
        self._stale = True

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"rng": self._rng.bit_generator.state, "batches": self.batches,
                "resident": None if self.resident is None else [r.tolist() for r in self.resident]}

    def load_state_dict(self, d: dict) -> None:
        self._rng.bit_generator.state = d["rng"]
        self.batches = int(d["batches"])
        res = d["resident"]
        if res is not None and (len(res) != len(self.blocks) or any(
                len(r) != m or (len(r) and not 0 <= min(r) <= max(r) < len(b.frames))
                for r, m, b in zip(res, self.slots, self.blocks, strict=True))):
            raise ValueError("pool state does not fit this data and --resident-gb")
        self.resident = None if res is None else [np.asarray(r, np.int64) for r in res]
        self._stale = True

    # -- rotation -----------------------------------------------------------------------------
    def advance(self) -> bool:
        """Count a batch, rotating first when one is due; True when ``view()`` changed."""
        if self.resident is None:
            self.resident = [np.sort(self._rng.choice(len(b.frames), m, replace=False))
                             for b, m in zip(self.blocks, self.slots, strict=True)]
            self._stale = True
        elif self.batches and self.batches % self.options.rotate_every == 0:
            self.resident = [self._rotated(r, len(b.frames))
                             for r, b in zip(self.resident, self.blocks, strict=True)]
            self._stale = True
        self.batches += 1
        changed, self._stale = self._stale, False
        if changed:
            self._load()
        return changed

    def _rotated(self, resident: np.ndarray, total: int) -> np.ndarray:
        outside = np.setdiff1d(np.arange(total), resident)
        if not len(outside):
            return resident
        r = min(max(1, round(self.options.rotate_share * len(resident))), len(outside))
        out = self._rng.choice(resident, r, replace=False)
        incoming = self._rng.choice(outside, r, replace=False)
        return np.sort(np.concatenate([np.setdiff1d(resident, out), incoming]))

    def _load(self) -> None:
        """Per game: move the blocks that stay to the front of the arena (in arena order, so
        every move goes down), then read or decode the new ones after them."""
        assert self.resident is not None
        for g, res in enumerate(self.resident):
            arena, where, blk = self._arenas[g], self._where[g], self.blocks[g]
            keep = sorted(set(where) & set(res.tolist()), key=where.__getitem__)
            pos = 1
            for b in keep:
                n = int(blk.frames[b])
                _move_down(arena, where[b], pos, n)
                where[b] = pos
                pos += n
            for b in set(where) - set(keep):
                del where[b]
            for b in res.tolist():
                if b not in where:
                    self._read(g, b, pos)
                    where[b] = pos
                    pos += int(blk.frames[b])

    def _read(self, g: int, b: int, pos: int) -> None:
        """Block ``b`` of game ``g`` into its arena from frame ``pos`` on."""
        game, blk, arena = self.data[g], self.blocks[g], self._arenas[g]
        sh = game.shards[int(blk.shard[b])]
        lo, hi = int(blk.lo[b]), int(blk.hi[b])
        end = pos + hi - lo
        if game.frame_codec is not None:
            sh.frames.decode(int(blk.number[b]), out=arena.frames[pos:end])
        else:
            arena.frames[pos:end] = sh.frames[lo:hi]
        arena.actions[pos:end] = sh.actions[lo:hi]
        arena.rewards[pos:end] = sh.rewards[lo:hi]
        arena.returns_to_go[pos:end] = sh.returns_to_go[lo:hi]

    def nbytes(self) -> int:
        """Bytes the pool's arenas take at most (their pages are resident once written)."""
        return sum(a.frames.nbytes + a.actions.nbytes + a.rewards.nbytes + a.returns_to_go.nbytes
                   for a in self._arenas)

    def resident_nbytes(self) -> int:
        """Bytes of the arenas that hold resident blocks now (and the sentinels)."""
        total = 0
        for g, (arena, where) in enumerate(zip(self._arenas, self._where, strict=True)):
            per_frame = arena.frames[0].nbytes + _TABLE_BYTES
            total += (1 + int(self.blocks[g].frames[list(where)].sum())) * per_frame
        return total

    # -- what the sampler reads ---------------------------------------------------------------
    def view(self) -> tuple[list[ShardArrays], list[EpisodeIndex], list[int]]:
        """One shard per game (its arena), each game's index over its resident blocks (in block
        order, so with every block resident the steps are the raw sampler's), resident steps."""
        assert self.resident is not None
        index, steps = [], []
        for g, (full, blk, res) in enumerate(zip(self._full, self.blocks, self.resident,
                                                 strict=True)):
            ep = np.concatenate([np.arange(blk.first_ep[b], blk.end_ep[b]) for b in res])
            counts = blk.end_ep[res] - blk.first_ep[res]
            where = np.array([self._where[g][int(b)] for b in res], np.int64)
            length = full.length[ep]
            offset = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
            start = full.frame_start[ep] + np.repeat(where - blk.lo[res], counts)
            index.append(EpisodeIndex(step_offset=offset, frame_start=start, length=length,
                                    terminated=full.terminated[ep],
                                    shard=np.full(len(ep), g, np.int64)))
            steps.append(int(length.sum()))
        return list(self._arenas), index, steps


def _move_down(arena: ShardArrays, src: int, dst: int, n: int) -> None:
    """Move frames ``[src, src + n)`` of every arena array to ``dst <= src``, in pieces that
    never overlap their own source (no temporary copy)."""
    assert dst <= src
    if dst == src:
        return
    step = src - dst
    for lo in range(0, n, step):
        k = min(step, n - lo)
        for a in (arena.frames, arena.actions, arena.rewards, arena.returns_to_go):
            a[dst + lo:dst + lo + k] = a[src + lo:src + lo + k]
