"""The sources ``atari_import``'s parallel, resumable import reads: what differs between them.

* ``dqn-replay``: Dopamine's ``$store$_*_ckpt.N.gz`` files (``dqn_replay``, ``dqn_layout``);
* ``rlu-atari``: the same data as RL Unplugged and TFDS republished it, episode records of PNG
  frames in TFRecord files (``rlu_source``, ``rlu_scan``, ``rlu_copy``).

Each gives the selection of a game's runs and checkpoints, the files an import reads (their
identities make the import's fingerprint), the run's timeline of episodes (read in a worker),
the units of frames to copy, and the facts its manifest records. Everything else (the layout
into shards, the worker pool and its one progress bar, resume, publishing) is shared.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaledql.errors import UserError


@dataclass(frozen=True)
class Source:
    name: str
    select: Callable[..., list[Any]]  # (src, game, runs=, checkpoints=, fraction=)
    files: Callable[[Any], list[Path]]  # the files an import of one run's selection reads
    identity: Callable[[Path], list[int]]  # a cheap identity of a file's contents
    base: Callable[[list[Any], Path], Path]  # what the fingerprint's paths are relative to
    load: Callable[[Any, int, int], Any]  # (selection, num_actions, stack) -> a timeline
    units: Callable[[Any, str, Path], list[Any]] | None = None  # None: dqn_layout's own
    provenance: Callable[[list[Any]], dict[str, Any]] = field(default=lambda sel: {})


def tfrecord_identity(path: Path) -> list[int]:
    """``[size, first record's length field, last record's data CRC]`` of a plain TFRecord
    file: a cheap identity of its contents, as ``gzip_identity`` is of a gzip file."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            f.seek(max(0, size - 4))
            tail = f.read(4)
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    return [size, int.from_bytes(head, "little"), int.from_bytes(tail, "little")]


def _dqn() -> Source:
    from scaledql.data.importers.dqn_layout import load_run, source_files
    from scaledql.data.importers.dqn_replay import select
    from scaledql.data.importers.gzip_npy import gzip_identity

    return Source("dqn-replay", select, source_files, gzip_identity,
                  lambda selection, src: selection[0].log_dir.parent.parent, load_run)


def _rlu_files(sel: Any) -> list[Path]:
    from scaledql.data.importers.rlu_scan import windows

    numbers = set(sel.checkpoints)
    for win in windows(sel.checkpoints):  # the checkpoint before a window: read for its end
        k = win[0] - 1
        if k in sel.available and all(p.is_file() for p in sel.files(k).files):
            numbers.add(k)
    return [p for n in sorted(numbers) for p in sel.files(n).files]


def _rlu_identity(path: Path) -> list[int]:
    from scaledql.data.importers.gzip_npy import gzip_identity

    return gzip_identity(path) if "tfrecord" not in path.name else tfrecord_identity(path)


def _rlu_provenance(selection: list[Any]) -> dict[str, Any]:
    from scaledql.data.importers.rlu_source import STICKY_ACTIONS

    s = selection[0]
    return {"layout": "tfds " + s.where.name if s.schema.layout == "tfds" else "raw",
            "sticky_actions": STICKY_ACTIONS,
            "rewards": "as the source has them: DQN Replay's, clipped to [-1, 1]"}


def _rlu() -> Source:
    from scaledql.data.importers.rlu_copy import units
    from scaledql.data.importers.rlu_scan import load_run
    from scaledql.data.importers.rlu_source import select

    return Source("rlu-atari", select, _rlu_files, _rlu_identity, lambda selection, src: src,
                  lambda sel, num_actions, stack: load_run(sel, num_actions), units,
                  _rlu_provenance)


def get_source(name: str) -> Source:
    if name == "dqn-replay":
        return _dqn()
    if name == "rlu-atari":
        return _rlu()
    raise UserError(f"unknown import source {name!r}")
