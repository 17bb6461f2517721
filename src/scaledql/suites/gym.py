"""A suite of any gymnasium environments with discrete actions and image observations.

``GymSuite(name, {game: env_id or factory})`` gives them the interface and conventions of the
built-in suites (``suites.base``), so collection, training, evaluation and the stores work
unchanged (docs/extending.md):

- each observation becomes one ``uint8[C, H, W]`` frame (``wrappers.ImageFrames``: channels
  first, booleans as 0/255, optionally grayscale and resized), the ``stack`` most recent frames
  concatenated on the channel axis with zero frames before an episode's first, as the Atari
  suite and the stores do;
- sticky actions with probability ``sticky`` (default 0: the environment as written;
  ``EnvOptions.sticky`` overrides it per run), as gymnasium's ``StickyAction``;
- episodes truncated at ``max_episode_steps`` agent steps (default 10,000, as MinAtar: an
  evaluation must end); raw, unclipped rewards.

Scores: with ``reference_scores={game: (random, reference)}`` evaluations report normalized
scores, (return − random) / (reference − random), and their IQM / median / mean; without a
table (or for a game missing from it) they report raw returns only, and no aggregate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from scaledql.errors import UserError
from scaledql.suites.base import (
    EnvOptions,
    GameSpec,
    check_game_options,
    normalize_key,
    resolve_from,
)
from scaledql.suites.wrappers import ImageFrames, frame_picture, stack_frames

DEFAULT_MAX_EPISODE_STEPS = 10_000
EnvSource = str | Callable[[], gym.Env]  # a registered gymnasium id, or a zero-argument factory


class GymSuite:
    """See the module docstring. ``games``: game name → gymnasium id (made with ``gym.make(id,
    **env_kwargs.get(game, {}))``) or a factory returning a fresh environment. Game names are
    store directory names (no ``/``, not starting with ``.``). ``named_lists``: extra
    ``--games`` lists (``all`` is every game). ``preset``: the suite's configuration layer for
    ``scaledql train`` (a dict shaped like ``configs/minatar.toml``, or a TOML path; default:
    none, the learner's own defaults). ``layout``: how to read 3-axis observations (``auto``,
    ``hwc``, ``chw``)."""

    binary_frames = False  # frames are any uint8 values (booleans only become 0/255)
    data_card_note = None
    variant_options = "--sticky (e.g. 0.3)"  # what makes a variant

    def __init__(self, name: str, games: Mapping[str, EnvSource], *, stack: int = 4,
                 sticky: float = 0.0, max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
                 grayscale: bool = False, frame_size: tuple[int, int] | None = None,
                 layout: str = "auto",
                 reference_scores: Mapping[str, tuple[float, float]] | None = None,
                 named_lists: Mapping[str, Sequence[str]] | None = None,
                 preset: Mapping[str, Any] | str | Path | None = None,
                 env_kwargs: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        from scaledql.suites.base import validate_game_name

        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ValueError(f"GymSuite: bad suite name {name!r}")
        if not games:
            raise ValueError(f"GymSuite {name!r}: no games")
        for game, source in games.items():
            validate_game_name(game)
            if not (isinstance(source, str) or callable(source)):
                raise TypeError(f"GymSuite {name!r}: game {game!r} needs a gymnasium id or a "
                                f"factory, got {source!r}")
        if stack < 1 or max_episode_steps < 1 or not 0.0 <= sticky <= 1.0:
            raise ValueError(f"GymSuite {name!r}: need stack >= 1, max_episode_steps >= 1, "
                             f"sticky in [0, 1]; got {stack}, {max_episode_steps}, {sticky}")
        self.name = name
        self._games = dict(games)
        self.stack = int(stack)
        self.default_sticky, self.default_max_episode_steps = float(sticky), int(max_episode_steps)
        self.grayscale, self.frame_size, self.layout = grayscale, frame_size, layout
        self.env_kwargs = {g: dict(k) for g, k in (env_kwargs or {}).items()}
        self.reference_scores = {g: (float(r), float(ref))
                                 for g, (r, ref) in (reference_scores or {}).items()}
        for game, (random, reference) in self.reference_scores.items():
            if game not in self._games or not (math.isfinite(random) and math.isfinite(reference)) \
                    or random == reference:
                raise ValueError(f"GymSuite {name!r}: reference_scores[{game!r}] must be a game's "
                                 f"finite (random, reference) with random != reference")
        self._named = {"all": list(self._games)}
        for list_name, members in (named_lists or {}).items():
            unknown = [g for g in members if g not in self._games]
            if unknown:
                raise ValueError(f"GymSuite {name!r}: named list {list_name!r} has unknown "
                                 f"games {unknown}")
            self._named[list_name] = list(members)
        self.preset = preset
        self._canonical = {normalize_key(g): g for g in self._games}
        if len(self._canonical) != len(self._games):
            raise ValueError(f"GymSuite {name!r}: two game names differ only in case, '-' or '_'")
        self._specs: dict[str, GameSpec] = {}

    def __repr__(self) -> str:
        return f"GymSuite({self.name!r}, games={list(self._games)})"

    def games(self) -> list[str]:
        return list(self._games)

    def named_lists(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self._named.items()}

    def resolve_games(self, spec: str | None) -> list[str]:
        return resolve_from(self.name, self.named_lists(), spec, self._canonical)

    def _check(self, game: str, options: EnvOptions | None) -> EnvOptions:
        return check_game_options(self.name, list(self._games), game, options)

    def spec(self, game: str, options: EnvOptions | None = None) -> GameSpec:
        """The game's action count and frame shape, read from one environment (built once)."""
        self._check(game, options)
        if game not in self._specs:
            env = self._frames_env(game)
            try:
                self._specs[game] = GameSpec(self.name, game, int(env.action_space.n),
                                             tuple(env.observation_space.shape), self.stack)
            finally:
                env.close()
        return self._specs[game]

    def _raw_env(self, game: str) -> gym.Env:
        source = self._games[game]
        try:
            env = gym.make(source, **self.env_kwargs.get(game, {})) if isinstance(source, str) \
                else source()
        except gym.error.Error as exc:  # an unknown id, a missing extra: the user's to fix
            raise UserError(f"{self.name} game {game!r}: {exc}") from None
        if not isinstance(env, gym.Env):
            raise UserError(f"{self.name} game {game!r}: its factory returned {env!r}, not a "
                            "gymnasium.Env")
        if not isinstance(env.action_space, gym.spaces.Discrete) or env.action_space.start != 0:
            env.close()
            raise UserError(f"{self.name} game {game!r}: actions must be Discrete(n) from 0, "
                            f"the environment's are {env.action_space}")
        return env

    def _frames_env(self, game: str) -> gym.Env:
        env = self._raw_env(game)
        try:
            return ImageFrames(env, layout=self.layout, grayscale=self.grayscale,
                               size=self.frame_size)
        except UserError as exc:
            env.close()
            raise UserError(f"{self.name} game {game!r}: {exc}") from None

    def make_env(self, game: str, options: EnvOptions | None = None) -> gym.Env:
        options = self._check(game, options)
        sticky = self.default_sticky if options.sticky is None else options.sticky
        env = self._frames_env(game)
        if sticky > 0:
            env = gym.wrappers.StickyAction(env, repeat_action_probability=sticky)
        env = stack_frames(env, self.stack)
        cap = options.max_episode_steps or self.default_max_episode_steps
        return gym.wrappers.TimeLimit(env, max_episode_steps=cap)

    def render(self, env: gym.Env, obs: np.ndarray) -> np.ndarray:
        """The observation's newest frame, scaled up (``wrappers.frame_picture``): what the
        agent sees, the one picture every gymnasium environment gives without a render mode."""
        return frame_picture(obs, np.asarray(obs).shape[0] // self.stack)

    def make_vector_env(self, game: str, num_envs: int,
                        options: EnvOptions | None = None) -> gym.vector.VectorEnv:
        self._check(game, options)
        # In-process copies: a user's factory need not pickle, and small image environments
        # step faster than worker processes would exchange their frames.
        return gym.vector.SyncVectorEnv(
            [lambda: self.make_env(game, options) for _ in range(num_envs)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
