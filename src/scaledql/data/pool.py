"""A bounded pool of decoded blocks in RAM, rotated: how the samplers read a compressed store.

Blocks: each game's shards are cut into blocks of whole episodes — a compressed store's own zstd
blocks (``frame_blocks``), or, for a raw store, the same cut computed from its episode tables
(``block_frames`` frames). A resident block is a little shard of its own (a zero sentinel frame,
then its episodes' frames, actions, rewards and returns-to-go), so frame stacks, n-step returns
and trajectory windows, which never leave an episode, never leave a block: the samplers' code
runs unchanged on the resident blocks.

Budget: ``resident_bytes`` per sampler, split evenly over its games. A game keeps ``m`` blocks
resident, ``m`` the largest count for which its ``m`` largest blocks fit in its share, so any
choice of ``m`` blocks fits: the pool never holds more than ``resident_bytes`` (outgoing blocks
are dropped before incoming ones are decoded, which decode straight into their arrays). A game
whose largest block does not fit is one ``UserError``.

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

from dataclasses import dataclass

import numpy as np

from scaledql.data.frame_blocks import DEFAULT_BLOCK_FRAMES, episode_blocks
from scaledql.data.sampler_index import _GameIndex, _ShardArrays
from scaledql.data.store import GameData
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
    nbytes: np.ndarray  # int64 RAM of the block once resident

    @classmethod
    def of(cls, game: GameData, index: _GameIndex, first_shard: int,
           block_frames: int) -> _Blocks:
        frame_bytes = int(np.prod(game.frame_shape)) + _TABLE_BYTES
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
                   end_ep=np.append(first[1:], len(key)).astype(np.int64),
                   nbytes=(hi - lo + 1) * frame_bytes)


class ResidentPool:
    """The resident blocks of a sampler's games; ``advance()`` once per batch, then ``view()``."""

    def __init__(self, data: list[GameData], index: list[_GameIndex], options: PoolOptions,
                 seed: int | np.random.SeedSequence):
        options.check()
        self.options = options
        self.data, self._full = data, index
        first_shard = np.cumsum([0] + [len(g.shards) for g in data])
        self.blocks = [_Blocks.of(g, ix, int(first_shard[i]), options.block_frames)
                       for i, (g, ix) in enumerate(zip(data, index, strict=True))]
        share = options.resident_bytes // len(data)
        self.slots: list[int] = []
        for g, b in zip(data, self.blocks, strict=True):
            fits = int(np.searchsorted(np.cumsum(np.sort(b.nbytes)[::-1]), share, side="right"))
            if fits == 0:
                raise UserError(
                    f"resident_gb {options.resident_bytes / 1e9:g} gives {share / 1e9:.3g} GB to "
                    f"each of {len(data)} games; {g.name}'s largest block needs "
                    f"{b.nbytes.max() / 1e9:.3g} GB (raise --resident-gb, or compress with a "
                    "smaller --block-transitions)")
            self.slots.append(min(fits, len(b.nbytes)))
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        # A child key of its own: the pool's draws never shift the batches' draws.
        self._rng = np.random.Generator(np.random.PCG64(
            np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, 0x900D))))
        self.batches = 0
        self.resident: list[np.ndarray] | None = None  # sorted block ids per game
        self._loaded: dict[tuple[int, int], _ShardArrays] = {}
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
                len(r) != m or (len(r) and not 0 <= min(r) <= max(r) < len(b.nbytes))
                for r, m, b in zip(res, self.slots, self.blocks, strict=True))):
            raise ValueError("pool state does not fit this data and --resident-gb")
        self.resident = None if res is None else [np.asarray(r, np.int64) for r in res]
        self._stale = True

    # -- rotation -----------------------------------------------------------------------------
    def advance(self) -> bool:
        """Count a batch, rotating first when one is due; True when ``view()`` changed."""
        if self.resident is None:
            self.resident = [np.sort(self._rng.choice(len(b.nbytes), m, replace=False))
                             for b, m in zip(self.blocks, self.slots, strict=True)]
            self._stale = True
        elif self.batches and self.batches % self.options.rotate_every == 0:
            self.resident = [self._rotated(r, len(b.nbytes))
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
        """Drop blocks no longer resident, then read or decode the new ones."""
        assert self.resident is not None
        want = {(g, int(b)) for g, r in enumerate(self.resident) for b in r}
        for key in set(self._loaded) - want:
            del self._loaded[key]
        for key in sorted(want - set(self._loaded)):
            self._loaded[key] = self._read(*key)

    def _read(self, g: int, b: int) -> _ShardArrays:
        """Block ``b`` of game ``g`` as a shard: frame 0 zeros, then frames lo..hi-1."""
        game, blk = self.data[g], self.blocks[g]
        sh = game.shards[int(blk.shard[b])]
        lo, hi = int(blk.lo[b]), int(blk.hi[b])
        frames = np.empty((hi - lo + 1, *game.frame_shape), np.uint8)
        frames[0] = 0
        if game.frame_codec is not None:
            sh.frames.decode(int(blk.number[b]), out=frames[1:])
        else:
            frames[1:] = sh.frames[lo:hi]

        def table(a: np.ndarray) -> np.ndarray:
            out = np.zeros(hi - lo + 1, a.dtype)
            out[1:] = a[lo:hi]
            return out

        return _ShardArrays(frames=frames, actions=table(sh.actions), rewards=table(sh.rewards),
                            returns_to_go=table(sh.returns_to_go))

    def resident_nbytes(self) -> int:
        """Bytes of the arrays of the blocks now in RAM."""
        return sum(a.frames.nbytes + a.actions.nbytes + a.rewards.nbytes + a.returns_to_go.nbytes
                   for a in self._loaded.values())

    # -- what the sampler reads ---------------------------------------------------------------
    def view(self) -> tuple[list[_ShardArrays], list[_GameIndex], list[int]]:
        """The resident blocks as the sampler's shards (ids in (game, block) order, so a batch's
        rows of one block are contiguous), each game's index over them, its resident steps."""
        assert self.resident is not None
        shards: list[_ShardArrays] = []
        index, steps = [], []
        for g, (full, blk, res) in enumerate(zip(self._full, self.blocks, self.resident,
                                                 strict=True)):
            ep = np.concatenate([np.arange(blk.first_ep[b], blk.end_ep[b]) for b in res])
            counts = blk.end_ep[res] - blk.first_ep[res]
            slot = np.repeat(np.arange(len(shards), len(shards) + len(res)), counts)
            shards.extend(self._loaded[(g, int(b))] for b in res)
            length = full.length[ep]
            offset = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
            index.append(_GameIndex(step_offset=offset,
                                    frame_start=full.frame_start[ep] - np.repeat(blk.lo[res],
                                                                                 counts) + 1,
                                    length=length, terminated=full.terminated[ep], shard=slot))
            steps.append(int(length.sum()))
        return shards, index, steps
