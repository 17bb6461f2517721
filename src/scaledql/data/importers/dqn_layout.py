"""Where every frame of a DQN Replay import goes, and the copy of one checkpoint file's frames.

Everything in a game store except the frames follows from the checkpoints' small arrays
(actions, rewards, terminals, add counts). So ``layout_game`` first lays out the whole game:
episodes in time order (runs in the order given), packed into shards of whole episodes exactly as
``writer.GameWriter`` packs them (a shard closes at an episode's end once it holds
``shard_steps`` transitions), each shard's small arrays written and its ``frames.npy`` created at
its final size with its final header. For each checkpoint file it returns a ``Unit``: the slot
ranges of the file's observation array and the shard frames they go to.

``copy_unit`` then inflates one observation file and writes each frame at its place
(``pwrite``), wherever in the file's stream it comes: the add written last into Dopamine's ring
buffer (slot ``C - 1`` of a logged file holds the file's first new add) lands before the adds
that follow it. Units are independent: they may run in any order, in parallel processes, be
killed and run again; the bytes written are the same. Frames never written (each shard's
sentinel frame 0 and every episode's final frame) are zeros.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.data.importers.dqn_replay import (
    ARRAYS,
    STORE_PREFIX,
    RunSelection,
    _Checkpoint,
    _Episode,
    _head_terminals,
    _load_checkpoint,
    _Part,
    _plan_windows,
    _Window,
    _window_episodes,
    checkpoint_path,
)
from scaledql.data.importers.gzip_npy import NpyStream
from scaledql.data.store.format import (
    FLAG_PARTIAL_START,
    FLAG_TERMINATED,
    FLAG_TRUNCATED,
    save_shard_tables,
    shard_name,
)
from scaledql.data.store.npy_header import FIXED_HEADER_BYTES, fixed_header
from scaledql.errors import UserError

CHUNK_BYTES = 64 << 20  # inflated frames per read


# ------------------------------------------------------------------------------------------------
# One run's timeline, from its small arrays


@dataclass
class RunTimeline:
    """A run's selected checkpoints, checked, joined into gap-free windows of episodes."""

    sel: RunSelection
    checkpoints: list[_Checkpoint]
    windows: list[_Window]
    episodes: list[list[_Episode]]  # per window, in time order
    frame_hw: tuple[int, int]

    @property
    def where(self) -> Path:
        return self.sel.log_dir


def load_run(sel: RunSelection, num_actions: int, stack: int) -> RunTimeline:
    """Read and check the small arrays of a run's selected checkpoints; split into episodes."""
    ckpts: list[_Checkpoint] = []
    for n in sel.checkpoints:
        prev = ckpts[-1] if ckpts and ckpts[-1].n == n - 1 else None
        ckpts.append(_load_checkpoint(sel.log_dir, n, num_actions, prev))
    first = ckpts[0]
    for c in ckpts[1:]:
        if c.frame_hw != first.frame_hw or c.capacity != first.capacity:
            raise UserError(f"{c.path(STORE_PREFIX + 'observation')}: frames "
                            f"{c.capacity}x{c.frame_hw} differ from the run's first file "
                            f"({first.capacity}x{first.frame_hw})")
    windows = _plan_windows(ckpts)
    episodes = []
    for wi, win in enumerate(windows):
        win.head_terminals = _head_terminals(sel.log_dir, win, stack, num_actions)
        episodes.append(_window_episodes(win, stack, gap_follows=wi + 1 < len(windows)))
    return RunTimeline(sel, ckpts, windows, episodes, first.frame_hw)


def _run_units(tl: RunTimeline, game: str, staging: Path) -> list[Unit]:
    """A laid-out run's units: one per checkpoint file, its frames' slots and destinations."""
    units = []
    for win, episodes in zip(tl.windows, tl.episodes, strict=True):
        for part in win.parts:
            segs = _segments(part, episodes)
            if len(segs):
                ck = part.ckpt
                units.append(Unit(game, tl.sel.run, ck.n, ck.path(STORE_PREFIX + "observation"),
                                  staging, ck.capacity, ck.frame_hw, segs))
    return units


