"""The MinAtar suite: five miniature Atari games on 10×10 grids (Young & Tian, 2019).

The CPU-scale embedded default. Every game is given one observation shape, ``uint8[10, 10, 10]``
(channels first, each game's boolean channels as 0/255, zero-padded to the widest game,
Seaquest's 10), so one network serves all five. Sticky actions default to 0.1 (MinAtar's own default); episodes are
truncated at ``max_episode_steps`` agent steps (default 10,000 — MinAtar itself has no cap, and a
good Breakout agent can play for ever). Each game's minimal action set (gymnasium ``-v1`` ids).
"""

from __future__ import annotations

import functools
import importlib
import sys
import types
from typing import Any

import gymnasium as gym
import numpy as np

from scaledql.suites.action_counts import MINATAR_ACTIONS
from scaledql.suites.base import (
    EnvOptions,
    GameSpec,
    check_game_options,
    normalize_key,
    resolve_from,
)

GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
CHANNELS = 10  # the widest game (seaquest)
DEFAULT_STICKY = 0.1
DEFAULT_MAX_EPISODE_STEPS = 10_000
ON = 255  # value of a set cell
RENDER_SCALE = 32  # 10×10 cells → 320×320 pixels
# Background, then one colour per channel (matplotlib's tab10, readable on black).
COLOURS = np.array([
    (0, 0, 0), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)],
    dtype=np.uint8)
_ENV_IDS = {g: "MinAtar/" + "".join(w.capitalize() for w in g.split("_")) + "-v1" for g in GAMES}


class _OnFirstUse(types.ModuleType):
    """Stands in for a module not imported yet: the first attribute asked of it imports it."""

    def __getattr__(self, attr: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attr)


# Imported at the top of minatar's modules, used only to draw a window or an RGB frame.
_DISPLAY_MODULES = ("seaborn", "matplotlib.pyplot")


def import_minatar_gym() -> types.ModuleType:
    """``minatar.gym``, imported without its display libraries: minatar imports pyplot and
    seaborn (and through it scipy and pandas) at the top of its modules, ~1 s of every process
    that plays a game (a third of a short study job) for a window we never open. For this import
    they stand in as modules that load on first use (so minatar's own display still works);
    afterwards ``import seaborn`` anywhere imports the real one."""
    if "minatar.gym" in sys.modules:
        return sys.modules["minatar.gym"]
    stand_ins = {n: _OnFirstUse(n) for n in _DISPLAY_MODULES if n not in sys.modules}
    sys.modules.update(stand_ins)
    try:
        import minatar.gym
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
    return minatar.gym


@functools.cache
def _register_envs() -> None:
    import_minatar_gym().register_envs()


class PadChannels(gym.ObservationWrapper):
    """bool[10, 10, C] (channels last) → uint8[CHANNELS, 10, 10] in {0, 255} (channels first,
    zero-padded). 255 for "on" so that every suite's pixels mean the same to a network that
    scales uint8 inputs by 1/255."""

    def __init__(self, env: gym.Env, channels: int = CHANNELS):
        super().__init__(env)
        h, w, _ = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (channels, h, w), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        out = np.zeros(self.observation_space.shape, np.uint8)
        # a transposed view (0.4 µs; np.moveaxis takes 10 µs, 3% of an evaluation)
        grid = np.asarray(observation, dtype=bool).transpose(2, 0, 1)
        out[: grid.shape[0]][grid] = ON
        return out


# MinAtar's full action set, in its own order (``Environment.minimal_action_set`` indexes it)
_ACTION_NAMES = ("noop", "left", "up", "right", "down", "fire")
_OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}


class ReversedControls(gym.ActionWrapper):
    """Each movement action of the game's action set does its opposite (left ↔ right,
    up ↔ down); no-op and fire are unchanged (``EnvOptions.reversed_controls``)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        names = [_ACTION_NAMES[a] for a in env.unwrapped.action_set]
        self.mapping = np.array([names.index(_OPPOSITE.get(n, n)) for n in names], np.int64)

    def action(self, action: int) -> int:
        return int(self.mapping[int(action)])


class MinAtarSuite:
    name = "minatar"
    default_sticky = DEFAULT_STICKY
    default_max_episode_steps = DEFAULT_MAX_EPISODE_STEPS
    binary_frames = True  # every stored cell is 0 or ON: a full store check reads them all
    data_card_note = None
    variant_options = "--reversed-controls or --sticky (e.g. 0.3)"  # what makes a variant

    def __init__(self) -> None:
        # MinAtar's gym ids are registered on the first environment, not here: importing
        # minatar.gym imports seaborn (1.4 s), and listing or resolving games needs none of it.
        self._canonical = {normalize_key(g): g for g in GAMES}

    def games(self) -> list[str]:
        return list(GAMES)

    def named_lists(self) -> dict[str, list[str]]:
        return {"all": list(GAMES)}

    def resolve_games(self, spec: str | None) -> list[str]:
        return resolve_from(self.name, self.named_lists(), spec, self._canonical)

    def _check(self, game: str, options: EnvOptions | None) -> EnvOptions:
        return check_game_options(self.name, list(GAMES), game, options)

    def spec(self, game: str, options: EnvOptions | None = None) -> GameSpec:
        self._check(game, options)
        return GameSpec(self.name, game, MINATAR_ACTIONS[game], (CHANNELS, 10, 10), stack=1)

    def make_env(self, game: str, options: EnvOptions | None = None) -> gym.Env:
        options = self._check(game, options)
        sticky = DEFAULT_STICKY if options.sticky is None else options.sticky
        cap = options.max_episode_steps or DEFAULT_MAX_EPISODE_STEPS
        _register_envs()
        env = gym.make(_ENV_IDS[game], sticky_action_prob=sticky)
        if options.reversed_controls:
            env = ReversedControls(env)
        env = PadChannels(env)
        return gym.wrappers.TimeLimit(env, max_episode_steps=cap)

    def make_vector_env(
        self, game: str, num_envs: int, options: EnvOptions | None = None
    ) -> gym.vector.VectorEnv:
        self._check(game, options)
        # MinAtar steps take microseconds: worker processes would cost more than they save.
        return gym.vector.SyncVectorEnv(
            [lambda: self.make_env(game, options) for _ in range(num_envs)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )

    def render(self, env: gym.Env, obs: np.ndarray) -> np.ndarray:
        """A colour map of the newest frame's grid: each cell takes the colour of its highest
        set channel, as MinAtar's own display does, scaled up."""
        cells = np.asarray(obs)[-CHANNELS:] > 0
        weights = np.arange(1, CHANNELS + 1)[:, None, None]
        index = (cells * weights).max(0)  # the highest set channel, 0 where none
        return COLOURS[index].repeat(RENDER_SCALE, 0).repeat(RENDER_SCALE, 1)
