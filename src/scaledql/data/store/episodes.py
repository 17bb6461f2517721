"""A game's episodes in step order, and which of them a run uses.

``EpisodeIndex``: a game's episodes over all its shards in step order, a few numbers each, so a
batch's steps are located with one ``searchsorted`` per game (the samplers draw from it);
``EpisodeSelection``: which of a game's episodes a run draws from (a share of the run, first
or uniformly sampled, and the training or held-out part of a validation split), read by the
samplers and by ``merge`` alike; ``fraction_of``: what a selection keeps of a game.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from scaledql.data.store.format import FLAG_TERMINATED
from scaledql.data.store.game import GameData
from scaledql.errors import UserError


@dataclass
class EpisodeIndex:
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
    def build(cls, game: GameData, first_shard_id: int) -> EpisodeIndex:
        parts = []
        for si, sh in enumerate(game.shards):
            length = np.asarray(sh.ep_length, np.int64)
            keep = length > 0  # a lone terminal frame holds no step to sample
            parts.append((np.asarray(sh.ep_step_offset, np.int64)[keep] + game.shard_step_offsets[si],
                          np.asarray(sh.ep_frame_start, np.int64)[keep], length[keep],
                          (np.asarray(sh.ep_flags)[keep] & FLAG_TERMINATED) != 0,
                          np.full(int(keep.sum()), first_shard_id + si, np.int64)))
        return cls(*(np.concatenate(cols) for cols in zip(*parts, strict=True)))

    def first(self, count: int) -> EpisodeIndex:
        """The first ``count`` episodes only."""
        return EpisodeIndex(self.step_offset[:count], self.frame_start[:count],
                          self.length[:count], self.terminated[:count], self.shard[:count])

    def take(self, episodes: np.ndarray) -> EpisodeIndex:
        """The episodes at the increasing positions ``episodes`` only, their steps renumbered
        0..n-1 in order (so the samplers draw steps uniformly over the kept episodes)."""
        length = self.length[episodes]
        offset = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
        return EpisodeIndex(offset, self.frame_start[episodes], length,
                          self.terminated[episodes], self.shard[episodes])


def check_fraction(fraction: float) -> float:
    if not (np.isfinite(fraction) and 0.0 < fraction <= 1.0):
        raise UserError(f"data fraction must be in (0, 1], got {fraction}")
    return float(fraction)


SAMPLES = ("first", "uniform")
PARTS = ("train", "heldout", "all")


def share_text(fraction: float, sample: str = "first") -> str:
    """How reports name a share of a game's data: ``all``, ``the first 5%`` (a prefix of the
    run, as the DQN Replay subsets) or ``a uniform 5% sample`` (episodes drawn over the run)."""
    if fraction >= 1:
        return "all"
    return f"the first {fraction:.0%}" if sample == "first" else f"a uniform {fraction:.0%} sample"


def kept_text(kept: dict[str, int], sample: str = "first") -> str:
    """``fraction_of``'s counts in words: ``50,004 of 1,000,000 transitions (first 4275 of 11694
    episodes)``, or ``(a uniform sample of ...)``."""
    which = "first" if sample == "first" else "a uniform sample of"
    return (f"{kept['transitions']:,} of {kept['total_transitions']:,} transitions ({which} "
            f"{kept['episodes']} of {kept['total_episodes']} episodes)")


@dataclass(frozen=True)
class EpisodeSelection:
    """Which episodes of a game (in time order, those with a step) a sampler draws from.

    1. ``fraction`` of the game's transitions, whole episodes: with ``sample="first"`` its first
       episodes, as few as hold that share (the DQN Replay subsets, "the first X% of a run");
       with ``"uniform"`` episodes drawn uniformly at random (seeded) until they hold it — the
       mix of skill a whole replay holds, at the size of a small share.
    2. ``holdout``: a seeded share of those episodes (at least one when the share is positive
       and two or more are kept) is the validation split; ``part`` says which part is drawn:
       ``"train"`` (the rest), ``"heldout"``, or ``"all"``.

    The draws depend on ``seed`` and the game's name only, not on the run's seed: runs of
    different seeds (and arms of a study) share one split.
    """

    fraction: float = 1.0
    sample: str = "first"
    holdout: float = 0.0
    seed: int = 0
    part: str = "train"

    def validate(self) -> EpisodeSelection:
        check_fraction(self.fraction)
        if self.sample not in SAMPLES:
            raise UserError(f"data sample must be one of {', '.join(SAMPLES)}, got {self.sample!r}")
        if not (np.isfinite(self.holdout) and 0.0 <= self.holdout < 1.0):
            raise UserError(f"validation share must be in [0, 1), got {self.holdout}")
        if self.part not in PARTS:
            raise UserError(f"episode part must be one of {', '.join(PARTS)}, got {self.part!r}")
        if self.seed < 0:
            raise UserError(f"split seed must be >= 0, got {self.seed}")
        return self

    def with_part(self, part: str) -> EpisodeSelection:
        return EpisodeSelection(self.fraction, self.sample, self.holdout, self.seed, part)

    def _rng(self, game: str, purpose: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(game.encode()), purpose])

    def episodes(self, length: np.ndarray, game: str) -> np.ndarray:
        """int64[K], increasing: the positions of the selected episodes among ``length``
        (int64[E], transitions per episode of the game's index)."""
        count = len(length)
        if count == 0:
            return np.zeros(0, np.int64)
        need = self.fraction * float(length.sum()) * (1 - 1e-12)
        if self.sample == "first":
            order = np.arange(count)
        else:
            order = self._rng(game, 0).permutation(count)
        cumulative = np.cumsum(length[order])
        taken = max(1, int(np.searchsorted(cumulative, need, side="left")) + 1)
        kept = np.sort(order[:taken]).astype(np.int64)
        if self.part == "all":
            return kept
        if self.holdout <= 0 or len(kept) < 2:  # nothing held out
            return kept[:0] if self.part == "heldout" else kept
        held = min(len(kept) - 1, max(1, round(self.holdout * len(kept))))
        is_held = np.zeros(len(kept), bool)
        is_held[self._rng(game, 1).choice(len(kept), size=held, replace=False)] = True
        return kept[is_held] if self.part == "heldout" else kept[~is_held]

    def apply(self, index: EpisodeIndex, game: str) -> EpisodeIndex:
        """The game's index reduced to the selected episodes."""
        if self.fraction >= 1.0 and (self.holdout <= 0 or self.part == "all"):
            return index
        chosen = self.episodes(index.length, game)
        if self.sample == "first" and (self.holdout <= 0 or self.part == "all"):
            return index.first(len(chosen))  # a prefix: the index as it was
        return index.take(chosen)


def fraction_of(game: GameData, selection: float | EpisodeSelection) -> dict[str, int]:
    """What a selection (or ``data_fraction`` alone) keeps of one game: episodes and
    transitions kept, and the totals (episodes counted as the sampler does: those with at least
    one transition)."""
    if not isinstance(selection, EpisodeSelection):
        selection = EpisodeSelection(fraction=check_fraction(selection))
    index = EpisodeIndex.build(game, 0)
    kept = selection.episodes(index.length, game.name)
    return {"episodes": len(kept), "transitions": int(index.length[kept].sum()),
            "total_episodes": len(index.length), "total_transitions": game.num_transitions}