def source_files(sel: RunSelection) -> list[Path]:
    """The files an import of ``sel`` reads: every selected checkpoint's arrays and add count,
    and those of the checkpoint before each one when it is on disk (read for its history)."""
    numbers = set(sel.checkpoints)
    numbers |= {n - 1 for n in sel.checkpoints
                if n > 0 and checkpoint_path(sel.log_dir, STORE_PREFIX + "observation",
                                             n - 1).exists()}
    return [checkpoint_path(sel.log_dir, name, n) for n in sorted(numbers)
            for name in (*(STORE_PREFIX + a for a in ARRAYS), "add_count")]


# ------------------------------------------------------------------------------------------------
# The layout


@dataclass
class Unit:
    """One checkpoint file's frames to copy: ``segments`` int64[k, 4] rows ``(slot_lo,
    slot_hi, shard, frame_lo)``, sorted by slot: slots ``slot_lo .. slot_hi - 1`` of the
    observation array go to frames ``frame_lo ..`` of that shard, under ``staging``."""

    game: str
    run: str
    ckpt: int
    path: Path
    staging: Path
    capacity: int
    frame_hw: tuple[int, int]
    segments: np.ndarray

    @property
    def key(self) -> str:
        return f"{self.run}/{self.ckpt}"

    @property
    def nbytes(self) -> int:
        """Inflated frame bytes the copy reads (the whole observation array)."""
        return self.capacity * self.frame_hw[0] * self.frame_hw[1]

    @property
    def marker(self) -> str:
        """The name of the import's marker that this unit is done."""
        return f"run-{self.run}.ckpt-{self.ckpt}"

    def copy(self, chunk_bytes: int, progress: Callable[[int], None] | None = None) -> int:
        return copy_unit(self, chunk_bytes, progress)


@dataclass
class GameLayout:
    """What ``layout_game`` decided: the manifest's shards, counts and returns, and the units."""

    frame_hw: tuple[int, int]
    shards: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("transitions", "frames", "episodes", "terminated", "truncated", "unfinished",
         "partial_start", "stored_episodes"), 0))
    episode_returns: list[float] = field(default_factory=list)
    units: list[Unit] = field(default_factory=list)


class _ShardBuilder:
    """One shard's small arrays, built as ``writer._ShardWriter`` builds them."""

    def __init__(self, index: int):
        self.index = index
        self.num_frames = 1  # the zero sentinel frame
        self.num_transitions = 0
        self.actions: list[np.ndarray] = [np.zeros(1, np.int32)]
        self.rewards: list[np.ndarray] = [np.zeros(1, np.float32)]
        self.rtg: list[np.ndarray] = [np.zeros(1, np.float32)]
        self.episodes: list[tuple[int, int, int, int, float]] = []

    def add(self, ep: _Episode, flags: int) -> None:
        ep.shard, ep.frame_start = self.index, self.num_frames
        t = ep.length
        rewards = ep.rewards.astype(np.float32)
        self.actions.append(np.append(ep.actions.astype(np.int32), np.int32(0)))
        self.rewards.append(np.append(rewards, np.float32(0)))
        rtg = np.cumsum(rewards[::-1].astype(np.float64))[::-1]
        self.rtg.append(np.append(rtg, 0.0).astype(np.float32))
        self.episodes.append((self.num_frames, t, self.num_transitions, flags,
                              float(rtg[0]) if t else 0.0))
        self.num_frames += t + 1
        self.num_transitions += t

    def write(self, directory: Path, frame_shape: tuple[int, int, int]) -> None:
        """The small arrays, and ``frames.npy`` at its final size and header (zeros)."""
        directory.mkdir()
        with open(directory / "frames.npy", "wb") as f:
            f.write(fixed_header(np.uint8, (self.num_frames, *frame_shape)))
            f.truncate(FIXED_HEADER_BYTES + self.num_frames * int(np.prod(frame_shape)))
            f.flush()
            os.fsync(f.fileno())
        save_shard_tables(directory, self.actions, self.rewards, self.rtg, self.episodes)

    def info(self) -> dict:
        return {"name": shard_name(self.index), "frames": self.num_frames,
                "transitions": self.num_transitions, "episodes": len(self.episodes)}


