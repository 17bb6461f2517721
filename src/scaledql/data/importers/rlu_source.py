"""RL Unplugged's Atari episodes on disk: the two layouts, their metadata, and the selection.

Sources (read them for the details; nothing here is copied from them):

* tensorflow/datasets ``tensorflow_datasets/rl_unplugged/atari_utils.py`` (the raw record's
  features, ``atari_example_to_rlds``, ``features_dict``, ``_SHORT_GAMES``),
  ``rlu_common.py`` (file names, one file per shard, GZIP TFRecords) and
  ``rlu_atari_checkpoints_ordered/rlu_atari_checkpoints_ordered.py`` (one split per file,
  ``checkpoint_{i:02d}``; shuffling disabled, so records keep their order);
* deepmind/deepmind-research ``rl_unplugged/atari.py`` (the games, 5 runs each, Dopamine's
  Atari environment with sticky actions).

**Raw** ``atari_episodes_ordered`` (``gs://rl_unplugged/atari_episodes_ordered``)::

    PATH/{Game}/run_{N}-{i:05d}-of-{S:05d}     GZIP TFRecord; file i = checkpoint i (1M steps)
                                               S = 50 (49 for Carnival, Gravitar, StarGunner)

one ``tf.train.Example`` per episode (and checkpoint): ``checkpoint_idx``, ``episode_idx``
(from 0 in each checkpoint), ``episode_return``, ``clipped_episode_return`` (one value each),
and per step ``observations`` (PNG, 84x84x1), ``actions``, ``unclipped_rewards``,
``clipped_rewards``, ``discounts`` (0 on the last step of an episode that ended the game).

**TFDS** ``rlu_atari_checkpoints_ordered`` (``tfds build`` / ``tfds.load`` leave it so)::

    DATA_DIR/rlu_atari_checkpoints_ordered/{Game}_run_{N}/{VERSION}/
        dataset_info.json     splits checkpoint_00 ... with each shard's record count
        features.json         the feature tree (checked against every record)
        rlu_atari_checkpoints_ordered-checkpoint_XX.tfrecord-{k:05d}-of-{K:05d}   plain TFRecord

one Example per episode, RLDS steps flattened: ``steps/observation`` (PNG), ``steps/action``,
``steps/reward``, ``steps/discount``, ``steps/is_first``, ``steps/is_last``,
``steps/is_terminal`` (bools as int64), and ``checkpoint_id``, ``episode_id``,
``episode_return``. TFDS made them from the raw records (``atari_example_to_rlds``): the same
observations, actions and rewards, ``is_terminal`` set on the last step when its raw discount
was 0, and the discounts then shifted one step earlier. Version 1.0.0 also had
``clipped_reward`` and ``clipped_episode_return``; ``features.json`` says which are there.

Both layouts' rewards are DQN Replay's, already clipped to [-1, 1] (TFDS documents ``reward``
as "Clipped reward", value range [-1, 1]; its ``atari_utils.py`` notes that the
``unclipped_rewards`` field is in fact clipped too).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.errors import UserError

TFDS_NAME = "rlu_atari_checkpoints_ordered"
STICKY_ACTIONS = 0.25  # Dopamine's Atari environment as the DQN Replay runs used it
FRAME_HW = (84, 84)
_RAW_RE = re.compile(r"^run_(\d+)-(\d{5})-of-(\d{5})$")
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_SPLIT_RE = re.compile(r"^checkpoint_(\d+)$")


@dataclass(frozen=True)
class Schema:
    """Where a layout keeps each field of an episode record."""

    layout: str  # "raw" or "tfds"
    compressed: bool
    checkpoint: str
    episode: str
    observation: str
    action: str
    reward: str
    discount: str


RAW = Schema("raw", True, "checkpoint_idx", "episode_idx", "observations", "actions",
             "unclipped_rewards", "discounts")
TFDS = Schema("tfds", False, "checkpoint_id", "episode_id", "steps/observation", "steps/action",
              "steps/reward", "steps/discount")
RAW_FEATURES = {"checkpoint_idx": "int64_list", "episode_idx": "int64_list",
                "episode_return": "float_list", "clipped_episode_return": "float_list",
                "observations": "bytes_list", "actions": "int64_list",
                "unclipped_rewards": "float_list", "clipped_rewards": "float_list",
                "discounts": "float_list"}
REQUIRED_TFDS = ("checkpoint_id", "episode_id", "steps/observation", "steps/action",
                 "steps/reward", "steps/is_first", "steps/is_last", "steps/is_terminal")


@dataclass
class CheckpointFiles:
    n: int
    files: list[Path]  # in shard order
    counts: list[int] | None  # records per file (TFDS's dataset_info.json), None: unknown


@dataclass
class RluSelection:
    """One run of a game: its checkpoints on disk and the ones selected."""

    run: str
    where: Path  # the run's directory (TFDS) or the game's directory (raw), for messages
    schema: Schema
    features: dict[str, str]  # feature name -> "int64_list" / "float_list" / "bytes_list"
    frame_hw: tuple[int, int]
    available: dict[int, CheckpointFiles]
    checkpoints: list[int]

    def files(self, n: int) -> CheckpointFiles:
        return self.available[n]


# ------------------------------------------------------------------------------------------------
# Finding a game's runs in either layout


def _tfds_root(src: Path) -> Path | None:
    if (src / TFDS_NAME).is_dir():
        return src / TFDS_NAME
    if src.name == TFDS_NAME or any(p.is_dir() and "_run_" in p.name for p in src.iterdir()):
        return src
    return None


def _find(src: Path, game: str) -> tuple[Schema, dict[str, Path]]:
    """The layout and ``{run: location}`` of ``game`` under ``src``."""
    if not src.is_dir():
        raise UserError(f"{src}: no such directory")
    root = _tfds_root(src)
    if root is not None:
        runs = {m.group(1): p for p in root.iterdir()
                if (m := re.fullmatch(rf"{re.escape(game)}_run_(\d+)", p.name)) and p.is_dir()}
        if not runs:
            raise UserError(f"{root}: no {game}_run_N directories (no such game in this TFDS "
                            f"{TFDS_NAME} directory)")
        return TFDS, runs
    game_dir = src / game if (src / game).is_dir() else src if src.name == game else None
    if game_dir is None:
        raise UserError(f"{src}: no {game} (expected {src}/{game}/run_N-XXXXX-of-YYYYY files "
                        f"or a TFDS directory {src}/{TFDS_NAME}/{game}_run_N/VERSION/)")
    runs = {}
    for p in game_dir.iterdir():
        m = _RAW_RE.match(p.name)
        if m:
            runs.setdefault(str(int(m.group(1))), game_dir)
    if not runs:
        raise UserError(f"{game_dir}: no run_N-XXXXX-of-YYYYY files")
    return RAW, runs


def _raw_run(game_dir: Path, run: str) -> dict[int, CheckpointFiles]:
    out: dict[int, CheckpointFiles] = {}
    totals = set()
    for p in sorted(game_dir.iterdir()):
        m = _RAW_RE.match(p.name)
        if m and str(int(m.group(1))) == run:
            out[int(m.group(2))] = CheckpointFiles(int(m.group(2)), [p], None)
            totals.add(int(m.group(3)))
    if len(totals) > 1:
        raise UserError(f"{game_dir}: run {run}'s files disagree on their count "
                        f"(-of-{', -of-'.join(f'{t:05d}' for t in sorted(totals))})")
    total = totals.pop()
    beyond = [n for n in out if n >= total]
    if beyond:
        raise UserError(f"{out[beyond[0]].files[0]}: file number {beyond[0]} is not below "
                        f"its count {total}")
    for n in range(total):  # every file of the run, so that a missing one is named
        out.setdefault(n, CheckpointFiles(n, [game_dir / f"run_{run}-{n:05d}-of-{total:05d}"],
                                          None))
    return out


def _version_dir(run_dir: Path) -> Path:
    versions = [p for p in run_dir.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)
                and (p / "dataset_info.json").is_file()]
    if not versions:
        raise UserError(f"{run_dir}: no VERSION/dataset_info.json (not a complete TFDS build)")
    return max(versions, key=lambda p: tuple(int(x) for x in p.name.split(".")))


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc})") from None


def _at(node: Any, *keys: str) -> Any:
    """``node[k1][k2]...`` through dicts only; None where the path does not exist."""
    for k in keys:
        node = node.get(k) if isinstance(node, dict) else None
    return node


def _tfds_features(path: Path) -> tuple[dict[str, str], tuple[int, int]]:
    """``features.json``'s flattened feature names and record kinds, and the frame size; a tree
    that is not an RLU Atari episode is refused here."""
    kinds = {"int64": "int64_list", "bool": "int64_list", "float32": "float_list"}

    def leaves(node: Any, prefix: str, out: dict[str, Any]) -> None:
        feats = _at(node, "featuresDict", "features")
        if not isinstance(feats, dict) or len(prefix) > 200:
            raise UserError(f"{path}: {prefix or 'the root'} is not a FeaturesDict")
        for name, f in feats.items():
            if not isinstance(f, dict):
                raise UserError(f"{path}: feature {prefix + name!r} is not an object")
            if "sequence" in f:
                leaves(_at(f, "sequence", "feature"), prefix + name + "/", out)
            else:
                out[prefix + name] = f

    raw: dict[str, Any] = {}
    leaves(_json(path), "", raw)
    out: dict[str, str] = {}
    hw: tuple[int, int] | None = None
    for name, f in raw.items():
        if "image" in f:
            dims = _at(f, "image", "shape", "dimensions")
            try:
                dims = [int(d) for d in dims]
            except (TypeError, ValueError):
                dims = []
            if (_at(f, "image", "encodingFormat") != "png" or _at(f, "image", "dtype") != "uint8"
                    or len(dims) != 3 or dims[2] != 1 or not 0 < dims[0] <= 4096
                    or not 0 < dims[1] <= 4096):
                raise UserError(f"{path}: {name} is not a uint8 [H, W, 1] png image feature")
            hw = (dims[0], dims[1])
            out[name] = "bytes_list"
        elif str(_at(f, "tensor", "dtype")) in kinds and not _at(f, "tensor", "shape",
                                                                "dimensions"):
            out[name] = kinds[f["tensor"]["dtype"]]
        else:
            raise UserError(f"{path}: feature {name!r} is not a scalar or a PNG image")
    missing = [n for n in REQUIRED_TFDS if n not in out]
    if missing or hw is None or out.get(TFDS.observation) != "bytes_list":
        raise UserError(f"{path}: not an {TFDS_NAME} feature tree (missing "
                        f"{', '.join(missing) or 'the PNG observation'})")
    return out, hw


def _tfds_run(version_dir: Path) -> dict[int, CheckpointFiles]:
    info_path = version_dir / "dataset_info.json"
    info = _json(info_path)
    splits = info.get("splits") if isinstance(info, dict) else None
    if not isinstance(splits, list):
        raise UserError(f"{info_path}: no list of splits")
    name = info.get("name", TFDS_NAME)
    out: dict[int, CheckpointFiles] = {}
    if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
        raise UserError(f"{info_path}: bad dataset name {name!r}")
    for s in splits:
        m = _SPLIT_RE.fullmatch(str(s.get("name", ""))) if isinstance(s, dict) else None
        if m is None:
            continue
        lengths = s.get("shardLengths")
        try:
            counts = [int(x) for x in lengths]
            if not counts or min(counts) < 0 or len(counts) > 99_999:
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise UserError(f"{info_path}: split {s['name']}: bad shardLengths") from None
        if int(m.group(1)) > 9999:
            raise UserError(f"{info_path}: split {s['name']}: checkpoint number too large")
        k = len(counts)
        files = [version_dir / f"{name}-{s['name']}.tfrecord-{i:05d}-of-{k:05d}"
                 for i in range(k)]
        out[int(m.group(1))] = CheckpointFiles(int(m.group(1)), files, counts)
    if not out:
        raise UserError(f"{info_path}: no checkpoint_NN splits")
    return out


# ------------------------------------------------------------------------------------------------
# The selection


def select(src: Path, game: str, *, runs: list[str] | None = None,
           checkpoints: list[int] | None = None, fraction: float | None = None
           ) -> list[RluSelection]:
    """The runs of ``game`` under ``src`` (either layout) and the checkpoints to read, as
    ``dqn_replay.select`` picks them: ``checkpoints`` explicit (each must be in every selected
    run), ``fraction`` the first ``floor(fraction * n)`` (at least 1) of a run's n checkpoints,
    neither all of them. Every file of a selected checkpoint must be there."""
    src = Path(src)
    schema, found = _find(src, game)
    order = sorted(found, key=int)
    if runs is None:
        runs = order
    missing = [r for r in runs if r not in found]
    if missing:
        where = next(iter(found.values())).parent if schema is TFDS else found[order[0]]
        raise UserError(f"{where}: no run {', '.join(missing)} of {game} (runs: "
                        f"{', '.join(order)})")
    if fraction is not None and not 0 < fraction <= 1:
        raise UserError(f"fraction must be in (0, 1], got {fraction}")
    out = []
    for run in runs:
        if schema.layout == "tfds":
            vdir = _version_dir(found[run])
            features, hw = _tfds_features(vdir / "features.json")
            available, where = _tfds_run(vdir), vdir
        else:
            features, hw = RAW_FEATURES, FRAME_HW
            available, where = _raw_run(found[run], run), found[run]
        present = list(range(max(available) + 1))  # a run's checkpoints are 0 .. n-1
        if checkpoints is not None:
            chosen = list(checkpoints)
        elif fraction is not None:
            chosen = present[:max(1, int(np.floor(fraction * len(present) + 1e-9)))]
        else:
            chosen = present
        absent = [n for n in chosen if n not in available]
        if absent:
            raise UserError(f"{where}: no checkpoint {absent[0]} (split checkpoint_"
                            f"{absent[0]:02d}) in run {run}; it has "
                            + ", ".join(f"{n:02d}" for n in sorted(available)))
        for n in chosen:
            for f in available[n].files:
                if not f.is_file():
                    what = (f"shard {f.name} of split checkpoint_{n:02d} is missing"
                            if schema is TFDS else f"missing (checkpoint {n} is selected)")
                    raise UserError(f"{f if schema.layout == 'raw' else where}: {what}")
        out.append(RluSelection(run, where, schema, features, hw, available, chosen))
    return out
