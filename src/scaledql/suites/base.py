"""One interface over game suites.

A *suite* names a family of games (``atari``, ``minatar``). Every game is a gymnasium environment
whose observations are ``uint8[stack * C, H, W]`` — ``stack`` frames of shape ``frame_shape``
concatenated on the channel axis, oldest first, zero-padded at an episode's start (as Dopamine
and the DQN Replay Dataset do). Datasets store single frames (the last ``C`` channels) and the
sampler re-stacks them, so a network sees the same input in the data and in the game.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: the CLI imports suites to build --help, gymnasium is slow
    import gymnasium as gym
    import numpy as np


@dataclass(frozen=True)
class GameSpec:
    """What a learner needs to know of one game."""

    suite: str
    name: str
    num_actions: int
    frame_shape: tuple[int, int, int]  # (C, H, W) of one stored frame, uint8
    stack: int  # frames stacked into one observation

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        c, h, w = self.frame_shape
        return (self.stack * c, h, w)


@dataclass(frozen=True)
class EnvOptions:
    """Options that change the game itself. ``None`` means the suite's default.

    ``sticky``: probability that the previous action repeats (Atari 0.25, MinAtar 0.1).
    ``max_episode_steps``: agent-step cap; the episode is *truncated* there.
    ``full_action_space``: Atari only — all 18 actions instead of the game's minimal set.
    ``mode`` / ``difficulty``: Atari only — ALE game modes/difficulties ("game variants").
    ``reversed_controls``: MinAtar only — every movement action does its opposite (left ↔
    right, up ↔ down; no-op and fire unchanged): the same screens and rules, other dynamics
    under the agent's actions (a variant for online fine-tuning, ``docs/finetune.md``).
    """

    sticky: float | None = None
    max_episode_steps: int | None = None
    full_action_space: bool = False
    mode: int | None = None
    difficulty: int | None = None
    reversed_controls: bool = False

    def validate(self) -> EnvOptions:
        """Refuse options out of range (one ``UserError`` line, named by the command's flags,
        as the CLI and the Python API both report it); returns ``self``."""
        from scaledql.errors import UserError

        if self.sticky is not None and not 0.0 <= self.sticky <= 1.0:
            raise UserError(f"--sticky must be in [0, 1], got {self.sticky}")
        if self.max_episode_steps is not None and self.max_episode_steps <= 0:
            raise UserError(f"--max-episode-steps must be positive, got {self.max_episode_steps}")
        return self

    def record(self) -> dict[str, Any]:
        """The options as stores, action logs and checkpoints record them: every field, but
        ``reversed_controls`` only when set, so that records made before it existed (committed
        action logs, archived runs) still compare equal to the default game."""
        record = dataclasses.asdict(self)
        if not record["reversed_controls"]:
            del record["reversed_controls"]
        return record


class Suite(Protocol):
    """What every suite provides. Optional attributes, read with ``getattr`` where present:
    ``reference_scores`` (game → (random, reference) for normalized scores; none: raw returns)
    and ``preset`` (its configuration layer for ``train``, shaped like ``configs/<suite>.toml``)
    — the built-in suites keep theirs in ``scores`` and ``configs``.

    ``default_sticky`` and ``default_max_episode_steps`` are what ``EnvOptions``' ``None`` means
    for this suite: the values stores, fine-tuning variants and recordings resolve against.

    What the rest of the package asks a suite instead of branching on its name (optional,
    read through ``suites.suite_attribute`` with the default in brackets): ``binary_frames``
    (False): every frame value is 0 or 255, and a full store check reads every frame to hold
    it to that; ``data_card_note`` (None): a paragraph a data card adds for stores of this
    suite, formatted with the card's fields; ``variant_options`` ("--sticky (e.g. 0.3)"): the
    options that make a fine-tuning variant of a game. ``render`` draws a game for ``scaledql play``; a
    suite without it cannot be played."""

    name: str
    default_sticky: float
    default_max_episode_steps: int

    def games(self) -> list[str]:
        """Every game name of the suite, in a fixed order."""

    def named_lists(self) -> dict[str, list[str]]:
        """Named game lists (e.g. ``all``, ``train40``); ``resolve_games`` accepts these names."""

    def resolve_games(self, spec: str | None) -> list[str]:
        """A comma list of games or a named list → canonical game names (``UserError`` if unknown)."""

    def spec(self, game: str, options: EnvOptions | None = None) -> GameSpec: ...

    def make_env(self, game: str, options: EnvOptions | None = None) -> gym.Env:
        """One preprocessed, stacked, capped environment (raw, unclipped rewards)."""

    def make_vector_env(
        self, game: str, num_envs: int, options: EnvOptions | None = None
    ) -> gym.vector.VectorEnv:
        """``num_envs`` copies of ``make_env`` in one vector env (same-step autoreset)."""

    def render(self, env: gym.Env, obs: np.ndarray) -> np.ndarray:
        """The game's current picture, uint8[H, W, 3] (even H and W), for ``scaledql play``:
        ``env`` one of ``make_env``'s environments, ``obs`` its latest observation."""


def resolve_from(suite: str, named: dict[str, list[str]], spec: str | None,
                 canonical: dict[str, str]) -> list[str]:
    """Shared parsing of ``--games``: None → ``named['default']`` (else ``named['all']``); a list
    name; or a comma list.

    ``canonical`` maps a normalized key (lower case, no ``_``/``-``) to the canonical name.
    """
    from scaledql.errors import UserError

    if spec is None:
        return list(named.get("default", named["all"]))
    if not spec.strip():  # an empty --games is a mistake, not "the default games"
        raise UserError(f"no games given in --games {spec!r}")
    if spec in named:
        return list(named[spec])
    out: list[str] = []
    for raw in spec.split(","):
        key = raw.strip().lower().replace("_", "").replace("-", "").replace(" ", "")
        if not key:
            continue
        if key not in canonical:
            lists = ", ".join(sorted(named))
            raise UserError(
                f"unknown {suite} game {raw.strip()!r} (see `scaledql suites`; named lists: {lists})"
            )
        name = canonical[key]
        if name not in out:
            out.append(name)
    if not out:
        raise UserError(f"no games given in --games {spec!r}")
    return out


def validate_game_name(game: str) -> None:
    """A game name is a store's directory name: no path separators, not hidden."""
    from scaledql.errors import UserError

    if not game or game.startswith(".") or "/" in game or "\\" in game or game in ("..",):
        raise UserError(f"invalid game name {game!r} for a dataset directory")


def normalize_key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


def check_game_options(suite: str, games: tuple[str, ...] | list[str], game: str,
                       options: EnvOptions | None) -> EnvOptions:
    """A known game of a suite without ALE's options (modes, difficulties, full action set)."""
    from scaledql.errors import UserError

    if game not in games:
        raise UserError(f"unknown {suite} game {game!r} (games: {', '.join(games)})")
    options = options or EnvOptions()
    if options.mode is not None or options.difficulty is not None:
        raise UserError("--mode/--difficulty apply to the atari suite only")
    if options.reversed_controls and suite != "minatar":
        raise UserError("--reversed-controls applies to the minatar suite only")
    if options.full_action_space:
        raise UserError("--full-action-space applies to the atari suite only")
    return options
