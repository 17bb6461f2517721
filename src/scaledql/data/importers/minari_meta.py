"""What an export writes into a Minari dataset besides its episodes, and its checked reading.

Minari's own fields say what the episodes hold (spaces, steps, terminations, truncations) but
not everything a game store's manifest says. So that export → import gives back the same store
bytes, with no flag to repeat, an export adds two entries to ``metadata.json``:

* ``env_spec`` (Minari's field): the game's gymnasium spec as JSON, its id naming the game
  (``MinAtar/Breakout-v1``, ``ALE/Pong-v5``) and its kwargs the store's game options (sticky
  actions, mode, difficulty, action space, episode cap). Built from gymnasium's registry,
  never by making the environment. The importer reads only its ``id``
  (``minari_read.env_id``). For Atari the dataset's frames are the store's (Dopamine's 84x84
  grayscale preprocessing), not what the bare environment returns.
* ``scaledql``, a JSON object (this module): the suite and game, the action set, the stack,
  MinAtar's channel count, whether rewards were clipped, the game options evaluation plays
  with, the episodes per shard, which episodes began before the data (``partial_start``), and
  the store's provenance (kept as ``origin``)::

    {"format": "scaledql.minari_export", "version": 1, "suite": "minatar", "game": "breakout",
     "action_set": "minimal", "stack": 1, "frame_channels": 10, "rewards_clipped": false,
     "env_options": {...}, "shard_episodes": [812, 790], "partial_start": [], "origin": {...}}

Reading trusts nothing: the block is plain JSON, every field's type and range is checked
before it is used (a bad one is one ``UserError`` naming it), and nothing in it is run. A
dataset without the block (any other Minari dataset) is read from Minari's fields alone.
Unfinished episodes (still running when the data ended) are exported unfinished: neither
termination nor truncation on their last step, which the importer reads back as unfinished.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from scaledql.data.store.format import MAX_STACK, check_game_name
from scaledql.errors import UserError

FORMAT = "scaledql.minari_export"
VERSION = 1
MAX_CHANNELS = 10  # MinAtar's widest game; a store pads every game to it
ENV_OPTION_KEYS = ("sticky", "max_episode_steps", "full_action_space", "mode", "difficulty")


@dataclass
class ExportInfo:
    """The checked ``scaledql`` block of a dataset scaledql exported."""

    suite: str
    game: str
    action_set: str
    stack: int
    frame_channels: int | None  # MinAtar only
    rewards_clipped: bool
    env_options: dict[str, Any] | None
    shard_episodes: list[int]
    partial_start: set[int]
    origin: dict[str, Any] | None


# ------------------------------------------------------------------------------------------------
# Export


def export_block(g: Any, shard_episodes: list[int], partial_start: list[int]) -> dict[str, Any]:
    """The ``scaledql`` block for the game store ``g`` (a ``store.GameData``) whose episodes
    with a step were exported, ``shard_episodes`` of them per shard."""
    prov = g.provenance
    block: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "suite": g.suite, "game": g.name,
        "action_set": str(g.manifest.get("action_set", "minimal")), "stack": g.stack,
        "frame_channels": g.frame_shape[0] if g.suite == "minatar" else None,
        "rewards_clipped": g.rewards_clipped, "shard_episodes": shard_episodes,
        "partial_start": partial_start, "origin": prov}
    if isinstance(g.env_options_record, dict):
        block["env_options"] = g.env_options_record
    return block


def env_spec_json(suite: str, game: str, options: dict[str, Any] | None) -> str:
    """The game's gymnasium ``EnvSpec`` as JSON, from the registry (nothing is made), with the
    store's game options as kwargs; '' when the suite's environments are not registered."""
    import gymnasium as gym

    o = {k: v for k, v in (options or {}).items() if v is not None}
    if suite == "atari":
        import ale_py

        from scaledql.suites import atari as suite_module

        env_id = f"ALE/{game}-v5"
        if env_id not in gym.registry:  # registering twice warns on stderr
            gym.register_envs(ale_py)
        kwargs = {"repeat_action_probability": float(o.get("sticky",
                                                           suite_module.DEFAULT_STICKY)),
                  "full_action_space": bool(o.get("full_action_space", False)),
                  **{k: o[k] for k in ("mode", "difficulty") if k in o}}
        cap = int(o.get("max_episode_steps", suite_module.DEFAULT_MAX_EPISODE_STEPS))
    else:
        from scaledql.suites import minatar as suite_module

        env_id = "MinAtar/" + game.title().replace("_", "") + "-v1"
        if env_id not in gym.registry:
            suite_module.import_minatar_gym().register_envs()
        kwargs = {"sticky_action_prob": float(o.get("sticky", suite_module.DEFAULT_STICKY))}
        cap = int(o.get("max_episode_steps", suite_module.DEFAULT_MAX_EPISODE_STEPS))
    try:
        spec = gym.spec(env_id)
    except gym.error.Error:
        return ""
    spec = dataclasses.replace(spec, kwargs={**spec.kwargs, **kwargs}, max_episode_steps=cap)
    return spec.to_json()


# ------------------------------------------------------------------------------------------------
# Import


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(block: dict, key: str, lo: int, hi: int, where: str) -> int:
    v = block.get(key)
    if not _is_int(v) or not lo <= v <= hi:
        raise UserError(f"{where}: scaledql.{key} must be an integer in [{lo}, {hi}], got "
                        f"{repr(v)[:40]}")
    return v


def _option_ok(key: str, v: Any) -> bool:
    if v is None:
        return True
    if key == "sticky":
        return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and 0 <= v <= 1)
    if key == "max_episode_steps":
        return _is_int(v) and 1 <= v <= 10**9
    if key == "full_action_space":
        return isinstance(v, bool)
    return _is_int(v) and 0 <= v <= 1 << 16  # mode, difficulty


def _env_options(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not set(value) <= set(ENV_OPTION_KEYS):
        raise UserError(f"{where}: scaledql.env_options must be a table of "
                        f"{', '.join(ENV_OPTION_KEYS)}")
    for key, v in value.items():
        if not _option_ok(key, v):
            raise UserError(f"{where}: scaledql.env_options.{key} is {repr(v)[:40]}, not a "
                            "valid value")
    return dict(value)


def read_export_block(meta: dict, where: str, total_episodes: int) -> ExportInfo | None:
    """The checked ``scaledql`` block of ``metadata.json`` (None when there is none)."""
    block = meta.get("scaledql")
    if block is None:
        return None
    if not isinstance(block, dict) or block.get("format") != FORMAT:
        raise UserError(f"{where}: metadata's scaledql entry is not a {FORMAT} table")
    if block.get("version") != VERSION:
        raise UserError(f"{where}: scaledql export version {repr(block.get('version'))[:20]} "
                        f"is not {VERSION}, the one this scaledql reads")
    suite, game = block.get("suite"), block.get("game")
    check_game_name(suite, game, f"{where}: scaledql block")
    action_set = block.get("action_set")
    if not isinstance(action_set, str) or not 0 < len(action_set) <= 64:
        raise UserError(f"{where}: scaledql.action_set must be a short string")
    stack = _int(block, "stack", 1, MAX_STACK, where)
    channels = None
    if suite == "minatar":
        channels = _int(block, "frame_channels", 1, MAX_CHANNELS, where)
    if not isinstance(block.get("rewards_clipped"), bool):
        raise UserError(f"{where}: scaledql.rewards_clipped must be true or false")
    shards = block.get("shard_episodes")
    if (not isinstance(shards, list) or not shards
            or not all(_is_int(n) and n >= 1 for n in shards) or sum(shards) != total_episodes):
        raise UserError(f"{where}: scaledql.shard_episodes must be positive counts of episodes "
                        f"per shard summing to total_episodes ({total_episodes})")
    partial = block.get("partial_start")
    if (not isinstance(partial, list)
            or not all(_is_int(i) and 0 <= i < total_episodes for i in partial)
            or len(set(partial)) != len(partial)):
        raise UserError(f"{where}: scaledql.partial_start must be distinct episode indices in "
                        f"[0, {total_episodes})")
    origin = block.get("origin")
    if origin is not None and not isinstance(origin, dict):
        raise UserError(f"{where}: scaledql.origin must be a table")
    return ExportInfo(suite, game, action_set, stack, channels, block["rewards_clipped"],
                      _env_options(block.get("env_options"), where), list(shards), set(partial),
                      origin)

