"""Sampler throughput and memory, on a synthetic store this script writes itself.

    python benchmarks/sampler_throughput.py --frames atari --transitions 1000000
    python benchmarks/sampler_throughput.py --frames minatar --transitions 10000000 --skip-bandwidth
    python benchmarks/sampler_throughput.py --frames atari-real --compress 3 --resident-gb 2

``--frames atari-real``: real Pong frames (``--game``) from random play through the suite's
environment, ``--real-frames`` of them cut into the game's own episodes and replayed in turn until
the store holds ``--transitions`` (a block is compressed on its own, so its ratio depends only on
the frames in it). ``--compress LEVEL``: also convert the store (``data compress``), report both
stores' bytes on disk and sample the compressed one. ``--resident-gb G``: sample through the
resident pool (``data/sampling/block_pool.py``) of G GB, rotated every ``--rotate-every`` batches (rotations are
in the timed loop).

Prints one JSON line: transitions/s of ``TransitionSampler.sample()`` (batch 512, n = 3, stacks
of 4 for Atari; with fresh output arrays per call and refilling one batch), this machine's memory-copy bandwidth (``np.copyto`` of 512 MB) and the bound it
implies (a transition reads 2 stacks = 8 frames for Atari), and the process's memory: peak RSS
(VmHWM, includes page-cache pages of the memory map that this process touched, which the kernel
can drop at any time) and private (anonymous) memory, which is what must stay flat in store size.
Run it on an otherwise idle machine; it uses one process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from scaledql.data import GameWriter, TransitionSampler, open_dataset
from scaledql.data.sampling.block_pool import PoolOptions
from scaledql.data.store.compress import compress_dataset
from scaledql.data.store.frame_blocks import DEFAULT_BLOCK_FRAMES

GEOMETRY = {"atari": ((1, 84, 84), 4, 6), "atari-real": ((1, 84, 84), 4, 6),
            "minatar": ((10, 10, 10), 1, 6)}
GAME = {"atari": "Pong", "atari-real": "Pong", "minatar": "seaquest"}  # real games, 6 actions


def proc_status() -> dict[str, int]:
    """VmHWM, VmRSS, RssAnon, RssFile, RssShmem of this process in MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0]) // 1024
    return out


def real_episodes(game: str, frames: int, seed: int = 0) -> list[np.ndarray]:
    """Random play, ``frames`` real frames, as episodes uint8[T+1, 1, 84, 84]."""
    from shard_compression import play_atari

    played = play_atari(game, frames, seed)
    # play_atari keeps going over episode ends; cut it into pieces of 500..2000 frames, which
    # are as real as the game's own episodes for compression (no frame is made up)
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(played) - 1:
        t = int(rng.integers(500, 2001))
        out.append(played[i:i + t + 1, None])
        i += t + 1
    return out


def write_store(root: Path, kind: str, transitions: int, seed: int = 0, game: str = "Pong",
                real_frames: int = 100_000) -> None:
    """Episodes of 500..2000 steps of pseudo-random frames (a random block, rolled per episode),
    or, for ``atari-real``, of real frames (``real_episodes``) replayed in turn."""
    frame_shape, stack, num_actions = GEOMETRY[kind]
    rng = np.random.default_rng(seed)
    episodes = real_episodes(game, real_frames, seed) if kind == "atari-real" else None
    block = rng.integers(0, 256, (2001, *frame_shape), dtype=np.uint8)
    written = 0
    suite = "minatar" if kind == "minatar" else "atari"
    with GameWriter(root, suite=suite, game=GAME[kind], num_actions=num_actions,
                    frame_shape=frame_shape, stack=stack,
                    provenance={"source": "benchmarks/sampler_throughput.py"}) as w:
        while episodes is not None and written < transitions:
            for frames in episodes:
                t = min(len(frames) - 1, transitions - written)
                w.add_episode(frames[:t + 1], rng.integers(0, num_actions, t),
                              rng.standard_normal(t).astype(np.float32), True, False)
                written += t
                if written >= transitions:
                    break
        while written < transitions:
            t = int(min(rng.integers(500, 2001), transitions - written))
            frames = np.roll(block[: t + 1], int(rng.integers(0, 255)), axis=-1)
            w.add_episode(frames, rng.integers(0, num_actions, t),
                          rng.standard_normal(t).astype(np.float32), True, False)
            written += t


