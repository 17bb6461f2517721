"""d3rlpy's DiscreteCQL on Atari-sized frames: the anchor of ``train_throughput.py``.

Runs inside the separate d3rlpy virtualenv (d3rlpy 2.8.1 pins gymnasium 1.0.0, which the
project's own environment must not get), launched by ``train_throughput.py`` as a subprocess;
prints one JSON line. It imports nothing from scaledql.

Setup is d3rlpy's own Atari recipe: single uint8 frames (1, 84, 84) stacked 4 at sampling time
by ``FrameStackTransitionPicker``, ``PixelObservationScaler`` (÷255), ``DiscreteCQLConfig``
defaults (its default encoder is the Nature DQN pixel encoder with a 512-unit dense layer).
Timed loop: ``sample_transition_batch`` + ``update``, i.e. sampling included.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--actions", type=int, default=6)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import d3rlpy
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    n = args.frames
    observations = rng.integers(0, 256, (n, 1, 84, 84), dtype=np.uint8)
    actions = rng.integers(0, args.actions, n)
    rewards = rng.uniform(-1, 1, n).astype(np.float32)
    terminals = np.zeros(n, np.float32)
    terminals[np.arange(999, n, 1000)] = 1.0  # episodes of 1000 steps
    dataset = d3rlpy.dataset.MDPDataset(
        observations, actions, rewards, terminals,
        action_space=d3rlpy.constants.ActionSpace.DISCRETE, action_size=args.actions,
        transition_picker=d3rlpy.dataset.FrameStackTransitionPicker(4),
    )
    cql = d3rlpy.algos.DiscreteCQLConfig(
        batch_size=args.batch_size, observation_scaler=d3rlpy.preprocessing.PixelObservationScaler()
    ).create(device="cpu:0")
    cql.build_with_dataset(dataset)

    def step() -> None:
        cql.update(dataset.sample_transition_batch(args.batch_size))

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = time.perf_counter() - start
    params = sum(p.numel() for p in cql.impl.q_function.parameters())
    print(json.dumps({
        "name": "d3rlpy DiscreteCQL (default pixel encoder)",
        "d3rlpy": d3rlpy.__version__, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "batch_size": args.batch_size, "steps": args.steps, "seconds": seconds,
        "steps_per_s": args.steps / seconds, "samples_per_s": args.steps * args.batch_size / seconds,
        "params": params,
    }))


if __name__ == "__main__":
    main()
