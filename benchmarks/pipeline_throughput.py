"""Loop throughput as a fraction of update-only throughput: how idle does the loop leave the device?

For each configuration it measures, on the same learner, store and device:
- **update only**: ``learner.update(batch)`` on one batch already on the device (the ceiling);
- **loop**: the real training loop (``scaledql.training.offline_loop.train``) — sampling, the
  host→device copy, the update, metrics on the device — with ``sample_workers`` 0 (sampling in
  the loop, one step after the other: the loop before the prefetcher) and 1, 2 (background
  threads, pinned buffers and a side-stream copy on CUDA).
Loop steps/s are read from the run's own ``metrics.jsonl`` (``steps_per_second`` of each logged
window), skipping the first window (warm-up, compilation). The measurements of one config are
repeated ``--repeats`` times in turn (ceiling, loop 0, loop 1, ..., ceiling, ...) and the
medians reported, so that load from other processes hits every variant alike.

    python benchmarks/pipeline_throughput.py                    # CPU set, ~4 minutes on 2 cores
    python benchmarks/pipeline_throughput.py --set gpu          # Nature CNN and ResNet-50, batch 512

Data is synthetic (random frames in a temporary store, written by the project's own writer).
"""

from __future__ import annotations

import os

# As the CLI does: idle OpenMP threads must not spin (before torch is imported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from scaledql.agents.base import Problem, as_tensors
from scaledql.agents.scaled_ql import ScaledQL, ScaledQLConfig
from scaledql.data.sampling.sampler import make_sampler
from scaledql.data.store.dataset import open_dataset
from scaledql.data.store.writer import GameWriter
from scaledql.device import pick_device
from scaledql.training.config import RunConfig, preset_path, read_toml
from scaledql.training.offline_loop import train

MINATAR = ScaledQLConfig(**read_toml(preset_path("minatar"))["learner"]["scaled-ql"])
ATARI_GAMES = {"Pong": 6, "Breakout": 4}
MINATAR_GAMES = {"asterix": 5, "breakout": 3, "freeway": 3, "seaquest": 6, "space_invaders": 4}
SETS = {
    "cpu": {
        "atari-nature-b32": ("atari", ScaledQLConfig(encoder="nature", batch_size=32)),
        "minatar-preset-b128": ("minatar", MINATAR),
    },
    "gpu": {
        "atari-nature-b512": ("atari", ScaledQLConfig(encoder="nature", batch_size=512)),
        "atari-resnet50-b512": ("atari", ScaledQLConfig(encoder="resnet50", batch_size=512)),
        "minatar-preset-b128": ("minatar", MINATAR),
    },
}


def write_store(root: Path, suite: str, frames_per_game: int) -> dict[str, int]:
    games = ATARI_GAMES if suite == "atari" else MINATAR_GAMES
    shape, stack = ((1, 84, 84), 4) if suite == "atari" else ((10, 10, 10), 1)
    rng = np.random.default_rng(0)
    for game, actions in games.items():
        with GameWriter(root, suite=suite, game=game, num_actions=actions, frame_shape=shape,
                        stack=stack, provenance={"source": "benchmarks (random)"}) as w:
            for _ in range(frames_per_game // 1000):
                frames = rng.integers(0, 256, (1001, *shape), dtype=np.uint8)
                w.add_episode(frames, rng.integers(0, actions, 1000),
                              rng.uniform(-1, 1, 1000).astype(np.float32), True, False)
    return games


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def update_only(root: Path, cfg: ScaledQLConfig, device: torch.device, steps: int) -> float:
    """Steps/s of updates on one batch already on the device (metrics left on the device)."""
    data = open_dataset(root)
    first = data.game(data.games[0])
    problem = Problem(tuple(first.obs_shape), tuple(data.game(g).num_actions for g in data.games),
                      tuple(data.games), first.frame_shape[0])
    torch.manual_seed(0)
    learner = ScaledQL(cfg, problem, device)
    sampler = make_sampler(data, data.games, learner.batch_spec(), cfg.batch_size, 0)
    batch = as_tensors(sampler.sample(), device)
    for _ in range(max(3, steps // 10)):
        learner.update(batch)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        learner.update(batch)
    sync(device)
    return steps / (time.perf_counter() - start)


def loop(root: Path, out: Path, cfg: ScaledQLConfig, device: str, steps: int,
         workers: int) -> float:
    """Median steps/s of the training loop's logged windows after the first."""
    window = max(1, steps // 5)
    run = RunConfig(data=str(root), out=str(out), steps=steps, log_every=window,
                    checkpoint_every=10 * steps, device=device, sample_workers=workers,
                    learner=cfg)
    train(run, progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["steps_per_second"] for r in rows if r["kind"] == "train"][1:]
    return statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=list(SETS), default="cpu")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=0, help="steps per measurement "
                        "(default: 150 on CPU, 500 on CUDA)")
    parser.add_argument("--workers", default="0,1,2", help="sample_workers values to time")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (and compile on CUDA)")
    parser.add_argument("--frames", type=int, default=20_000, help="transitions per game")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of all measurements")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = pick_device(args.device)
    steps = args.steps or (500 if device.type == "cuda" else 150)
    load0 = os.getloadavg()[0]
    results = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
               "cpus": os.cpu_count(), "runs": {}}
    with tempfile.TemporaryDirectory(prefix="scaledql-pipeline-") as tmp:
        stores = {}
        for name, (suite, cfg) in SETS[args.set].items():
            if args.bf16:
                cfg = replace(cfg, bf16=True, compile=device.type == "cuda")
            if suite not in stores:
                stores[suite] = Path(tmp, suite)
                write_store(stores[suite], suite, args.frames)
            workers = [int(x) for x in args.workers.split(",")]
            rates: dict[str, list[float]] = {"ceiling": [], **{f"w{w}": [] for w in workers}}
            for rep in range(args.repeats):
                rates["ceiling"].append(update_only(stores[suite], cfg, device, steps))
                for w in workers:
                    out = Path(tmp, f"{name}-w{w}-r{rep}")
                    rates[f"w{w}"].append(loop(stores[suite], out, cfg, str(device), steps, w))
            ceiling = statistics.median(rates["ceiling"])
            row = {"update_only_steps_per_s": ceiling, "all": rates}
            for w in workers:
                rate = statistics.median(rates[f"w{w}"])
                row[f"loop_w{w}_steps_per_s"] = rate
                row[f"loop_w{w}_fraction"] = rate / ceiling
            results["runs"][name] = row
            print(name, json.dumps(row), file=sys.stderr)
    results["load_avg_1min"] = [load0, os.getloadavg()[0]]
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(r: dict) -> str:
    workers = sorted({k.split("_")[1] for row in r["runs"].values() for k in row
                      if k.startswith("loop_")})
    head = "| config | update only (steps/s) | " + " | ".join(
        f"loop {w.replace('w', 'workers=')} (steps/s, share)" for w in workers) + " |"
    lines = [f"device {r['device']} ({r['gpu'] or 'CPU'}), torch {r['torch']}, {r['threads']} "
             f"threads, load avg {r['load_avg_1min'][0]:.1f} → {r['load_avg_1min'][1]:.1f}", "",
             head, "|" + "---|" * (2 + len(workers))]
    for name, row in r["runs"].items():
        cells = [f"{row[f'loop_{w}_steps_per_s']:.1f} ({100 * row[f'loop_{w}_fraction']:.0f}%)"
                 for w in workers]
        lines.append(f"| {name} | {row['update_only_steps_per_s']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
