"""Environment throughput (agent steps/s, random actions): single env vs vector envs.

    python benchmarks/env_throughput.py [--seconds 5]

Prints one JSON line per (suite, game, backend, num_envs). Run on demand; not a test.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from scaledql.suites import EnvOptions, get_suite


def single(suite: str, game: str, seconds: float) -> float:
    env = get_suite(suite).make_env(game)
    env.reset(seed=0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        n += 1
        if terminated or truncated:
            env.reset()
    return n / (time.perf_counter() - start)


def vector(suite: str, game: str, num_envs: int, seconds: float, options: EnvOptions) -> float:
    s = get_suite(suite)
    envs = s.make_vector_env(game, num_envs, options)
    envs.reset(seed=0)
    actions = s.spec(game, options).num_actions
    rng = np.random.default_rng(0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        envs.step(rng.integers(0, actions, num_envs))
        n += num_envs
    envs.close()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    cases = [("atari", "Pong"), ("atari", "Breakout"), ("minatar", "breakout"),
             ("minatar", "seaquest")]
    for suite, game in cases:
        print(json.dumps({"suite": suite, "game": game, "backend": "single", "num_envs": 1,
                          "steps_per_second": round(single(suite, game, args.seconds))}))
        for num_envs in (4, 8):
            backend = "ale-py AtariVectorEnv" if suite == "atari" else "gymnasium SyncVectorEnv"
            sps = vector(suite, game, num_envs, args.seconds, EnvOptions())
            print(json.dumps({"suite": suite, "game": game, "backend": backend,
                              "num_envs": num_envs, "steps_per_second": round(sps)}))
        if suite == "atari":  # a mode forces gymnasium's vector env
            sps = vector(suite, game, 8, args.seconds, EnvOptions(mode=0))
            print(json.dumps({"suite": suite, "game": game, "backend": "gymnasium SyncVectorEnv",
                              "num_envs": 8, "steps_per_second": round(sps)}))


if __name__ == "__main__":
    main()
