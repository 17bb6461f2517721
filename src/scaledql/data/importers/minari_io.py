"""Minari import and export (HDF5 backend), for Atari frames and MinAtar grids.

Observation layouts understood on import (one step's observation; ``step`` the frame layout):

* Atari frames, uint8: ``(84, 84)``, ``(84, 84, 1)``, ``(1, 84, 84)`` → one frame ``(1, 84, 84)``;
  stacked ``(84, 84, S)`` or ``(S, 84, 84)`` with ``S`` in 2..4 → the newest frame of each
  stack (the last channel), re-stacked at sample time (stack 4).
* MinAtar grids ``(10, 10, C)`` as MinAtar returns them → ``(10, 10, 10)`` channels-first,
  channels zero-padded to 10 (the suite's shared shape), stack 1.

**MinAtar cell convention.** A game store (and the ``minatar`` suite's environments, which
the learners see at evaluation) holds a set cell as **255** and an empty one as 0, so that a
network scaling ``uint8`` inputs by 1/255 sees 1.0 in both suites. A Minari dataset holds
MinAtar's own values: ``bool``, or ``uint8`` 0/1, with the space's ``high`` = 1. Import scales
by 255 (a set cell is one equal to the space's ``high``: a ``uint8`` Box with ``high`` 255 holding
0/255 is taken as it is); any other value is refused, never silently rescaled. Export writes
``uint8`` 0/1 grids with ``Box(0, 1)``, so export → import gives back the same store bytes.

Anything else (other shapes, dtypes, non-Discrete actions, Dict/Tuple spaces) → ``UserError``.
Export writes single frames: Atari as ``uint8[84, 84]``, MinAtar as ``uint8[10, 10, C]`` (its
native layout), lossless (no JPEG), with ``Discrete(num_actions)`` actions, and unfinished
episodes unfinished (neither flag on their last step). It also records the game and what else
the store's manifest says (``minari_meta``: ``env_spec`` and a ``scaledql`` block), so that
export → import, with no flag, gives back the same store files byte for byte (the manifest's
``provenance`` and ``created`` say where and when it was imported). The one exception:
Minari cannot hold an episode without a step, so the rare terminated zero-step episode (only
``GameWriter``'s API can write one) is left out, and the export says so. Only local datasets
are read (``MINARI_DATASETS_PATH`` or a path); nothing is ever downloaded. Reading never goes
through minari's own reader (see ``minari_read``: nothing in a dataset can name code to run).

Writers: an import writes through ``GameWriter`` (one writer per game store, atomic publish).
An export holds a lock per dataset id, builds the dataset in a hidden staging directory of the
datasets root (``out``, default ``MINARI_DATASETS_PATH``) and moves it into place when complete; a crashed export leaves only the staging
directory, which the next export of that id removes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from scaledql.atomic_files import file_lock, missing_dirs, remove_empty_dirs
from scaledql.data.importers.minari_meta import (
    ExportInfo,
    env_spec_json,
    export_block,
    read_export_block,
)
from scaledql.data.importers.minari_read import BoxSpace, MinariSource, datasets_root, env_id
from scaledql.data.store.dataset import open_dataset
from scaledql.data.store.format import FLAG_PARTIAL_START, FLAG_TERMINATED, FLAG_TRUNCATED
from scaledql.data.store.writer import GameWriter
from scaledql.errors import UserError

ATARI_HW = (84, 84)
MINATAR_HW = (10, 10)
MINATAR_CHANNELS = 10
MINATAR_ON = 255  # a set cell in a store (scaledql.suites.minatar.ON)
EXPORT_ID = re.compile(r"([\w-]+/)?[\w-]+-v\d+")


def _frame_layout(space: BoxSpace, where: str) -> tuple[str, tuple[int, int, int], int]:
    """(kind, frame_shape, stack) for an observation space; ``UserError`` if unsupported."""
    shape, dtype = space.shape, space.dtype
    if dtype == np.uint8 and (shape == ATARI_HW or shape in ((*ATARI_HW, 1), (1, *ATARI_HW))):
        return "atari", (1, *ATARI_HW), 4
    if dtype == np.uint8 and len(shape) == 3 and shape[:2] == ATARI_HW and 2 <= shape[2] <= 4:
        return "atari_hwc_stack", (1, *ATARI_HW), 4
    if dtype == np.uint8 and len(shape) == 3 and shape[1:] == ATARI_HW and 2 <= shape[0] <= 4:
        return "atari_chw_stack", (1, *ATARI_HW), 4
    if len(shape) == 3 and shape[:2] == MINATAR_HW and 1 <= shape[2] <= MINATAR_CHANNELS:
        if dtype == np.bool_ or (space.low == 0 and space.high in (1, MINATAR_ON)):
            return "minatar", (MINATAR_CHANNELS, *MINATAR_HW), 1
        raise UserError(f"{where}: MinAtar grids need a bool Box or a uint8 Box(0, 1) "
                        f"(or Box(0, 255) holding 0/255), not uint8 Box({space.low:g}, "
                        f"{space.high:g})")
    raise UserError(f"{where}: observation space Box{shape} {dtype} is not supported (Atari "
                    "frames uint8 84x84[xS] or MinAtar grids 10x10xC bool/uint8)")


def _to_frames(obs: np.ndarray, kind: str, high: float, where: str,
               channels: int = MINATAR_CHANNELS) -> np.ndarray:
    """Observations [T+1, ...] → single store frames uint8[T+1, C, H, W] (MinAtar: ``channels``
    channels, the observation's first, zero-padded)."""
    if kind == "atari":
        return obs.reshape(len(obs), 1, *ATARI_HW).astype(np.uint8, copy=False)
    if kind == "atari_hwc_stack":
        return np.ascontiguousarray(obs[..., -1])[:, None]
    if kind == "atari_chw_stack":
        return np.ascontiguousarray(obs[:, -1:])
    on = 1 if obs.dtype == np.bool_ else int(high)
    if obs.dtype != np.bool_ and ((obs != 0) & (obs != on)).any():
        raise UserError(f"{where}: MinAtar grid values must be 0 or {on} (the space's high), "
                        f"found {int(obs[(obs != 0) & (obs != on)][0])}")
    grid = np.moveaxis(obs != 0, -1, 1)  # [T+1, C, 10, 10], set cells
    out = np.zeros((len(obs), channels, *MINATAR_HW), np.uint8)
    out[:, : grid.shape[1]][grid] = MINATAR_ON
    return out


def _game_from(source: MinariSource) -> str | None:
    m = re.match(r"^(?:ALE/)?([A-Za-z]+)(?:NoFrameskip)?-v\d+$", env_id(source.meta))
    if m:
        return m.group(1)
    m = re.match(r"^MinAtar/([A-Za-z-]+)-v\d+$", env_id(source.meta))
    if m:
        return m.group(1).lower().replace("-", "_")
    return None


def _canonical_game(suite_name: str, game: str, where: str) -> str:
    """One game of the suite, spelled as the suite spells it (``pong`` → ``Pong``)."""
    from scaledql.suites import get_suite

    suite = get_suite(suite_name)
    if game in suite.named_lists() or "," in game:
        raise UserError(f"{where}: --game takes one {suite_name} game, got {game!r}")
    return suite.resolve_games(game)[0]


def _layout(src: MinariSource, kind: str, frame_shape: tuple[int, int, int], stack: int,
            info: ExportInfo | None) -> tuple[tuple[int, int, int], int]:
    """(frame_shape, stack) of the store to write: the observation layout's, or what the
    export recorded when that agrees with the observations."""
    if info is None:
        return frame_shape, stack
    suite = "minatar" if kind == "minatar" else "atari"
    if info.suite != suite:
        raise UserError(f"{src.where}: its scaledql block says suite {info.suite!r}, its "
                        f"observations are {suite} frames")
    if suite == "atari":
        return frame_shape, info.stack
    channels = info.frame_channels or MINATAR_CHANNELS
    if info.stack != 1 or channels < src.obs.shape[2]:
        raise UserError(f"{src.where}: its scaledql block says {channels} channels, stack "
                        f"{info.stack}; the observations have {src.obs.shape[2]} channels "
                        "(MinAtar stores have stack 1)")
    return (channels, *MINATAR_HW), 1


def import_minari(path_or_id: str, out: Path, *, game: str | None = None,
                  overwrite: bool = False, shard_steps: int = 1_000_000,
                  command: str | None = None) -> Path:
    """Import a local Minari dataset into ``out/<game>``; episodes are streamed one at a time.
    A dataset scaledql exported says its game and layout (``minari_meta``): ``game`` may then
    be left out, and the store comes back as it was exported."""
    src = MinariSource(path_or_id)
    where = src.where
    kind, frame_shape, stack = _frame_layout(src.obs, where)
    suite = "minatar" if kind == "minatar" else "atari"
    info = read_export_block(src.meta, where, src.total_episodes)
    frame_shape, stack = _layout(src, kind, frame_shape, stack, info)
    if game is not None:
        game = _canonical_game(suite, game, where)
        if info is not None and game != info.game:
            raise UserError(f"{where}: --game {game}, but the dataset was exported from "
                            f"{info.game} (leave --game out)")
    else:
        named = info.game if info is not None else _game_from(src)
        if not named:
            raise UserError(f"{where}: cannot tell the game from its environment spec; "
                            "pass --game")
        game = _canonical_game(suite, named, where)
    provenance: dict = {"source": "minari", "dataset": str(path_or_id),
                        "command": command or " ".join(sys.argv)}
    if info is not None and info.env_options is not None:
        provenance["env_options"] = info.env_options
    elif suite == "atari" and src.num_actions == 18:  # evaluation then plays all 18 actions too
        provenance["env_options"] = {"full_action_space": True}
    if info is not None and info.origin is not None:
        provenance["origin"] = info.origin
    # the exported shard boundaries, or shards of shard_steps transitions
    ends = np.cumsum(info.shard_episodes).tolist() if info is not None else []
    with GameWriter(out, suite=suite, game=game, num_actions=src.num_actions,
                    frame_shape=frame_shape, stack=stack,
                    action_set=info.action_set if info is not None else "dataset",
                    rewards_clipped=info.rewards_clipped if info is not None else False,
                    provenance=provenance, shard_steps=shard_steps if info is None else 1 << 62,
                    overwrite=overwrite) as writer:
        for i, ep in enumerate(src.episodes()):
            writer.add_episode(_to_frames(ep.observations, kind, src.obs.high,
                                          f"{where}: episode {i}", frame_shape[0]),
                               ep.actions, ep.rewards, ep.terminated,
                               ep.truncated and not ep.terminated,
                               partial_start=info is not None and i in info.partial_start)
            if ends and i + 1 == ends[0]:
                writer.end_shard()
                ends.pop(0)
        return writer.close()


@contextlib.contextmanager
def _datasets_path(path: Path) -> Iterator[None]:
    """minari writes under ``MINARI_DATASETS_PATH``: point it at ``path`` for the block."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _encoder(g):
    """(observation space, frames → Minari observations) of a game store; ``UserError`` if the
    store is neither Atari frames nor MinAtar grids."""
    import gymnasium as gym

    if g.suite == "atari" and g.frame_shape == (1, *ATARI_HW):
        return gym.spaces.Box(0, 255, ATARI_HW, np.uint8), lambda f: np.ascontiguousarray(f[:, 0])
    if g.suite == "minatar" and g.frame_shape[1:] == MINATAR_HW:
        def encode(frames: np.ndarray) -> np.ndarray:
            if ((frames != 0) & (frames != MINATAR_ON)).any():
                raise UserError(f"{g.directory}: MinAtar frames hold values other than 0 and "
                                f"{MINATAR_ON} (run `scaledql data verify`)")
            return np.ascontiguousarray(np.moveaxis(frames == MINATAR_ON, 1, -1)).astype(np.uint8)

        return gym.spaces.Box(0, 1, (*MINATAR_HW, g.frame_shape[0]), np.uint8), encode
    raise UserError(f"{g.directory}: only Atari (1x84x84) and MinAtar (Cx10x10) stores can be "
                    f"exported to Minari, not {g.suite} {g.frame_shape}")


def export_minari(root: Path, game: str, dataset_id: str, *, out: Path | None = None,
                  author: str | None = None, description: str | None = None) -> dict:
    """Write the game store ``root/<game>`` as the local Minari dataset ``dataset_id`` under
    ``out`` (a Minari datasets root; default ``MINARI_DATASETS_PATH`` or ``~/.minari/datasets``).
    Returns ``{"path", "episodes", "steps", "left_out"}`` (``left_out``: zero-step episodes)."""
    import gymnasium as gym

    if not EXPORT_ID.fullmatch(dataset_id):
        raise UserError(f"bad Minari dataset id {dataset_id!r} (expected namespace/name-v0)")
    g = open_dataset(root, [game], contents=True).game(game)
    if g.frame_codec is not None:
        raise UserError(f"{g.directory}: its frames are compressed; export the raw store it was "
                        "compressed from")
    obs_space, encode = _encoder(g)
    # Absolute: minari writes files relative to the dataset path it is given, so a relative
    # root would be applied twice.
    base = (Path(out) if out is not None else datasets_root()).absolute()
    final = base / dataset_id
    flat = dataset_id.replace("/", "__")
    if base.exists() and not base.is_dir():
        raise UserError(f"Minari datasets root {base} is not a directory")
    if final.exists():
        raise UserError(f"Minari dataset {dataset_id!r} already exists ({final}); remove it or "
                        "choose another id")
    made = missing_dirs(base)
    try:
        with file_lock(base / f".{flat}.export.lock", "Minari export", final, remove=True):
            if final.exists():  # finished by another export while we waited for the lock
                raise UserError(f"Minari dataset {dataset_id!r} already exists ({final})")
            staging = base / f".{flat}.export"
            shutil.rmtree(staging, ignore_errors=True)  # what a crashed export left behind
            try:
                result = _write_dataset(g, dataset_id, staging, obs_space, encode, author,
                                        description, gym.spaces.Discrete(g.num_actions))
                final.parent.mkdir(parents=True, exist_ok=True)
                meta = final.parent / "namespace_metadata.json"
                staged_meta = (staging / dataset_id).parent / "namespace_metadata.json"
                if "/" in dataset_id and not meta.exists() and staged_meta.exists():
                    shutil.copyfile(staged_meta, meta)
                os.rename(staging / dataset_id, final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        remove_empty_dirs(made)  # a refused export leaves no empty datasets root behind
        raise
    return {"path": str(final), **result}


def _episode_buffers(g, encode) -> tuple[list, list[int], list[int], int]:
    """Minari episode buffers of every episode with a step, in store order; the exported
    episodes per shard, the partial-start ones, and how many zero-step episodes were left out."""
    from minari.data_collector.episode_buffer import EpisodeBuffer

    buffers, per_shard, partial, left_out = [], [], [], 0
    for sh in g.shards:
        first = len(buffers)
        for start, t, flags in zip(sh.ep_frame_start.tolist(), sh.ep_length.tolist(),
                                   sh.ep_flags.tolist(), strict=True):
            if t == 0:  # Minari cannot hold it (a terminated episode of one frame)
                left_out += 1
                continue
            if flags & FLAG_PARTIAL_START:
                partial.append(len(buffers))
            last = [False] * (t - 1)
            buffers.append(EpisodeBuffer(
                id=len(buffers), observations=encode(np.asarray(sh.frames[start:start + t + 1])),
                actions=np.asarray(sh.actions[start:start + t], np.int64),
                rewards=np.asarray(sh.rewards[start:start + t], np.float64).tolist(),
                terminations=[*last, bool(flags & FLAG_TERMINATED)],
                truncations=[*last, bool(flags & FLAG_TRUNCATED)]))  # neither: unfinished
        if len(buffers) > first:
            per_shard.append(len(buffers) - first)
    return buffers, per_shard, partial, left_out


def _write_dataset(g, dataset_id: str, staging: Path, obs_space, encode, author: str | None,
                   description: str | None, action_space) -> dict:
    import minari

    buffers, per_shard, partial, left_out = _episode_buffers(g, encode)
    if not buffers:
        raise UserError(f"{g.directory}: no episode with a step to export")
    options = g.env_options_record
    spec = env_spec_json(g.suite, g.name, options if isinstance(options, dict) else None)
    staging.mkdir(parents=True)
    with warnings.catch_warnings(), _datasets_path(staging):
        warnings.simplefilter("ignore", UserWarning)  # minari nags about optional metadata
        try:
            ds = minari.create_dataset_from_buffers(
                dataset_id, buffers, action_space=action_space,
                observation_space=obs_space, algorithm_name="scaledql export",
                author=author, description=description or f"{g.suite} {g.name} exported by "
                f"scaledql from {g.directory} (provenance: {g.provenance})",
                jpeg_encoding=False)
        except ValueError as exc:
            raise UserError(f"cannot create Minari dataset {dataset_id!r}: {exc}") from None
        # Minari's env_spec is written here, not through create_dataset_from_buffers(env=...),
        # which would make the environment.
        extra = {"scaledql": export_block(g, per_shard, partial)}
        if spec:
            extra["env_spec"] = spec
        ds.storage.update_metadata(extra)
    return {"episodes": len(buffers), "steps": sum(len(b.actions) for b in buffers),
            "left_out": left_out}