def layout_game(game: str, timelines: Iterable[Any], staging: Path,
                shard_steps: int, write: bool,
                units: Callable[[Any, str, Path], list[Any]] = _run_units) -> GameLayout:
    """Lay out a game's runs (``timelines``, loaded one at a time: ``frame_hw``, ``where`` and
    ``episodes`` per window, as ``RunTimeline``) into shards under ``staging``; ``write=False``
    only computes (a resumed import: the files are there). ``units(timeline, game, staging)``
    gives a laid-out run's units of frames to copy (the DQN Replay ones by default)."""
    layout: GameLayout | None = None
    shard: _ShardBuilder | None = None
    c = None

    def close_shard() -> None:
        nonlocal shard
        assert shard is not None and layout is not None
        if write:
            shard.write(staging / shard_name(shard.index), (1, *layout.frame_hw))
        layout.shards.append(shard.info())
        shard = None

    for tl in timelines:
        if layout is None:
            layout = GameLayout(tl.frame_hw)
            c = layout.counts
        elif tl.frame_hw != layout.frame_hw:
            raise UserError(f"{tl.where}: frames {tl.frame_hw} differ from the game's "
                            f"other runs ({layout.frame_hw})")
        for episodes in tl.episodes:
            for ep in episodes:
                if shard is None:
                    shard = _ShardBuilder(len(layout.shards))
                flags = ((FLAG_TERMINATED if ep.terminated else 0)
                         | (FLAG_TRUNCATED if ep.truncated else 0)
                         | (FLAG_PARTIAL_START if ep.partial_start else 0))
                shard.add(ep, flags)
                c["stored_episodes"] += 1
                c["transitions"] += ep.length
                c["frames"] += ep.length + 1
                kind = ("terminated" if ep.terminated else "truncated" if ep.truncated
                        else "unfinished")
                c[kind] += 1
                if ep.partial_start:
                    c["partial_start"] += 1
                elif ep.terminated or ep.truncated:
                    c["episodes"] += 1
                    layout.episode_returns.append(float(np.sum(ep.rewards.astype(np.float32),
                                                               dtype=np.float64)))
                if shard.num_transitions >= shard_steps:
                    close_shard()
        layout.units += units(tl, game, staging)
    if shard is not None:
        close_shard()
    if layout is None or not layout.shards:
        raise UserError(f"no transitions to write for {game}")
    c["frames"] = sum(s["frames"] for s in layout.shards)  # with the sentinels
    return layout


def _segments(part: _Part, episodes: list[_Episode]) -> np.ndarray:
    """int64[k, 4] ``(slot_lo, slot_hi, shard, frame_lo)`` for the adds ``[a, b)`` of a part."""
    a, b, cap = part.a, part.b, part.ckpt.capacity
    g = np.arange(a, b, dtype=np.int64)
    shard = np.full(b - a, -1, np.int64)
    frame = np.full(b - a, -1, np.int64)
    ends = np.array([e.g0 + e.length for e in episodes], np.int64)
    for k in range(int(np.searchsorted(ends, a, side="right")), len(episodes)):
        ep = episodes[k]
        if ep.g0 >= b:
            break
        lo, hi = max(a, ep.g0) - a, min(b, ep.g0 + ep.length) - a
        shard[lo:hi] = ep.shard
        frame[lo:hi] = ep.frame_start - ep.g0 + g[lo:hi]
    order = np.argsort(g % cap, kind="stable")  # the stream's order
    slot, shard, frame = (g % cap)[order], shard[order], frame[order]
    keep = shard >= 0  # padding adds go nowhere
    slot, shard, frame = slot[keep], shard[keep], frame[keep]
    if not len(slot):
        return np.empty((0, 4), np.int64)
    cut = np.flatnonzero((np.diff(slot) != 1) | (np.diff(frame) != 1)
                         | (np.diff(shard) != 0)) + 1
    first = np.concatenate([[0], cut])
    last = np.concatenate([cut, [len(slot)]]) - 1
    return np.stack([slot[first], slot[last] + 1, shard[first], frame[first]], 1)


