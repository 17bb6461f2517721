"""Time to open many game stores (``GameData``: manifest, array headers, episode tables).

    python benchmarks/store_open.py [--games 40] [--shards 4] [--repeat 5]

Writes one small store of ``--shards`` shards (the project's ``GameWriter``, MinAtar-sized
frames), links it under ``--games`` names and times opening them all, best of ``--repeat``, warm
(files in the page cache). One JSON line. Not a test: ``tests/test_store_checks.py`` asserts
what the open reads (headers and episode tables only), this measures how long that takes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from scaledql.data.store.dataset import GameData
from scaledql.data.store.writer import GameWriter


def build(root: Path, shards: int) -> Path:
    for i in range(shards):
        with GameWriter(root, suite="minatar", game="breakout", num_actions=3,
                        frame_shape=(10, 10, 10), stack=1, shard_steps=1,
                        append=i > 0) as w:
            w.add_episode(np.zeros((5, 10, 10, 10), np.uint8), np.arange(4) % 3,
                          np.ones(4, np.float32), True, False)
    return root / "breakout"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games", type=int, default=40)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = build(Path(tmp) / "one", args.shards)
        names = [f"g{i}" for i in range(args.games)]
        for name in names:
            os.symlink(store, Path(tmp) / name)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            for name in names:
                GameData(Path(tmp) / name, name="breakout")
            times.append(time.perf_counter() - start)
    print(json.dumps({"games": args.games, "shards": args.shards, "best_s": round(min(times), 4),
                      "all_s": [round(t, 4) for t in times],
                      "per_game_ms": round(1000 * min(times) / args.games, 2),
                      "cpu": platform.processor() or platform.machine(),
                      "load": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
