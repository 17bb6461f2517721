"""Compressed frames: a shard's frames as zstd blocks of whole episodes.

A compressed game store (``scaledql data compress``) is a game store whose shards hold, instead
of ``frames.npy``::

    shard_00000/
      frames.zst          the blocks' zstd frames back to back (each with its content checksum)
      frame_blocks.npy    int64[K+1, 2]: column 0 the blocks' frame bounds (block b holds frames
                          [bounds[b, 0], bounds[b+1, 0]) of the shard), column 1 their byte
                          offsets in frames.zst (the last row: frames in the shard, file size)

and its manifest says so (``format.check_codec``): ``frame_codec`` {"name": "zstd", "level": N,
"block_frames": K} at the top, ``blocks`` (K) in each shard entry. The sentinel frame 0 is not stored (it is zeros by
definition); block 0 starts at frame 1. A block holds whole episodes (every bound but the last
is an episode's ``ep_frame_start``), as many as fit in ``block_frames`` frames, an episode longer
than that being a block of its own: a frame stack or an n-step return never needs two blocks,
so a block decoded on its own is a complete little shard for the pool sampler (``data/sampling/block_pool.py``).
All other arrays (actions, rewards, returns-to-go, episode tables) are the raw store's, as they
were; they are 12 bytes a frame plus the episode tables.

Why zstd level 3 through ``zstandard``: measured on real Atari and MinAtar frames
(``benchmarks/shard_compression.py``, figures in ``benchmarks/README.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from scaledql.data.store.format import open_array, save_npy
from scaledql.errors import UserError

DEFAULT_LEVEL = 3
DEFAULT_BLOCK_FRAMES = 4096  # 29 MB of Atari frames, 4 MB of MinAtar frames per block
BLOCKS_FILE = "frame_blocks.npy"
DATA_FILE = "frames.zst"


def episode_blocks(ep_frame_start: np.ndarray, ep_length: np.ndarray, num_frames: int,
                   block_frames: int) -> np.ndarray:
    """int64[K+1]: frame bounds of blocks of whole episodes of at most ``block_frames`` frames
    (an episode longer than that alone in its block), from frame 1 to ``num_frames``."""
    starts = np.asarray(ep_frame_start, np.int64)
    if not len(starts):
        return np.array([1], np.int64)
    ends = starts + np.asarray(ep_length, np.int64) + 1
    bounds = [int(starts[0])]
    for start, end in zip(starts[1:].tolist(), ends[1:].tolist(), strict=True):
        if end - bounds[-1] > block_frames:  # this episode would overfill the current block
            bounds.append(start)
    bounds.append(int(num_frames))
    return np.asarray(bounds, np.int64)


class CompressedFrames:
    """One shard's compressed frames (see the module docstring); ``decode(b)`` → block ``b``.

    ``shape``: (F, C, H, W) of the shard's frames as if raw; ``bounds``: int64[K+1] frame
    bounds; ``offsets``: int64[K+1] byte offsets. Opening reads the block table only.
    """

    def __init__(self, directory: Path, num_frames: int, frame_shape: tuple[int, int, int],
                 num_blocks: int, ep_frame_start: np.ndarray):
        self.directory = Path(directory)
        self.shape = (int(num_frames), *frame_shape)
        self.frame_bytes = int(np.prod(frame_shape))
        table = np.asarray(open_array(self.directory / BLOCKS_FILE, np.int64, (num_blocks + 1, 2)))
        self.bounds, self.offsets = table[:, 0].copy(), table[:, 1].copy()
        path = self.directory / DATA_FILE
        try:
            size = os.path.getsize(path)
        except OSError:
            raise UserError(f"{path}: missing (the dataset is incomplete)") from None
        where = self.directory / BLOCKS_FILE
        if (self.bounds[0] != 1 or self.bounds[-1] != num_frames
                or (num_blocks and (np.diff(self.bounds) <= 0).any())):
            raise UserError(f"{where}: block bounds must rise from frame 1 to {num_frames}")
        if self.offsets[0] != 0 or (np.diff(self.offsets) < 0).any() or self.offsets[-1] != size:
            raise UserError(f"{where}: byte offsets must rise from 0 to {path.name}'s size "
                            f"({size} bytes)")
        if not np.isin(self.bounds[:-1], ep_frame_start).all():
            raise UserError(f"{where}: a block does not start at an episode's first frame")
        self._data = (np.memmap(path, np.uint8, mode="r") if size
                      else np.zeros(0, np.uint8))

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def num_blocks(self) -> int:
        return len(self.bounds) - 1

    @property
    def compressed_bytes(self) -> int:
        return int(self.offsets[-1])

    def decode(self, b: int, out: np.ndarray | None = None) -> np.ndarray:
        """uint8[hi - lo, C, H, W]: block ``b``'s frames (into ``out``, C-contiguous, if given).

        A damaged block (checksum, size) is one ``UserError`` naming it.
        """
        import zstandard

        lo, hi = int(self.bounds[b]), int(self.bounds[b + 1])
        if out is None:
            out = np.empty((hi - lo, *self.shape[1:]), np.uint8)
        src = memoryview(self._data[self.offsets[b]:self.offsets[b + 1]])
        # A fresh decompressor per call: instances are not thread-safe, and prefetch threads
        # share the opened store. readinto writes straight into the pool's array (no copy).
        try:
            with zstandard.ZstdDecompressor().stream_reader(src) as reader:
                view, got = memoryview(out).cast("B"), 0
                while got < len(view):
                    n = reader.readinto(view[got:])
                    if not n:
                        break
                    got += n
                extra = reader.read(1)
        except zstandard.ZstdError as exc:
            raise UserError(f"{self.directory / DATA_FILE}: block {b} is corrupt ({exc})") from None
        if got != out.nbytes or extra:
            raise UserError(f"{self.directory / DATA_FILE}: block {b} decodes to the wrong size "
                            f"(frames {lo}..{hi})")
        return out


def write_blocks(directory: Path, frames: np.ndarray, bounds: np.ndarray, level: int) -> int:
    """Compress ``frames[bounds[b]:bounds[b+1]]`` for every block into ``directory``
    (``frames.zst``, ``frame_blocks.npy``, fsynced); each block is decoded again and compared
    with its source before the next is written. Returns the compressed bytes."""
    import zstandard

    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
    dctx = zstandard.ZstdDecompressor()
    offsets = [0]
    with open(directory / DATA_FILE, "wb") as f:
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            raw = np.ascontiguousarray(frames[lo:hi])
            packed = cctx.compress(raw)
            if dctx.decompress(packed) != raw.tobytes():
                raise RuntimeError(f"zstd did not round-trip frames {lo}..{hi} of {directory}")
            f.write(packed)
            offsets.append(offsets[-1] + len(packed))
        f.flush()
        os.fsync(f.fileno())
    save_npy(directory / BLOCKS_FILE, np.stack([bounds, np.asarray(offsets, np.int64)], 1))
    return offsets[-1]
