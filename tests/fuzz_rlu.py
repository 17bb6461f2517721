"""The RL Unplugged readers' fuzz target (``fuzz_cases.TARGETS["rlu"]``): damage to the TFDS
layout (shard bytes, ``features.json``, ``dataset_info.json``, and records edited *inside* valid
TFRecord framing: a feature dropped, retyped or resized, an action out of range, a NaN reward, a
PNG that is garbage or the wrong size) and to the raw layout's GZIP files, imported as the CLI
does. The contract is ``fuzz_cases``'."""

from __future__ import annotations

import functools
import gzip
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
from hypothesis import strategies as st

from fuzz_damage import Damage, apply_bytes, apply_json, damage, json_damage, text_damage

FIX = Path(__file__).parent / "fixtures" / "rlu"
TFDS_DIR = "tfds/rlu_atari_checkpoints_ordered/Pong_run_1/1.1.0"
SHARDS = [f"{TFDS_DIR}/rlu_atari_checkpoints_ordered-checkpoint_{i:02d}.tfrecord-00000-of-00001"
          for i in range(5)]
RAW_FILES = [f"raw/Pong/run_1-{i:05d}-of-00005" for i in range(5)]
FEATURES = ("steps/observation", "steps/action", "steps/reward", "steps/is_terminal",
            "steps/is_first", "checkpoint_id", "episode_id", "episode_return")
EDITS = ("drop", "bytes", "floats", "ints", "value", "png-garbage", "png-size", "png-rgb",
         "shorter")
VALUES = (-1, 0, 1, 5, 6, 99, 2**40, float("nan"), float("inf"))


@functools.cache
def base_rlu(root: Path) -> Path:
    """Pong run 1 of the fixtures in both layouts."""
    src = root / "rlu"
    shutil.copytree(FIX / TFDS_DIR, src / TFDS_DIR)
    (src / "raw" / "Pong").mkdir(parents=True)
    for f in RAW_FILES:
        shutil.copy(FIX / "atari_episodes_ordered" / f.removeprefix("raw/"), src / f)
    return src


def rlu_damage(base: Path) -> st.SearchStrategy[Damage]:
    record = [damage("record", f, st.integers(0, 2), st.sampled_from(FEATURES),
                     st.sampled_from(EDITS), st.sampled_from(VALUES)) for f in SHARDS]
    return st.one_of(
        *record, *record,
        *[text_damage(f) for f in SHARDS[:2] + RAW_FILES[:2]],
        json_damage(f"{TFDS_DIR}/features.json",
                    json.loads((base / TFDS_DIR / "features.json").read_text())),
        json_damage(f"{TFDS_DIR}/dataset_info.json",
                    json.loads((base / TFDS_DIR / "dataset_info.json").read_text())),
    )


def _png(shape: tuple[int, ...]) -> bytes:
    return cv2.imencode(".png", np.full(shape, 7, np.uint8))[1].tobytes()


def apply_record(path: Path, d: Damage) -> None:
    """Edit one feature of one record and write the file back with valid framing."""
    from scaledql.data.importers.tf_example import Example
    from scaledql.data.importers.tfrecord import TFRecordFile, frame_record

    index, name, edit, value = d.args
    with TFRecordFile(path, compressed=False) as f:
        records = list(f)
    ex = Example()
    ex.ParseFromString(records[index % len(records)])
    feats = ex.features.feature
    n = len(getattr(feats[name], feats[name].WhichOneof("kind")).value)
    if edit == "drop":
        del feats[name]
    elif edit in ("bytes", "floats", "ints"):
        feats[name].Clear()
        kind = {"bytes": "bytes_list", "floats": "float_list", "ints": "int64_list"}[edit]
        lst = getattr(feats[name], kind)
        lst.value.extend([b"x"] * n if edit == "bytes" else [0] * n)
    elif edit == "shorter":
        kind = feats[name].WhichOneof("kind")
        del getattr(feats[name], kind).value[-1:]
    elif edit == "value":
        kind = feats[name].WhichOneof("kind")
        values = getattr(feats[name], kind).value
        if kind == "int64_list" and value == value and abs(value) < 2**62:
            values[0] = int(value)
        elif kind == "float_list":
            values[0] = float(value)
    elif name == "steps/observation":
        pngs = feats[name].bytes_list.value
        pngs[0] = {"png-garbage": b"\x89PNG\r\n\x1a\n" + b"\0" * 20,
                   "png-size": _png((84, 83)), "png-rgb": _png((84, 84, 3))}[edit]
    records[index % len(records)] = ex.SerializeToString()
    path.write_bytes(b"".join(frame_record(r) for r in records))


def apply_rlu(src: Path, d: Damage) -> None:
    path = src / d.file
    if d.kind == "record":
        apply_record(path, d)
    elif d.file.endswith(".json"):
        apply_json(path, d)
    elif d.file.startswith("raw/"):  # bytes of the gzip stream or of the records inside it
        if d.kind in ("flip", "insert") and int(d.args[0] * 10) % 2:
            raw = gzip.decompress(path.read_bytes())
            inner = path.with_suffix(".inner")
            inner.write_bytes(raw)
            apply_bytes(inner, d)
            path.write_bytes(gzip.compress(inner.read_bytes()))
            inner.unlink()
        else:
            apply_bytes(path, d)
    else:
        apply_bytes(path, d)
