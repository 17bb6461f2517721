"""The frames of an RL Unplugged import: where each record's steps go, and the copy of one file.

``dqn_layout.layout_game`` lays out the episodes of ``rlu_scan`` timelines (shards, small arrays,
``frames.npy`` at its final size); ``units`` then gives one ``RluUnit`` per source file (a raw
checkpoint file or one TFDS shard): for each of its records, the shard and first frame its steps
go to. ``copy_unit`` reads the file again, decodes each record's PNG frames (OpenCV's
``imdecode``: 1.3-1.8x faster than Pillow on 84x84 frames here; ``benchmarks/README.md``) and
writes them in place with ``pwrite``; units run in any order, in worker processes, and rewriting
one writes the same bytes (the import's resume). A frame that is not an 8-bit grayscale PNG of
the layout's size (84x84 in the data) is refused with the file, record and step.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from scaledql.data.importers.dqn_layout import _pwrite_all, _start_writeback
from scaledql.data.importers.rlu_scan import RluTimeline
from scaledql.data.importers.rlu_source import RAW, TFDS
from scaledql.data.importers.tf_example import ParsedExample
from scaledql.data.importers.tfrecord import TFRecordFile
from scaledql.data.store.format import shard_name
from scaledql.data.store.npy_header import FIXED_HEADER_BYTES
from scaledql.errors import UserError

WRITEBACK_BYTES = 64 << 20


@dataclass
class RluUnit:
    """One source file's frames: ``segments`` int64[k, 4] rows ``(record, steps, shard,
    frame_lo)``, by record: the ``steps`` frames of record ``record`` go to frames
    ``frame_lo ..`` of that shard under ``staging``."""

    game: str
    run: str
    ckpt: int
    file: int
    path: Path
    layout: str  # "raw" or "tfds"
    staging: Path
    frame_hw: tuple[int, int]
    segments: np.ndarray

    @property
    def key(self) -> str:
        return f"{self.run}/{self.ckpt}/{self.file}"

    @property
    def marker(self) -> str:
        return f"run-{self.run}.ckpt-{self.ckpt}.file-{self.file}"

    @property
    def nbytes(self) -> int:
        """Decoded frame bytes the copy writes."""
        return int(self.segments[:, 1].sum()) * self.frame_hw[0] * self.frame_hw[1]

    def copy(self, chunk_bytes: int, progress: Callable[[int], None] | None = None) -> int:
        return copy_unit(self, progress)


def units(tl: RluTimeline, game: str, staging: Path) -> list[RluUnit]:
    """A laid-out run's units, one per source file, in time order."""
    rows: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    for episodes in tl.episodes:
        for ep in episodes:
            ends = [p[3] for p in ep.pieces[1:]] + [ep.length]
            for (ck, fi, rec, off), end in zip(ep.pieces, ends, strict=True):
                rows.setdefault((ck, fi), []).append((rec, end - off, ep.shard,
                                                      ep.frame_start + off))
    sel = tl.sel
    return [RluUnit(game, sel.run, ck, fi, sel.files(ck).files[fi], sel.schema.layout, staging,
                    tl.frame_hw, np.array(sorted(r), np.int64).reshape(-1, 4))
            for (ck, fi), r in sorted(rows.items())]


def decode_frames(pngs: list[bytes], out: np.ndarray, where: str) -> None:
    """Decode ``pngs`` into ``out`` uint8[T, H, W]; ``UserError`` on a frame that is not an
    8-bit grayscale PNG of that size."""
    h, w = out.shape[1:]
    for t, png in enumerate(pngs):
        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None or img.size == 0:
            raise UserError(f"{where}, step {t}: not a PNG image (or a damaged one)")
        if img.dtype != np.uint8 or img.ndim != 2 or img.shape != (h, w):
            shape = "x".join(map(str, img.shape))
            raise UserError(f"{where}, step {t}: PNG frame is {img.dtype} {shape}, expected "
                            f"8-bit grayscale {h}x{w}")
        out[t] = img


def copy_unit(unit: RluUnit, progress: Callable[[int], None] | None = None) -> int:
    """Decode one file's frames into the shards; fsynced on return. Returns the decoded bytes.
    ``UserError`` on a bad file or a failed write."""
    h, w = unit.frame_hw
    fb = h * w
    schema = RAW if unit.layout == "raw" else TFDS
    segs = {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in unit.segments}
    fds: dict[int, int] = {}
    last = int(unit.segments[:, 0].max())
    done = 0
    spans: dict[int, list[int]] = {}  # shard -> byte range written since its last writeback
    try:
        for s in np.unique(unit.segments[:, 2]).tolist():
            path = unit.staging / shard_name(s) / "frames.npy"
            try:
                fds[s] = os.open(path, os.O_WRONLY)
            except OSError as exc:
                raise UserError(f"{path}: cannot open for writing ({exc})") from None
        with TFRecordFile(unit.path, schema.compressed) as f:
            for data in f:
                seg = segs.get(f.index)
                if seg is None:
                    continue
                steps, shard, frame_lo = seg
                where = f"{unit.path}: record {f.index}"
                pngs = ParsedExample(data, where).bytes(schema.observation)
                if len(pngs) != steps:
                    raise UserError(f"{unit.path}: changed since it was first read")
                frames = np.empty((steps, h, w), np.uint8)
                decode_frames(list(pngs), frames, where)
                offset = FIXED_HEADER_BYTES + frame_lo * fb
                _pwrite_all(fds[shard], memoryview(frames.reshape(-1)), offset, unit)  # type: ignore[arg-type]
                span = spans.setdefault(shard, [offset, offset])
                span[0], span[1] = min(span[0], offset), max(span[1], offset + steps * fb)
                if span[1] - span[0] >= WRITEBACK_BYTES:  # as dqn_layout does per 64 MB
                    _start_writeback(fds[shard], span[0], span[1] - span[0])
                    del spans[shard]
                done += steps * fb
                if progress is not None:
                    progress(steps * fb)
            if f.index < last:
                raise UserError(f"{unit.path}: changed since it was first read")
        for fd in fds.values():
            os.fdatasync(fd)
            _start_writeback(fd, 0, 0)
    except OSError as exc:
        raise UserError(f"{unit.staging}: writing frames failed ({exc})") from None
    finally:
        for fd in fds.values():
            os.close(fd)
    return done
