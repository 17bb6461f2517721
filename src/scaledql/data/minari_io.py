"""Minari import and export (``minari`` package, HDF5 backend), for Atari frames and MinAtar grids.

Observation layouts understood on import (one step's observation; ``step`` the frame layout):

* Atari frames, uint8: ``(84, 84)``, ``(84, 84, 1)``, ``(1, 84, 84)`` → one frame ``(1, 84, 84)``;
  stacked ``(84, 84, S)`` or ``(S, 84, 84)`` with ``S`` in 2..4 → the newest frame of each
  stack (the last channel), re-stacked at sample time (stack 4).
* MinAtar grids, bool or uint8 (values 0/1): ``(10, 10, C)`` as MinAtar returns them →
  ``(10, 10, 10)`` channels-first, channels zero-padded to 10 (the suite's shared shape), stack 1.

Anything else (other shapes, dtypes, non-Discrete actions, Dict/Tuple spaces) → ``UserError``.
Export writes single frames: Atari as ``uint8[84, 84]``, MinAtar as ``uint8[10, 10, C]`` (its
native layout), lossless (no JPEG), with ``Discrete(num_actions)`` actions; an unfinished trailing
episode is exported as truncated (Minari episodes always end). Only local datasets are read
(``MINARI_DATASETS_PATH``); nothing is ever downloaded.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np

from scaledql.data.store import FLAG_TERMINATED, FLAG_TRUNCATED, GameWriter, open_dataset
from scaledql.errors import UserError

ATARI_HW = (84, 84)
MINATAR_HW = (10, 10)
MINATAR_CHANNELS = 10


def _load(path_or_id: str):
    import minari

    path = Path(path_or_id)
    try:
        if path.exists():
            data = path / "data" if (path / "data").is_dir() else path
            return minari.MinariDataset(data)
        return minari.load_dataset(path_or_id, download=False)
    except UserError:
        raise
    except Exception as exc:  # minari raises FileNotFoundError, ValueError, KeyError, OSError...
        raise UserError(f"cannot open Minari dataset {path_or_id!r} locally ({exc}); "
                        "nothing is downloaded: set MINARI_DATASETS_PATH or give a path") from None


def _frame_layout(space, where: str) -> tuple[str, tuple[int, int, int], int]:
    """(kind, frame_shape, stack) for an observation space; ``UserError`` if unsupported."""
    import gymnasium as gym

    if not isinstance(space, gym.spaces.Box):
        raise UserError(f"{where}: observation space {space} is not supported (need a Box of "
                        "Atari frames or MinAtar grids)")
    shape, dtype = tuple(space.shape), np.dtype(space.dtype)
    if dtype == np.uint8 and (shape == ATARI_HW or shape in ((*ATARI_HW, 1), (1, *ATARI_HW))):
        return "atari", (1, *ATARI_HW), 4
    if dtype == np.uint8 and len(shape) == 3 and shape[:2] == ATARI_HW and 2 <= shape[2] <= 4:
        return "atari_hwc_stack", (1, *ATARI_HW), 4
    if dtype == np.uint8 and len(shape) == 3 and shape[1:] == ATARI_HW and 2 <= shape[0] <= 4:
        return "atari_chw_stack", (1, *ATARI_HW), 4
    if (dtype in (np.bool_, np.uint8) and len(shape) == 3 and shape[:2] == MINATAR_HW
            and 1 <= shape[2] <= MINATAR_CHANNELS):
        return "minatar", (MINATAR_CHANNELS, *MINATAR_HW), 1
    raise UserError(f"{where}: observation space {space} is not supported (Atari frames uint8 "
                    "84x84[xS] or MinAtar grids 10x10xC bool/uint8)")


def _to_frames(obs: np.ndarray, kind: str) -> np.ndarray:
    """Observations [T+1, ...] → single frames uint8[T+1, C, H, W]."""
    if kind == "atari":
        return obs.reshape(len(obs), 1, *ATARI_HW).astype(np.uint8, copy=False)
    if kind == "atari_hwc_stack":
        return np.ascontiguousarray(obs[..., -1])[:, None]
    if kind == "atari_chw_stack":
        return np.ascontiguousarray(obs[:, -1:])
    grid = np.moveaxis(obs, -1, 1).astype(np.uint8)  # [T+1, C, 10, 10]
    out = np.zeros((len(obs), MINATAR_CHANNELS, *MINATAR_HW), np.uint8)
    out[:, : grid.shape[1]] = grid
    return out


def _game_from(dataset, path_or_id: str) -> str | None:
    spec = getattr(dataset, "env_spec", None) or getattr(dataset.spec, "env_spec", None)
    env_id = getattr(spec, "id", None) or ""
    m = re.match(r"^(?:ALE/)?([A-Za-z]+)(?:NoFrameskip)?-v\d+$", env_id)
    if m:
        return m.group(1)
    m = re.match(r"^MinAtar/([A-Za-z-]+)-v\d+$", env_id)
    if m:
        return m.group(1).lower().replace("-", "_")
    del path_or_id
    return None


def import_minari(path_or_id: str, out: Path, *, game: str | None = None,
                  overwrite: bool = False, shard_steps: int = 1_000_000,
                  command: str | None = None) -> Path:
    """Import a local Minari dataset into ``out/<game>``; episodes are streamed one at a time."""
    import gymnasium as gym

    ds = _load(path_or_id)
    where = f"Minari dataset {path_or_id}"
    kind, frame_shape, stack = _frame_layout(ds.observation_space, where)
    if not isinstance(ds.action_space, gym.spaces.Discrete):
        raise UserError(f"{where}: action space {ds.action_space} is not Discrete")
    suite = "minatar" if kind == "minatar" else "atari"
    game = game or _game_from(ds, path_or_id)
    if not game:
        raise UserError(f"{where}: cannot tell the game from its environment spec; pass --game")
    num_actions = int(ds.action_space.n)
    provenance = {"source": "minari", "dataset": str(path_or_id),
                  "command": command or " ".join(sys.argv)}
    with GameWriter(out, suite=suite, game=game, num_actions=num_actions,
                    frame_shape=frame_shape, stack=stack, action_set="dataset",
                    rewards_clipped=False, provenance=provenance, shard_steps=shard_steps,
                    overwrite=overwrite) as writer:
        for i, ep in enumerate(ds.iterate_episodes()):
            obs = np.asarray(ep.observations)
            actions = np.asarray(ep.actions)
            t = len(actions)
            if obs.shape[0] != t + 1:
                raise UserError(f"{where}: episode {i} has {obs.shape[0]} observations for "
                                f"{t} actions (expected {t + 1})")
            if kind == "minatar" and obs.dtype == np.uint8 and obs.max(initial=0) > 1:
                raise UserError(f"{where}: episode {i}: MinAtar grid values must be 0/1")
            terminated = bool(np.asarray(ep.terminations)[-1]) if t else False
            truncated = bool(np.asarray(ep.truncations)[-1]) if t else False
            writer.add_episode(_to_frames(obs, kind), actions.reshape(t).astype(np.int64),
                               np.asarray(ep.rewards, dtype=np.float32).reshape(t),
                               terminated, truncated and not terminated)
        return writer.close()


def export_minari(root: Path, game: str, dataset_id: str, *, author: str | None = None,
                  description: str | None = None) -> str:
    """Write the game store ``root/<game>`` as the local Minari dataset ``dataset_id``."""
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    g = open_dataset(root, [game]).game(game)
    if g.suite == "atari" and g.frame_shape == (1, *ATARI_HW):
        obs_space = gym.spaces.Box(0, 255, ATARI_HW, np.uint8)

        def encode(frames):
            return np.ascontiguousarray(frames[:, 0])
    elif g.suite == "minatar" and g.frame_shape[1:] == MINATAR_HW:
        obs_space = gym.spaces.Box(0, 1, (*MINATAR_HW, g.frame_shape[0]), np.uint8)

        def encode(frames):
            return np.ascontiguousarray(np.moveaxis(frames, 1, -1))
    else:
        raise UserError(f"{g.directory}: only Atari (1x84x84) and MinAtar (Cx10x10) stores can be "
                        f"exported to Minari, not {g.suite} {g.frame_shape}")
    if not re.fullmatch(r"([\w-]+/)?[\w-]+-v\d+", dataset_id):
        raise UserError(f"bad Minari dataset id {dataset_id!r} (expected namespace/name-v0)")
    buffers = []
    for sh in g.shards:
        for start, t, flags in zip(sh.ep_frame_start.tolist(), sh.ep_length.tolist(),
                                   sh.ep_flags.tolist(), strict=True):
            if t == 0:
                continue
            terminated = bool(flags & FLAG_TERMINATED)
            truncated = bool(flags & FLAG_TRUNCATED) or not terminated  # Minari episodes end
            buffers.append(EpisodeBuffer(
                id=len(buffers), observations=encode(np.asarray(sh.frames[start:start + t + 1])),
                actions=np.asarray(sh.actions[start:start + t], np.int64),
                rewards=np.asarray(sh.rewards[start:start + t], np.float64).tolist(),
                terminations=[False] * (t - 1) + [terminated],
                truncations=[False] * (t - 1) + [truncated]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # minari nags about optional metadata
        try:
            minari.create_dataset_from_buffers(
                dataset_id, buffers, action_space=gym.spaces.Discrete(g.num_actions),
                observation_space=obs_space, algorithm_name="scaledql export",
                author=author, description=description or f"{g.suite} {game} exported by scaledql "
                f"from {g.directory} (provenance: {g.manifest.get('provenance', {})})",
                jpeg_encoding=False)
        except ValueError as exc:
            raise UserError(f"cannot create Minari dataset {dataset_id!r}: {exc}") from None
    return dataset_id