def copy_unit(unit: Unit, chunk_bytes: int = CHUNK_BYTES,
              progress: Callable[[int], None] | None = None) -> int:
    """Inflate one observation file and write its frames into the shards; fsynced on return.

    Returns the inflated bytes read. ``UserError`` on a bad file or a failed write.
    """
    h, w = unit.frame_hw
    fb = h * w
    stream = NpyStream(unit.path)
    fds: dict[int, int] = {}
    try:
        if stream.shape != (unit.capacity, h, w) or stream.dtype != np.uint8:
            raise UserError(f"{unit.path}: changed since it was first read")
        for s in np.unique(unit.segments[:, 2]).tolist():
            path = unit.staging / shard_name(s) / "frames.npy"
            try:
                fds[s] = os.open(path, os.O_WRONLY)
            except OSError as exc:
                raise UserError(f"{path}: cannot open for writing ({exc})") from None
        chunk_frames = max(1, chunk_bytes // fb)
        buf = np.empty((min(chunk_frames, unit.capacity), h, w), np.uint8)
        segs = unit.segments.tolist()
        k = 0
        previous: dict[int, list[int]] = {}
        for s0 in range(0, unit.capacity, chunk_frames):
            s1 = min(unit.capacity, s0 + chunk_frames)
            chunk = buf[: s1 - s0]
            stream.read_into(chunk)
            flat = memoryview(chunk.reshape(-1))
            written: dict[int, list[int]] = {}  # shard -> [first, end) byte offsets
            while k < len(segs) and segs[k][0] < s1:
                slot_lo, slot_hi, s, frame_lo = segs[k]
                lo, hi = max(slot_lo, s0), min(slot_hi, s1)
                offset = FIXED_HEADER_BYTES + (frame_lo + lo - slot_lo) * fb
                _pwrite_all(fds[s], flat[(lo - s0) * fb:(hi - s0) * fb], offset, unit)
                span = written.setdefault(s, [offset, offset])
                span[0], span[1] = min(span[0], offset), max(span[1], offset + (hi - lo) * fb)
                if slot_hi > s1:
                    break  # the segment goes on in the next chunk
                k += 1
            for s, span in written.items():  # this chunk's pages, and the previous chunk's
                for a, b in (span, previous.get(s)) if s in previous else (span,):
                    _start_writeback(fds[s], a, b - a)
            previous = written
            if progress is not None:
                progress((s1 - s0) * fb)
        stream.finish()
        for fd in fds.values():
            os.fdatasync(fd)
            _start_writeback(fd, 0, 0)  # all clean now: drop what is left of ours
    except OSError as exc:
        raise UserError(f"{unit.staging}: writing frames failed ({exc})") from None
    finally:
        stream.close()
        for fd in fds.values():
            os.close(fd)
    return unit.nbytes


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a range's dirty pages to disk now and drop its clean ones (``length`` 0:
    to the end of the file). Called on each 64 MB piece just written, and again one piece
    later, when its pages are clean and can go.

    Without it the kernel holds a whole file's frames dirty until ``fdatasync`` and the copy
    waits for the disk at the end; and fresh page-cache pages for every file cost more than
    reused ones (measured: 0.9-1.4 s instead of 1.3-4.3 s per 1.41 GB file on this VM). The
    price: the imported frames are not left in the page cache.
    """
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _pwrite_all(fd: int, data: memoryview, offset: int, unit: Unit) -> None:
    while len(data):
        n = os.pwrite(fd, data, offset)
        if n <= 0:
            raise UserError(f"{unit.staging}: short write")
        data, offset = data[n:], offset + n
