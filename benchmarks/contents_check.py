"""Cost of the contents check that runs before training (``open_dataset(contents=True)``).

    python benchmarks/contents_check.py [--transitions 1000000,10000000] [--dir DIR] [--keep]

For each size and two episode-length regimes (MinAtar-like, 30-300 steps; Atari-like,
500-5000 steps), writes one synthetic game store with the project's own ``GameWriter``
(1x1x1 frames: the check never reads a frame but the sentinel, so their size does not matter
and the store stays small on disk), then times, best of 3: the open (cheap checks: manifest,
headers, episode tables) and the contents check (``verify_game`` without frames: every action
in range, rewards finite, returns-to-go, episode returns, flags and counts), warm (arrays in
the page cache) and cold (``posix_fadvise(DONTNEED)`` on the store's files first, so they are
read from disk), and the check's peak of Python-tracked memory (tracemalloc). One JSON line
per store. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from scaledql.data.store.dataset import GameData
from scaledql.data.store.validate import verify_game
from scaledql.data.store.writer import GameWriter

REGIMES = {"minatar-like": (30, 300), "atari-like": (500, 5000)}


def build(root: Path, transitions: int, lengths: tuple[int, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with GameWriter(root, suite="minatar", game="breakout", num_actions=3, frame_shape=(1, 1, 1),
                    stack=1, provenance={"source": "benchmarks/contents_check.py"}) as w:
        done = 0
        while done < transitions:
            t = int(min(transitions - done, rng.integers(*lengths)))
            w.add_episode(np.zeros((t + 1, 1, 1, 1), np.uint8), rng.integers(0, 3, t),
                          rng.normal(size=t).astype(np.float32), bool(rng.random() < 0.9),
                          False)
            done += t
    return root / "breakout"


def evict(game_dir: Path) -> None:
    """Drop the store's pages from the page cache (only its own files)."""
    for p in game_dir.rglob("*.npy"):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def best(fn, rounds: int = 3, before=None) -> float:
    times = []
    for _ in range(rounds):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(game_dir: Path, transitions: int, regime: str) -> dict:
    g = GameData(game_dir)
    verify_game(g, frames=False)  # warm
    open_s = best(lambda: GameData(game_dir))
    warm_s = best(lambda: verify_game(GameData(game_dir), frames=False)) - open_s
    cold_s = best(lambda: verify_game(GameData(game_dir), frames=False),
                  before=lambda: evict(game_dir)) - open_s
    tracemalloc.start()
    verify_game(g, frames=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    small = sum(p.stat().st_size for p in game_dir.rglob("*.npy") if p.name != "frames.npy")
    return {"transitions": transitions, "regime": regime, "episodes": len(g.episode_returns),
            "shards": len(g.shards), "small_array_bytes": small,
            "open_s": round(open_s, 4), "check_warm_s": round(warm_s, 4),
            "check_cold_s": round(cold_s, 4),
            "ns_per_transition_warm": round(warm_s / transitions * 1e9, 1),
            "peak_tracked_mb": round(peak / 1e6, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--transitions", default="1000000,10000000",
                   help="comma list of store sizes (default: 1M and 10M)")
    p.add_argument("--dir", type=Path, default=None, help="where to write the stores")
    p.add_argument("--keep", action="store_true", help="keep the stores (reused next time)")
    args = p.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="scaledql-contents-"))
    try:
        for n in (int(x) for x in args.transitions.split(",")):
            for regime, lengths in REGIMES.items():
                root = base / f"{regime}-{n}"
                game_dir = root / "breakout"
                if not (game_dir / "manifest.json").is_file():
                    build(root, n, lengths)
                print(json.dumps(measure(game_dir, n, regime)), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
