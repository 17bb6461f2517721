"""A store from the user's own episodes: ``build_store`` (``GameWriter`` underneath).

Every game of a store belongs to a suite, which is where evaluation plays it: the store's
geometry (action count, frame shape, frame stack) is the suite's ``spec(game)``, and the game
options recorded are those its evaluations will use. Episodes come as ``Episode``s, as
mappings with the same keys, or from flat arrays (``episodes_from_arrays``); each is checked
by ``GameWriter.add_episode`` (dtypes, shapes, action range, finite rewards) and the finished
store by the full scan every writer runs before it publishes (``validate.verify_game``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.data.store.writer import GameWriter
from scaledql.errors import UserError
from scaledql.suites import EnvOptions, get_suite
from scaledql.suites.base import GameSpec


@dataclass
class Episode:
    """One episode: ``observations`` uint8[T+1, ...] (obs_0 .. obs_T: the first observation
    and the one after each action), ``actions`` int[T], ``rewards`` float[T] (raw),
    ``terminated`` (the game ended: no bootstrap from obs_T) or ``truncated`` (cut: a step cap,
    the end of the data); neither: an unfinished trailing episode. An observation is one frame
    uint8[C, H, W] or, as the suite's environments return it, the stack uint8[S*C, H, W]
    (only its newest frame, the last C channels, is stored: the sampler re-stacks)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool
    truncated: bool = False


EpisodeLike = Episode | Mapping[str, Any]
_KEYS = tuple(f.name for f in dataclasses.fields(Episode))


def build_store(out: Path | str, episodes: Iterable[EpisodeLike], *, suite: str, game: str,
                env_options: EnvOptions | None = None, provenance: Mapping[str, Any] | None = None,
                overwrite: bool = False, append: bool = False,
                shard_steps: int = 1_000_000) -> Path:
    """Write ``episodes`` of ``game`` of ``suite`` (a built-in or registered suite) as the
    game store ``out/<game>``; returns its path. ``env_options``: the game options the
    episodes were played with (recorded: evaluation plays the same game). ``provenance``:
    extra fields for the manifest (where the data came from). An existing store is refused
    unless ``overwrite`` (replace) or ``append`` (add shards). Any bad episode is one
    ``UserError`` naming it, and nothing is published."""
    suite_obj = get_suite(suite)
    if not isinstance(game, str) or "," in game or game in suite_obj.named_lists():
        raise UserError(f"build_store writes one {suite} game at a time, got {game!r}")
    game = suite_obj.resolve_games(game)[0]
    spec = suite_obj.spec(game, env_options)
    options = {k: v for k, v in dataclasses.asdict(env_options or EnvOptions()).items()
               if v is not None and v is not False}
    record = {"source": "user", "command": " ".join(sys.argv), **dict(provenance or {}),
              "env_options": options}
    with GameWriter(Path(out), suite=suite_obj.name, game=game, num_actions=spec.num_actions,
                    frame_shape=spec.frame_shape, stack=spec.stack, action_set="suite",
                    provenance=record, shard_steps=shard_steps, overwrite=overwrite,
                    append=append) as writer:
        for i, item in enumerate(episodes):
            ep = _episode(item, f"{game} episode {i}")
            writer.add_episode(_frames(ep.observations, spec, f"{game} episode {i}"),
                               ep.actions, ep.rewards, bool(ep.terminated), bool(ep.truncated))
        return writer.close()


def _episode(item: EpisodeLike, where: str) -> Episode:
    if isinstance(item, Episode):
        return item
    if not isinstance(item, Mapping):
        raise UserError(f"{where}: expected an Episode or a mapping with keys "
                        f"{', '.join(_KEYS)}, got {type(item).__name__}")
    missing = [k for k in _KEYS[:4] if k not in item]
    extra = sorted(set(item) - set(_KEYS))
    if missing or extra:
        raise UserError(f"{where}: " + (f"missing {', '.join(missing)}" if missing else
                                         f"unknown keys {', '.join(extra)}"))
    return Episode(**{k: item[k] for k in _KEYS if k in item})


def _frames(obs: Any, spec: GameSpec, where: str) -> np.ndarray:
    """Single frames uint8[T+1, C, H, W] from observations given as frames or as stacks."""
    obs = np.asarray(obs)
    c = spec.frame_shape[0]
    if obs.ndim == 4 and spec.stack > 1 and tuple(obs.shape[1:]) == spec.obs_shape:
        # stacks, oldest frame first: each one's older frames must be its predecessor's newer
        # ones, or the layout is not the suite's (a newest-first stack, frames of other steps)
        if len(obs) > 1 and not np.array_equal(obs[1:, :-c], obs[:-1, c:]):
            raise UserError(f"{where}: stacked observations do not overlap as {spec.stack} "
                            f"stacked frames of {c} channels, oldest first, do: pass single "
                            f"frames {spec.frame_shape} or the suite's own observations")
        return obs[:, -c:]
    return obs  # GameWriter names any other shape or dtype


def episodes_from_arrays(observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                         terminals: np.ndarray, timeouts: np.ndarray | None = None, *,
                         next_observations: np.ndarray) -> Iterator[Episode]:
    """Flat arrays of N steps (D4RL's layout) → episodes: step i is ``observations[i]``,
    ``actions[i]``, ``rewards[i]``, ``next_observations[i]``; an episode ends after a step whose
    ``terminals`` (the game ended) or ``timeouts`` (cut) flag is set, and a trailing one without
    a flag is unfinished. Within an episode ``next_observations[i]`` must be
    ``observations[i + 1]``; otherwise an end flag is missing (``UserError``)."""
    n = len(actions)
    arrays = {"observations": observations, "rewards": rewards, "terminals": terminals,
              "next_observations": next_observations,
              "timeouts": np.zeros(n, bool) if timeouts is None else timeouts}
    for key, value in arrays.items():
        if len(value) != n:
            raise UserError(f"episodes_from_arrays: {key} has {len(value)} steps, actions {n}")
    term = np.asarray(arrays["terminals"], bool)
    cut = np.asarray(arrays["timeouts"], bool)
    ends = np.flatnonzero(term | cut).tolist()
    if not ends or ends[-1] != n - 1:
        ends.append(n - 1)
    start = 0
    for end in ends if n else []:
        steps = slice(start, end + 1)
        obs = np.asarray(observations[steps])
        nxt = np.asarray(next_observations[steps])
        if len(obs) > 1 and not np.array_equal(obs[1:], nxt[:-1]):
            bad = start + int(np.flatnonzero(
                (obs[1:] != nxt[:-1]).reshape(len(obs) - 1, -1).any(1))[0])
            raise UserError(f"episodes_from_arrays: step {bad}: next_observations[{bad}] is not "
                            f"observations[{bad + 1}] within an episode (an end flag missing?)")
        yield Episode(np.concatenate([obs, nxt[-1:]]), np.asarray(actions[steps]),
                      np.asarray(rewards[steps]), bool(term[end]),
                      bool(cut[end] and not term[end]))
        start = end + 1