def disk_bytes(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def copy_bandwidth_gbs(nbytes: int = 512 << 20, repeats: int = 5) -> float:
    src = np.ones(nbytes, np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return nbytes / best / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", choices=sorted(GEOMETRY), default="atari")
    p.add_argument("--transitions", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--n-step", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0, help="timed sampling duration")
    p.add_argument("--dir", type=Path, default=None,
                   help="where to write the store (default: a new temporary directory; choose a "
                        "disk, not a RAM-backed /tmp, for disk figures)")
    p.add_argument("--keep", action="store_true", help="keep (and reuse) the store in --dir")
    p.add_argument("--skip-bandwidth", action="store_true")
    p.add_argument("--game", default="Pong", help="atari-real: the game played")
    p.add_argument("--real-frames", type=int, default=100_000, help="atari-real: frames played")
    p.add_argument("--compress", type=int, default=None, metavar="LEVEL",
                   help="also compress the store (zstd LEVEL) and sample the compressed one")
    p.add_argument("--resident-gb", type=float, default=None,
                   help="sample through a resident pool of this many GB (default: memory maps)")
    p.add_argument("--rotate-every", type=int, default=1000)
    args = p.parse_args()

    root = args.dir or Path(tempfile.mkdtemp(prefix="scaledql-bench-"))
    result: dict = {}
    try:
        if not (root / GAME[args.frames] / "manifest.json").exists():
            t0 = time.perf_counter()
            write_store(root, args.frames, args.transitions, game=args.game,
                        real_frames=args.real_frames)
            write_s = time.perf_counter() - t0
        else:
            write_s = 0.0
        data_root = root
        if args.compress is not None:
            data_root = root / "zstd"
            t0 = time.perf_counter()
            compress_dataset(root, data_root, level=args.compress,
                             block_frames=DEFAULT_BLOCK_FRAMES)
            result.update(compress_seconds=round(time.perf_counter() - t0, 1),
                          raw_store_mb=round(disk_bytes(root / GAME[args.frames]) / 1e6, 1),
                          compressed_store_mb=round(disk_bytes(data_root) / 1e6, 1))
        before_open = proc_status()
        t0 = time.perf_counter()
        ds = open_dataset(data_root)
        open_ms = (time.perf_counter() - t0) * 1e3
        pool = None if args.resident_gb is None else PoolOptions(
            int(args.resident_gb * 1e9), rotate_every=args.rotate_every)
        sampler = TransitionSampler(ds, [GAME[args.frames]], batch_size=args.batch,
                                    n_step=args.n_step, pool=pool)
        g = ds.game(GAME[args.frames])
        # Warm-up: one pass over the frames puts them in the page cache (as a long run would).
        for sh in g.shards if g.frame_codec is None else ():
            for i in range(0, len(sh.frames), 65536):
                np.asarray(sh.frames[i:i + 65536]).sum(dtype=np.uint64)
        for _ in range(5):
            sampler.sample()
        def rate_of(out) -> float:
            batches, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < args.seconds:
                sampler.sample(out=out)
                batches += 1
            return batches * args.batch / (time.perf_counter() - t0)

        rate_fresh = rate_of(None)  # a new batch of arrays per call (the default)
        rate = rate_of(sampler.empty_batch())  # refilling one batch (sample(out=...))
        frame_bytes = int(np.prod(g.frame_shape))
        bytes_per_transition = 2 * g.stack * frame_bytes
        if pool is not None:
            result.update(resident_gb=args.resident_gb, rotate_every=args.rotate_every,
                          resident_mb=round(sampler.pool.resident_nbytes() / 1e6),
                          arena_mb=round(sampler.pool.nbytes() / 1e6),
                          resident_blocks=sum(sampler.pool.slots),
                          blocks=sum(len(b.frames) for b in sampler.pool.blocks))
        result = {
            **result, "frames": args.frames, "frame_shape": list(g.frame_shape), "stack": g.stack,
            "store_transitions": g.num_transitions, "batch": args.batch, "n_step": args.n_step,
            "write_seconds": round(write_s, 1), "open_ms": round(open_ms, 2),
            "transitions_per_s_reused_batch": round(rate),
            "transitions_per_s_fresh_arrays": round(rate_fresh),
            "gb_per_s_of_stacks": round(rate * bytes_per_transition / 1e9, 2),
            "memory_mb_before_open": before_open, "memory_mb_after": proc_status(),
        }
        if not args.skip_bandwidth:
            bw = copy_bandwidth_gbs()
            result["copy_bandwidth_gb_s"] = round(bw, 1)
            result["bandwidth_bound_transitions_per_s"] = round(bw * 1e9 / bytes_per_transition)
        print(json.dumps(result))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
