"""Update throughput (gradient steps/s) of the BC and MAE learners on a fixed batch (no sampler).

Configurations: each learner's ``tiny_config`` and a MinAtar-size one (Nature CNN width 1,
feature_dim 256, batch 128, obs uint8[10, 10, 10], the five MinAtar games' action counts), with
Scaled QL's MinAtar preset learner on the same batch for reference. Rounds alternate between
configurations so a busy neighbour slows all alike; the best round is reported, with all rounds.

    PYTHONPATH=src python benchmarks/bc_mae_throughput.py --threads 2 --seconds 3 --rounds 3
"""

from __future__ import annotations

import os

# Before torch loads: with a core taken by another job, spinning OpenMP threads make an update
# many times slower (benchmarks/README.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import time
from dataclasses import replace

import numpy as np
import torch

from scaledql.agents import Problem, learner_class
from scaledql.data.sampling.sampler import TransitionBatch

GAMES = {"asterix": 5, "breakout": 3, "freeway": 3, "seaquest": 6, "space_invaders": 4}
PROBLEM = Problem(obs_shape=(10, 10, 10), num_actions=tuple(GAMES.values()), games=tuple(GAMES),
                  frame_channels=10)
MINATAR = {"encoder": "nature", "width": 1.0, "feature_dim": 256, "batch_size": 128}


def configs() -> dict[str, tuple[str, object]]:
    bc, mae, sql = (learner_class(n) for n in ("bc", "mae", "scaled-ql"))
    return {
        "bc tiny": ("bc", bc.tiny_config()),
        "mae tiny": ("mae", mae.tiny_config()),
        "bc minatar": ("bc", bc.config_class(**MINATAR)),
        "mae minatar": ("mae", mae.config_class(**MINATAR)),  # decoder width 32 (auto)
        "mae minatar, decoder width 128": ("mae", mae.config_class(**MINATAR, decoder_width=128)),
        "scaled-ql minatar (reference)": ("scaled-ql", sql.config_class(**MINATAR, n_step=3)),
    }


def batch(size: int, seed: int = 0) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    game_id = rng.integers(0, len(GAMES), size)
    counts = np.array(list(GAMES.values()))
    obs = (rng.random((size, *PROBLEM.obs_shape)) < 0.1).astype(np.uint8) * 255  # sparse cells
    return TransitionBatch(
        obs=obs, action=(rng.integers(0, 1000, size) % counts[game_id]).astype(np.int64),
        reward=rng.uniform(-1, 1, size).astype(np.float32),
        discount=np.full(size, 0.99**3, np.float32), done=np.zeros(size, np.float32),
        next_obs=np.roll(obs, 1, axis=0), game_id=game_id.astype(np.int64))


def steps_per_second(learner, b, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        metrics = learner.update(b)
        count += 1
    float(metrics["loss"])  # sync (a no-op on CPU)
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="also bf16 + channels_last variants")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    runs = {}
    for name, (algo, cfg) in configs().items():
        runs[name] = (algo, cfg)
        if args.bf16 and "minatar" in name:
            runs[name + " bf16+NHWC"] = (algo, replace(cfg, bf16=True, channels_last=True))
    learners = {n: learner_class(a)(c, PROBLEM) for n, (a, c) in runs.items()}
    batches = {n: batch(c.batch_size) for n, (_, c) in runs.items()}
    for n, learner in learners.items():  # warm-up: allocator, Adam state, kernels
        for _ in range(3):
            learner.update(batches[n])
    rounds: dict[str, list[float]] = {n: [] for n in runs}
    for _ in range(args.rounds):
        for n, learner in learners.items():
            rounds[n].append(steps_per_second(learner, batches[n], args.seconds))
    for n in runs:
        best = max(rounds[n])
        print(json.dumps({"config": n, "updates_per_s": round(best, 1),
                          "samples_per_s": round(best * runs[n][1].batch_size),
                          "rounds": [round(r, 1) for r in rounds[n]],
                          "params": learners[n].param_counts()}))
    print(json.dumps({"threads": args.threads, "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
