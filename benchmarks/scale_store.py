"""Scale test: a 40-game compressed store of 100M+ transitions, then open time, pool throughput, RAM.

    python benchmarks/scale_store.py build --source data/minatar-1m --out /tmp/scale \
        [--games 40] [--transitions 2500000] [--raw-dir /dev/shm]
    python benchmarks/scale_store.py measure --out /tmp/scale [--resident-gb 2] [--seconds 30]

``build`` writes one game at a time: a raw store of ``--transitions`` MinAtar-size transitions
(10x10x10 frames) under ``--raw-dir``, then ``scaledql data compress``'s ``compress_game`` into
``--out``, then deletes the raw store; a game already in ``--out`` is skipped, so an interrupted
build resumes. Frames are real: game ``i`` replays the episodes of MinAtar game ``i mod 5`` from
``--source`` (real agent data) in its own shuffled order, each pass through them flipped and
channel-rolled differently, so no two games (and no two passes) store the same frames. Games are
named after the Atari train40 list (a store's games must be a suite's; MinAtar has 5), with the
source's actions, rewards and episode ends. ``measure`` opens the store (timed), builds a
``TransitionSampler`` over all games with a resident pool, and times ``sample(out=...)``
(batch 512, n = 3), the pool's first fill and its rotations included; one JSON line with the
memory figures of ``sampler_throughput.py``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampler_throughput import proc_status
from scaledql.data import open_dataset
from scaledql.data.sampling.block_pool import PoolOptions
from scaledql.data.sampling.sampler import TransitionSampler
from scaledql.data.store.compress import compress_game
from scaledql.data.store.dataset import list_games
from scaledql.data.store.writer import GameWriter


def _episodes(game) -> list[tuple[int, int, int, int]]:
    """(shard, frame_start, length, flags) of every stored episode with steps."""
    out = []
    for si, sh in enumerate(game.shards):
        for s, t, f in zip(np.asarray(sh.ep_frame_start), np.asarray(sh.ep_length),
                           np.asarray(sh.ep_flags), strict=True):
            if t:
                out.append((si, int(s), int(t), int(f)))
    return out


def build_game(source, name: str, index: int, transitions: int, raw_dir: Path, out: Path,
               level: int, block: int) -> dict:
    """One synthetic game (see the module docstring): raw, compressed, raw deleted."""
    rng = np.random.default_rng(index)
    episodes = _episodes(source)
    raw_root = raw_dir / f"scale-raw-{name}"
    shutil.rmtree(raw_root, ignore_errors=True)
    written, rounds = 0, 0
    t0 = time.perf_counter()
    with GameWriter(raw_root, suite="atari", game=name, num_actions=source.num_actions,
                    frame_shape=source.frame_shape, stack=source.stack,
                    provenance={"source": "benchmarks/scale_store.py",
                                "from": f"{source.name} (pass variants, seed {index})"}) as w:
        while written < transitions:
            # a pass: the episodes in a new order, flipped and channel-rolled its own way
            flip_h, flip_w = rounds & 1, (rounds >> 1) & 1
            roll = (index // 5 + rounds) % source.frame_shape[0]
            for e in rng.permutation(len(episodes)):
                si, start, t, flags = episodes[e]
                t = min(t, transitions - written)
                sh = source.shards[si]
                frames = np.roll(np.asarray(sh.frames[start:start + t + 1]), roll, axis=1)
                if flip_h:
                    frames = frames[:, :, ::-1]
                if flip_w:
                    frames = frames[:, :, :, ::-1]
                w.add_episode(frames, np.asarray(sh.actions[start:start + t]),
                              np.asarray(sh.rewards[start:start + t]),
                              bool(flags & 1) and t == episodes[e][2],
                              bool(flags & 2) and t == episodes[e][2])
                written += t
                if written >= transitions:
                    break
            rounds += 1
    raw_s = time.perf_counter() - t0
    try:
        raw = open_dataset(raw_root).game(name)
        s = compress_game(raw, out, level=level, block_frames=block,
                          command="benchmarks/scale_store.py build")
    finally:
        shutil.rmtree(raw_root, ignore_errors=True)
    return {"game": name, "transitions": s.transitions, "raw_write_s": round(raw_s, 1),
            "compress_s": round(s.seconds, 1), "frames_mb": round(s.raw_frame_bytes / 1e6),
            "compressed_mb": round(s.compressed_frame_bytes / 1e6, 1),
            "tables_mb": round(s.other_bytes / 1e6, 1)}


def build(args: argparse.Namespace) -> None:
    from scaledql.suites import get_suite

    names = get_suite("atari").resolve_games("train40")[:args.games]
    source = open_dataset(args.source)
    for i, name in enumerate(names):
        if (args.out / name / "manifest.json").is_file():
            continue
        src = source.game(source.games[i % len(source.games)])
        print(json.dumps(build_game(src, name, i, args.transitions, args.raw_dir, args.out,
                                    args.level, args.block_transitions)), flush=True)


def measure(args: argparse.Namespace) -> None:
    before = proc_status()
    t0 = time.perf_counter()
    ds = open_dataset(args.out, None if args.games is None else list_games(args.out)[:args.games])
    open_s = time.perf_counter() - t0
    opened = proc_status()
    pool = PoolOptions(int(args.resident_gb * 1e9), rotate_every=args.rotate_every,
                       rotate_share=args.rotate_share)
    t0 = time.perf_counter()
    sampler = TransitionSampler(ds, ds.games, batch_size=args.batch, n_step=3, pool=pool)
    build_s = time.perf_counter() - t0
    out = sampler.empty_batch()
    t0 = time.perf_counter()
    sampler.sample(out=out)  # the pool's first fill
    fill_s = time.perf_counter() - t0
    batches, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        sampler.sample(out=out)
        batches += 1
    elapsed = time.perf_counter() - t0
    p = sampler.pool
    games = [ds.game(g) for g in ds.games]
    print(json.dumps({
        "games": len(games), "transitions": sum(g.num_transitions for g in games),
        "shards": sum(len(g.shards) for g in games),
        "blocks": sum(len(b.frames) for b in p.blocks), "resident_blocks": sum(p.slots),
        "compressed_gb": round(sum(sh.frames.compressed_bytes for g in games
                                   for sh in g.shards) / 1e9, 3),
        "open_s": round(open_s, 3), "sampler_build_s": round(build_s, 3),
        "first_fill_s": round(fill_s, 2), "batch": args.batch, "rotate_every": args.rotate_every,
        "rotations": (batches + 1) // args.rotate_every,
        "transitions_per_s": round(batches * args.batch / elapsed),
        "resident_mb": round(p.resident_nbytes() / 1e6), "arena_mb": round(p.nbytes() / 1e6),
        "resident_gb_budget": args.resident_gb,
        "memory_mb_before_open": before, "memory_mb_after_open": opened,
        "memory_mb_after": proc_status()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--source", type=Path, default=Path("data/minatar-1m"))
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--games", type=int, default=40)
    b.add_argument("--transitions", type=int, default=2_500_000, help="per game")
    b.add_argument("--raw-dir", type=Path, default=Path("/dev/shm"),
                   help="where each game's raw store is written, then deleted")
    b.add_argument("--level", type=int, default=3)
    b.add_argument("--block-transitions", type=int, default=4096)
    m = sub.add_parser("measure")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--games", type=int, default=None, help="the first N games (default: all)")
    m.add_argument("--resident-gb", type=float, default=2.0)
    m.add_argument("--rotate-every", type=int, default=1000)
    m.add_argument("--rotate-share", type=float, default=0.25)
    m.add_argument("--batch", type=int, default=512)
    m.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    build(args) if args.cmd == "build" else measure(args)


if __name__ == "__main__":
    main()
