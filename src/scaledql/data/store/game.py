"""One game's store opened read-only (``GameData``, its ``Shard``s), and what its episodes say
about the policy that generated them (``behaviour_score``). The layout is ``format``'s; opening
runs its cheap checks, so a damaged store is one ``UserError`` here, not a wrong sample later.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.data.store.format import (
    MANIFEST,
    SHARD_ARRAYS,
    check_episode_tables,
    checked_manifest,
    finished_mask,
    open_array,
    provenance_of,
    read_manifest,
)
from scaledql.data.store.frame_blocks import CompressedFrames
from scaledql.errors import UserError
from scaledql.suites.base import EnvOptions
from scaledql.suites.scores import has_reference, normalize

# The keywords of ``EnvOptions``: what of a store's recorded game options a game is made with.
_ENV_OPTION_NAMES = tuple(f.name for f in dataclasses.fields(EnvOptions))


@dataclass
class Shard:
    """Memory-mapped arrays of one shard (``format`` says what they mean)."""

    frames: np.ndarray | CompressedFrames  # uint8[F, C, H, W], frame 0 zeros (or zstd blocks)
    actions: np.ndarray  # int32[F]
    rewards: np.ndarray  # float32[F]
    returns_to_go: np.ndarray  # float32[F]
    ep_frame_start: np.ndarray  # int64[E]
    ep_length: np.ndarray  # int64[E]
    ep_step_offset: np.ndarray  # int64[E]
    ep_flags: np.ndarray  # uint8[E]
    ep_return: np.ndarray  # float64[E]
    num_transitions: int
    directory: Path | None = None

    @classmethod
    def open(cls, directory: Path, info: dict, frame_shape: tuple[int, int, int],
             compressed: bool = False) -> Shard:
        """Map the shard's arrays; headers, file sizes and episode tables are checked
        (``format``). ``compressed``: frames are zstd blocks (``frame_blocks``), their block
        table checked."""
        if not directory.is_dir():
            raise UserError(f"{directory}: missing shard directory (the dataset is incomplete)")
        arrays: dict[str, Any] = {}
        for name, (dtype, per) in SHARD_ARRAYS.items():
            if name == "frames" and compressed:
                continue
            shape = ((info["frames"], *frame_shape) if name == "frames"
                     else (info["frames"] if per == "frame" else info["episodes"],))
            arrays[name] = open_array(directory / f"{name}.npy", dtype, shape)
        if compressed:
            arrays["frames"] = CompressedFrames(directory, info["frames"], frame_shape,
                                                info["blocks"], np.asarray(arrays["ep_frame_start"]))
        check_episode_tables(arrays, info, directory)
        return cls(**arrays, num_transitions=int(info["transitions"]), directory=directory)


class GameData:
    """One game's store, opened read-only: manifest plus memory-mapped shards.

    Attributes: ``name``, ``manifest`` (dict), ``suite``, ``num_transitions`` (real steps),
    ``num_episodes`` (finished episodes), ``frame_shape`` (C, H, W), ``stack``, ``num_actions``,
    ``obs_shape`` (stack*C, H, W), ``episode_returns`` float64[num_episodes],
    ``rewards_clipped``, ``shards`` (list of ``Shard``), ``shard_step_offsets`` int64[len(shards)+1],
    ``frame_codec`` (dict, or None for raw frames). What the manifest says of the data's
    origin is read here only: ``provenance``, ``env_options_record``, ``env_options``.
    """

    def __init__(self, directory: Path, *, name: str | None = None, manifest: dict | None = None):
        """Open ``directory``; ``name``: the game it must hold (default: the directory's name);
        ``manifest``: use this (checked) manifest instead of the directory's file."""
        self.directory = Path(directory)
        dir_name = name if name is not None else self.directory.name
        m = (read_manifest(self.directory, dir_name) if manifest is None
             else checked_manifest(manifest, self.directory / MANIFEST, dir_name))
        self.manifest = m
        self.name: str = m["game"]
        self.suite: str = m["suite"]
        self.frame_shape: tuple[int, int, int] = tuple(int(x) for x in m["frame_shape"])
        self.stack: int = int(m["stack"])
        self.num_actions: int = int(m["num_actions"])
        self.rewards_clipped: bool = bool(m.get("rewards_clipped", False))
        self.obs_shape = (self.stack * self.frame_shape[0], *self.frame_shape[1:])
        self.frame_codec: dict | None = m.get("frame_codec")  # None: raw frames.npy
        self.shards = [Shard.open(self.directory / s["name"], s, self.frame_shape,
                                  compressed=self.frame_codec is not None) for s in m["shards"]]
        self.shard_step_offsets = np.concatenate(
            [[0], np.cumsum([s.num_transitions for s in self.shards])]).astype(np.int64)
        self.num_transitions = int(self.shard_step_offsets[-1])
        if self.num_transitions != int(m["counts"]["transitions"]):
            raise UserError(f"{self.directory / MANIFEST}: shards hold {self.num_transitions} "
                            f"transitions, counts say {m['counts']['transitions']}")
        self.episode_returns = np.asarray(m["episode_returns"], dtype=np.float64)
        self.num_episodes = len(self.episode_returns)

    @property
    def provenance(self) -> dict:
        """Where the data came from (the manifest's ``provenance``: source, command, seed, the
        game options it was collected with, ...); ``{}`` when the manifest records none."""
        return provenance_of(self.manifest)

    @property
    def env_options_record(self) -> Any:
        """The game options exactly as the provenance records them (a dict of ``EnvOptions``
        fields; None when unrecorded). Copied as is by merges and interchange exports."""
        return self.provenance.get("env_options")

    @property
    def env_options(self) -> dict[str, Any]:
        """The game options the data was collected with, as ``EnvOptions`` keywords (so that
        evaluation plays the same game); ``{}``: the suite's defaults."""
        return {k: v for k, v in (self.env_options_record or {}).items()
                if k in _ENV_OPTION_NAMES}

    def info(self) -> dict:
        """Summary for ``data info``: counts, behaviour returns, normalized behaviour score."""
        m = self.manifest
        behaviour = behaviour_score(self)
        return {
            "transitions": self.num_transitions,
            "episodes": self.num_episodes,
            "episode_returns": [float(r) for r in self.episode_returns],
            "mean_return": behaviour.mean_return,
            "suite": self.suite,
            "num_actions": self.num_actions,
            "action_set": m.get("action_set"),
            "frame_shape": list(self.frame_shape),
            "stack": self.stack,
            "rewards_clipped": self.rewards_clipped,
            "shards": len(self.shards),
            "frame_codec": self.frame_codec,
            "counts": dict(m["counts"]),
            "provenance": m.get("provenance", {}),
            "normalized_score": behaviour.score,
        }


@dataclass(frozen=True)
class BehaviourScore:
    """What a game store's episodes say about its behaviour policy (``behaviour_score``)."""

    returns: np.ndarray  # float64[n]: the returns of the episodes that count, in time order
    normalized: np.ndarray | None  # float64[n]: those normalized; None: no reference scores
    mean_return: float | None  # None when no episode counts
    score: float | None  # the mean return normalized; None: no episode or no reference

    @property
    def episodes(self) -> int:
        return len(self.returns)


def behaviour_score(g: GameData, steps: int | None = None) -> BehaviourScore:
    """The behaviour policy's score in ``g``: the mean return of its finished episodes, and
    that mean normalized by the suite's reference scores, (mean - random) / (reference -
    random), as ``suites.scores.normalize`` does (human-normalized for Atari).

    The episodes that count are the *finished* ones, every one of them, in time order:
    terminated or truncated, and begun inside the data (exactly the manifest's
    ``episode_returns``). Unfinished episodes (where a collection or an import stopped) and
    those that began before the data (DQN Replay's partial starts) are left out: their returns
    are not whole episodes' returns.

    ``steps``: only the part of the store in its first ``steps`` transitions in time order
    counts, i.e. the finished episodes that end there: for the part that ``--data-fraction F``
    trains on pass ``sampler.fraction_of(g, F)["transitions"]``. None: the whole store.
    """
    returns = g.episode_returns
    if steps is not None:
        ends = [g.shard_step_offsets[i] + np.asarray(s.ep_step_offset) + np.asarray(s.ep_length)
                for i, s in enumerate(g.shards)]
        finished = np.concatenate([e[finished_mask(s.ep_flags)]
                                   for e, s in zip(ends, g.shards, strict=True)])
        returns = returns[:int(np.searchsorted(finished, steps, side="right"))]
    if not len(returns):
        return BehaviourScore(returns, None, None, None)
    mean = float(returns.mean())
    if not has_reference(g.suite, g.name):
        return BehaviourScore(returns, None, mean, None)
    normalized = np.asarray(normalize(g.suite, g.name, returns), np.float64)
    return BehaviourScore(returns, normalized, mean, float(normalize(g.suite, g.name, mean)))
