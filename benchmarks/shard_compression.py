"""Frame-block codecs compared on real frames: ratio, compress and decompress MB/s.

    python benchmarks/shard_compression.py [--atari-frames 20000] [--block 4096]
        [--minatar DIR] [--repeats 3]

Frames: real Atari frames (84x84 grayscale, the store's format) from random play in Pong,
Breakout and Seaquest through the suite's own environment (frame skip 4, sticky actions), and
real MinAtar frames (10x10x10) from the first shard of each game under ``--minatar`` (default
``data/minatar-1m``). Each source is cut into blocks of ``--block`` frames, as the compressed
store cuts a shard; a codec compresses every block on its own. Prints one JSON line per (frames,
codec): ratio (raw / compressed bytes), compress and decompress MB/s of raw frames (best of
``--repeats``, one thread), and the load average. Codecs: zstd levels 1, 3, 9, 19 through
``zstandard`` and ``backports.zstd`` where installed, LZ4 (frame format, default and HC 9)
through ``lz4``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

Codec = tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]


def play_atari(game: str, steps: int, seed: int = 0) -> np.ndarray:
    """uint8[steps, 84, 84]: the newest frame of each observation under a random policy."""
    from scaledql.suites import get_suite

    env = get_suite("atari").make_env(game)
    rng = np.random.default_rng(seed)
    frames = np.empty((steps, 84, 84), np.uint8)
    obs, _ = env.reset(seed=seed)
    for t in range(steps):
        frames[t] = obs[-1]
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return frames


def minatar_frames(root: Path, frames: int) -> dict[str, np.ndarray]:
    """The first ``frames`` stored frames of each game's first shard (skipping the sentinel)."""
    from scaledql.data import open_dataset

    ds = open_dataset(root)
    return {f"minatar/{g}": np.ascontiguousarray(ds.game(g).shards[0].frames[1:frames + 1])
            for g in ds.games}


def codecs() -> dict[str, Codec]:
    out: dict[str, Codec] = {}
    try:
        import zstandard
    except ImportError:
        zstandard = None
    if zstandard is not None:
        dctx = zstandard.ZstdDecompressor()
        for level in (1, 3, 9, 19):
            cctx = zstandard.ZstdCompressor(level=level)
            out[f"zstandard-{level}"] = (cctx.compress, dctx.decompress)
    try:
        from backports import zstd as bzstd
    except ImportError:
        bzstd = None
    if bzstd is not None:
        for level in (1, 3):
            out[f"backports.zstd-{level}"] = (
                lambda b, lv=level: bzstd.compress(b, level=lv), bzstd.decompress)
    try:
        import lz4.frame as lz4f
    except ImportError:
        lz4f = None
    if lz4f is not None:
        out["lz4"] = (lz4f.compress, lz4f.decompress)
        out["lz4-hc9"] = (lambda b: lz4f.compress(b, compression_level=9), lz4f.decompress)
    return out


def measure(blocks: list[bytes], codec: Codec, repeats: int) -> dict[str, float]:
    compress, decompress = codec
    raw = sum(len(b) for b in blocks)
    best_c = best_d = float("inf")
    packed: list[bytes] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        packed = [compress(b) for b in blocks]
        best_c = min(best_c, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for p in packed:
            decompress(p)
        best_d = min(best_d, time.perf_counter() - t0)
    if any(decompress(p) != b for p, b in zip(packed, blocks, strict=True)):
        raise AssertionError("a codec did not round-trip")
    return {"ratio": round(raw / sum(len(p) for p in packed), 2),
            "compress_mb_s": round(raw / best_c / 1e6), "decompress_mb_s": round(raw / best_d / 1e6)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--atari-frames", type=int, default=20_000, help="frames per Atari game")
    p.add_argument("--atari-games", default="Pong,Breakout,Seaquest")
    p.add_argument("--minatar", type=Path, default=Path("data/minatar-1m"))
    p.add_argument("--minatar-frames", type=int, default=100_000)
    p.add_argument("--block", type=int, default=4096, help="frames per compressed block")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    sources: dict[str, np.ndarray] = {}
    for game in filter(None, args.atari_games.split(",")):
        sources[f"atari/{game}"] = play_atari(game, args.atari_frames)
    if args.minatar.is_dir():
        sources.update(minatar_frames(args.minatar, args.minatar_frames))
    table = codecs()
    for name, frames in sources.items():
        blocks = [frames[i:i + args.block].tobytes() for i in range(0, len(frames), args.block)]
        for codec, fns in table.items():
            row = {"frames": name, "frame_shape": list(frames.shape[1:]), "block": args.block,
                   "raw_mb": round(frames.nbytes / 1e6, 1), "codec": codec,
                   **measure(blocks, fns, args.repeats), "load": os.getloadavg()[0]}
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
