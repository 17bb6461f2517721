"""Training throughput of the Scaled QL learner, sampling included, next to d3rlpy's DiscreteCQL.

Measures gradient steps/s and samples/s of ``sampler.sample()`` + ``agent.update(batch)`` for
  (a) the Nature DQN CNN on 84×84×4 uint8 Atari frames at batch 32 (C51 + CQL agent), and
  (b) the default MinAtar configuration (5 games in one batch, 10×10×10 grids),
plus the achieved FLOP/s of (a) (FLOPs of one update counted by ``FlopCounterMode``) next to this
machine's float32 matmul FLOP/s, and d3rlpy 2.8.1's ``DiscreteCQL`` with its default pixel
encoder on the same frames and batch, run in the same invocation (alternating with (a)).
``--value-targets c51,hl-gauss,two-hot,mse`` also times (a) and (b) with each value target
(``--loss``) in turn, in the same invocation, beside C51.

d3rlpy pins gymnasium 1.0.0, so it lives in its own virtualenv and runs as a subprocess
(``d3rlpy_cql_worker.py``); create it once with

    python3 -m venv benchmarks/.venv-d3rlpy
    benchmarks/.venv-d3rlpy/bin/pip install torch==2.13.0 && benchmarks/.venv-d3rlpy/bin/pip install d3rlpy==2.8.1

Run (a quiet machine matters: the numbers are only as good as the idle cores):

    python benchmarks/train_throughput.py            # ~3 minutes on 2 cores
    python benchmarks/train_throughput.py --skip-d3rlpy --steps 100
    python benchmarks/train_throughput.py --skip-d3rlpy --skip-atari --skip-minatar \
        --value-targets c51,hl-gauss,two-hot,mse       # only the value targets side by side

Data is synthetic (random frames written to a temporary store by the project's own writer and
read back by its sampler), which is all a throughput measurement needs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from scaledql.agents.base import Problem
from scaledql.agents.scaled_ql import ScaledQL, ScaledQLConfig, scaled_ql_loss
from scaledql.data.sampling.sampler import TransitionBatch, TransitionSampler
from scaledql.data.store.dataset import open_dataset
from scaledql.data.store.writer import GameWriter
from scaledql.models import NetworkOutput
from scaledql.training.config import preset_path, read_toml
from scaledql.value_targets import value_target_class, value_target_names

HERE = Path(__file__).resolve().parent
D3RLPY_PYTHON = HERE / ".venv-d3rlpy" / "bin" / "python"

# (a): the Atari learner at DQN's batch size; single game (Pong's 6 actions). float32 is the
# like-for-like comparison with d3rlpy; bf16 autocast (native on CPUs with AVX512-BF16/AMX)
# is measured next to it.
ATARI = ScaledQLConfig(encoder="nature", width=1.0, batch_size=32, channels_last=True)
ATARI_BF16 = replace(ATARI, bf16=True)
ATARI_GAMES = {"Pong": 6}
# (b): the default MinAtar learner, read from the packaged preset the `train` command uses;
# all five games (their action counts) in every batch.
MINATAR = ScaledQLConfig(**read_toml(preset_path("minatar"))["learner"]["scaled-ql"])
MINATAR_GAMES = {"asterix": 5, "breakout": 3, "freeway": 3, "seaquest": 6, "space_invaders": 4}
N_STEP = MINATAR.n_step  # the preset's n-step, used for both runs
EPISODE = 1000  # steps per synthetic episode
# (b)'s variants: the same learner with these options changed (old vs new presets side by side).
# "old": the MinAtar preset before issue 20 (float32, NCHW); the preset itself now runs bf16 where
# native, with channels-last convolutions.
VARIANTS = {
    "old": {"bf16": False, "channels_last": False},
    "fp32": {"bf16": False},
    "bf16": {"bf16": True},
    "bf16-cl": {"bf16": True, "channels_last": True},
    "compile": {"compile": True},
    "fp32-compile": {"bf16": False, "channels_last": False, "compile": True},
    "bf16-compile": {"bf16": True, "compile": True},
    "b256": {"batch_size": 256},
    "b512": {"batch_size": 512},
    "bf16-b256": {"bf16": True, "batch_size": 256},
    "bf16-b512": {"bf16": True, "batch_size": 512},
}


def matmul_flops(n: int = 1024, seconds: float = 2.0) -> float:
    """Float32 FLOP/s of square matmuls on this machine (2·n³ FLOPs each; best of 3 runs)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            a @ b
            count += 1
        best = max(best, 2 * n**3 * count / (time.perf_counter() - start))
    return best


def write_store(root: Path, suite: str, games: dict[str, int], frame_shape: tuple[int, int, int],
                stack: int, steps: int, seed: int = 0) -> None:
    """Random episodes of ``EPISODE`` steps, ``steps`` transitions per game."""
    rng = np.random.default_rng(seed)
    for game, num_actions in games.items():
        with GameWriter(root, suite=suite, game=game, num_actions=num_actions,
                        frame_shape=frame_shape, stack=stack,
                        provenance={"source": "benchmarks/train_throughput.py (random)"}) as w:
            for _ in range(steps // EPISODE):
                frames = rng.integers(0, 256, (EPISODE + 1, *frame_shape), dtype=np.uint8)
                if suite == "minatar":
                    frames = np.where(frames < 128, 0, 255).astype(np.uint8)  # on/off cells
                w.add_episode(frames,
                              rng.integers(0, num_actions, EPISODE),
                              rng.uniform(-1, 1, EPISODE).astype(np.float32),
                              terminated=True, truncated=False)


def make_learner(root: Path, cfg: ScaledQLConfig, games: dict[str, int], obs_shape, seed: int = 0):
    dataset = open_dataset(root)
    sampler = TransitionSampler(dataset, list(games), batch_size=cfg.batch_size, n_step=N_STEP,
                                gamma=cfg.gamma, reward_clip=1.0, seed=seed)
    torch.manual_seed(seed)
    problem = Problem(tuple(obs_shape), tuple(games.values()), tuple(games), obs_shape[0] // 4
                      if obs_shape[0] == 4 else obs_shape[0])
    agent = ScaledQL(cfg, problem, device="cpu")
    return agent, sampler


def time_training(agent: ScaledQL, sampler: TransitionSampler, steps: int, warmup: int) -> dict:
    batch = sampler.empty_batch()  # refilled in place: no fresh arrays (page faults) per step
    for _ in range(warmup):
        agent.update(sampler.sample(out=batch))
    start = time.perf_counter()
    for _ in range(steps):
        agent.update(sampler.sample(out=batch))
    seconds = time.perf_counter() - start
    b = sampler.batch_size
    return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "samples_per_s": steps * b / seconds}


def flops_per_update(agent: ScaledQL, sampler: TransitionSampler) -> int:
    """FLOPs of one full update (3 forward passes, backward), counted on a copy of the agent."""
    probe = ScaledQL(agent.cfg, agent.problem)
    counter = FlopCounterMode(display=False)
    with counter:
        probe.update(sampler.sample())
    return counter.get_total_flops()


def run_d3rlpy(python: Path, batch_size: int, steps: int, warmup: int, frames: int,
               threads: int) -> dict:
    cmd = [str(python), str(HERE / "d3rlpy_cql_worker.py"), "--batch-size", str(batch_size),
           "--steps", str(steps), "--warmup", str(warmup), "--frames", str(frames),
           "--actions", str(next(iter(ATARI_GAMES.values()))), "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"d3rlpy worker failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def best(runs: list[dict]) -> dict:
    """The fastest of repeated runs (a shared machine only ever slows a run down)."""
    top = max(runs, key=lambda r: r["steps_per_s"])
    return {**top, "all_steps_per_s": [round(r["steps_per_s"], 2) for r in runs],
            "median_steps_per_s": statistics.median(r["steps_per_s"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="timed gradient steps per run")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="alternating (a)/d3rlpy runs")
    parser.add_argument("--frames", type=int, default=20_000, help="transitions per game in the store")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--skip-d3rlpy", action="store_true")
    parser.add_argument("--skip-minatar", action="store_true")
    parser.add_argument("--skip-atari", action="store_true", help="only (b) and its variants")
    parser.add_argument("--minatar-variants", default="",
                        help="comma-separated variants of (b) timed in turn with it, e.g. "
                             "bf16,bf16-cl,b256,bf16-b256,bf16-b512,compile (see VARIANTS)")
    parser.add_argument("--value-targets", default="",
                        help="comma-separated value targets timed in turn on (a) and (b), e.g. "
                             "c51,hl-gauss,two-hot,mse (C51 is always among them)")
    parser.add_argument("--emulate-bf16", action="store_true",
                        help="let the bf16 variants run where bf16 is not native (emulated): "
                             "measures why the learners refuse it there")
    parser.add_argument("--d3rlpy-python", type=Path, default=D3RLPY_PYTHON)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.emulate_bf16:
        import scaledql.agents.base as agents_base

        agents_base.bf16_supported = lambda device: True  # what resolve_bf16 asks
    if not args.skip_d3rlpy and not args.d3rlpy_python.exists():
        raise SystemExit(f"{args.d3rlpy_python} not found: create the d3rlpy venv (see --help "
                         "or benchmarks/README.md) or pass --skip-d3rlpy")

    results: dict = {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__,
                                 "threads": torch.get_num_threads(),
                                 "load_avg_1min_at_start": os.getloadavg()[0]}}
    results["matmul_flops"] = matmul_flops()
    with tempfile.TemporaryDirectory(prefix="scaledql-bench-") as tmp:
        atari_root, minatar_root = Path(tmp, "atari"), Path(tmp, "minatar")
        if not args.skip_atari:
            atari(args, results, atari_root)
        if not args.skip_minatar:
            minatar(args, results, minatar_root)
        if args.value_targets:
            value_targets(args, results, atari_root, minatar_root)
    results["machine"]["load_avg_1min_at_end"] = os.getloadavg()[0]
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def minatar(args: argparse.Namespace, results: dict, root: Path) -> None:
    """(b) and its variants, timed in turn (round-robin) so machine noise hits all alike."""
    write_store(root, "minatar", MINATAR_GAMES, (10, 10, 10), 1, args.frames)
    names = ["preset", *[v for v in args.minatar_variants.split(",") if v]]
    unknown = [v for v in names[1:] if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    learners = {n: make_learner(root, MINATAR if n == "preset" else
                                replace(MINATAR, **VARIANTS[n]), MINATAR_GAMES, (10, 10, 10))
                for n in names}
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for _ in range(args.repeats):
        for n, (agent, sampler) in learners.items():
            runs[n].append(time_training(agent, sampler, max(1, args.steps // 3),
                                         args.warmup // 3 + 1))
    agent = learners["preset"][0]
    results["b_minatar_default"] = {**best(runs["preset"]), "config": MINATAR.to_dict(),
                                    "n_step": N_STEP, "games": MINATAR_GAMES,
                                    "params": agent.param_counts()}
    results["b_minatar_variants"] = {n: {**best(runs[n]), "options": VARIANTS[n],
                                         "bf16_active": learners[n][0]._bf16}
                                     for n in names[1:]}


def value_targets(args: argparse.Namespace, results: dict, atari_root: Path,
                  minatar_root: Path) -> None:
    """(a) in float32 and (b), each with every value target of ``--value-targets``, timed in
    turn (round-robin over targets, ``--repeats`` rounds) so machine noise hits all alike."""
    names = list(dict.fromkeys(["c51", *(t for t in args.value_targets.split(",") if t)]))
    unknown = [t for t in names if t not in value_target_names()]
    if unknown:
        raise SystemExit(f"unknown value targets {unknown}; choose from "
                         f"{', '.join(value_target_names())}")
    setups = {"atari": (atari_root, ATARI, ATARI_GAMES, (4, 84, 84), (1, 84, 84), 4, "atari"),
              "minatar": (minatar_root, MINATAR, MINATAR_GAMES, (10, 10, 10), (10, 10, 10), 1,
                          "minatar")}
    out: dict[str, dict] = {}
    for setup, (root, cfg, games, obs_shape, frame_shape, stack, suite) in setups.items():
        if not root.exists():
            write_store(root, suite, games, frame_shape, stack, args.frames)
        learners = {t: make_learner(root, replace(cfg, loss=t), games, obs_shape) for t in names}
        runs: dict[str, list[dict]] = {t: [] for t in names}
        for _ in range(args.repeats):
            for t, (agent, sampler) in learners.items():
                runs[t].append(time_training(agent, sampler, max(1, args.steps // 3),
                                             args.warmup // 3 + 1))
        out[setup] = {t: {**best(runs[t]), "bf16_active": learners[t][0]._bf16,
                          "params": learners[t][0].param_counts()["total"]} for t in names}
    out["loss_ms"] = loss_alone(names, MINATAR.batch_size, max(MINATAR_GAMES.values()),
                                args.repeats)
    results["value_targets"] = out


def loss_alone(names: list[str], batch_size: int, actions: int, repeats: int,
               calls: int = 200) -> dict[str, float]:
    """Milliseconds of ``scaled_ql_loss`` + its backward alone (no network: fixed random
    outputs of the MinAtar preset's shape), median of ``repeats`` round-robin rounds: what
    each target itself costs, which whole steps on a loaded machine blur."""
    g = torch.Generator().manual_seed(0)
    batch = TransitionBatch(obs=torch.zeros(batch_size, 1),
                            action=torch.randint(0, actions, (batch_size,), generator=g),
                            reward=torch.rand(batch_size, generator=g) * 2 - 1,
                            discount=torch.full((batch_size,), MINATAR.gamma ** N_STEP),
                            done=(torch.rand(batch_size, generator=g) < 0.1).float(),
                            next_obs=torch.zeros(batch_size, 1),
                            game_id=torch.zeros(batch_size, dtype=torch.int64))
    mask = torch.ones(batch_size, actions, dtype=torch.bool)
    cases = {}
    for t in names:
        cfg = replace(MINATAR, loss=t)
        n = value_target_class(t).outputs_per_action(cfg)
        shape = (batch_size, actions) if n is None else (batch_size, actions, n)
        cases[t] = cfg, [NetworkOutput(torch.randn(shape, generator=g), mask,
                                       torch.ones(batch_size)) for _ in range(3)]
    times: dict[str, list[float]] = {t: [] for t in names}
    for _ in range(repeats):
        for t, (cfg, (online, target, next_online)) in cases.items():
            online = online._replace(values=online.values.clone().requires_grad_(True))
            start = time.perf_counter()
            for _ in range(calls):
                scaled_ql_loss(online, target, next_online, batch, cfg, 1)[0].backward()
            times[t].append((time.perf_counter() - start) / calls * 1e3)
    return {t: statistics.median(v) for t, v in times.items()}


def atari(args: argparse.Namespace, results: dict, atari_root: Path) -> None:
    """(a): the Atari Nature CNN in float32 and bf16, alternating with d3rlpy."""
    write_store(atari_root, "atari", ATARI_GAMES, (1, 84, 84), 4, args.frames)
    agent, sampler = make_learner(atari_root, ATARI, ATARI_GAMES, (4, 84, 84))
    agent16, sampler16 = make_learner(atari_root, ATARI_BF16, ATARI_GAMES, (4, 84, 84))
    ours, ours16, theirs = [], [], []
    for _ in range(args.repeats):
        ours.append(time_training(agent, sampler, args.steps, args.warmup))
        if agent16._bf16:  # only where bf16 is native; emulated bf16 is no measurement
            ours16.append(time_training(agent16, sampler16, args.steps, args.warmup))
        if not args.skip_d3rlpy:
            theirs.append(run_d3rlpy(args.d3rlpy_python, ATARI.batch_size, args.steps,
                                     args.warmup, args.frames, torch.get_num_threads()))
    flops = flops_per_update(agent, sampler)
    a = best(ours)
    results["a_atari_nature_b32"] = {
        **a, "config": ATARI.to_dict(), "n_step": N_STEP, "params": agent.param_counts(),
        "flops_per_update": flops, "achieved_flops": flops * a["steps_per_s"],
    }
    if ours16:
        b16 = best(ours16)
        results["a_atari_nature_b32_bf16"] = {**b16, "config": ATARI_BF16.to_dict(),
                                              "achieved_flops": flops * b16["steps_per_s"]}
    if theirs:
        results["d3rlpy_discrete_cql"] = best(theirs)


def paired_ratio(runs: dict[str, dict], name: str, base: str = "c51") -> float:
    """Median over rounds of ``name``'s steps/s divided by ``base``'s in the same round."""
    return statistics.median(x / y for x, y in zip(runs[name]["all_steps_per_s"],
                                                    runs[base]["all_steps_per_s"], strict=True))


def report(r: dict) -> str:
    lines = [
        f"torch {r['machine']['torch']}, {r['machine']['threads']} threads, "
        f"load avg {r['machine']['load_avg_1min_at_start']:.2f} → {r['machine']['load_avg_1min_at_end']:.2f}",
    ]
    a = r.get("a_atari_nature_b32")
    if a or r.get("b_minatar_default"):
        lines += ["", "| run | steps/s | samples/s | runs (steps/s) |", "|---|---|---|---|"]
    if a:
        lines.append(f"| (a) scaledql Nature CNN, C51+CQL, 84×84×4, batch 32 | "
                     f"{a['steps_per_s']:.1f} | {a['samples_per_s']:.0f} | {a['all_steps_per_s']} |")
    a16 = r.get("a_atari_nature_b32_bf16")
    if a16:
        lines.append(f"| (a) same, bf16 autocast | {a16['steps_per_s']:.1f} | "
                     f"{a16['samples_per_s']:.0f} | {a16['all_steps_per_s']} |")
    d = r.get("d3rlpy_discrete_cql")
    if d:
        lines.append(f"| d3rlpy {d['d3rlpy']} DiscreteCQL, default pixel encoder, same frames/batch | "
                     f"{d['steps_per_s']:.1f} | {d['samples_per_s']:.0f} | {d['all_steps_per_s']} |")
    b = r.get("b_minatar_default")
    if b:
        cfg = b["config"]
        lines.append(f"| (b) scaledql MinAtar default ({cfg['encoder']} ×{cfg['width']}, 5 games, "
                     f"batch {cfg['batch_size']}) | {b['steps_per_s']:.1f} | {b['samples_per_s']:.0f} | "
                     f"{b['all_steps_per_s']} |")
        for name, v in r.get("b_minatar_variants", {}).items():
            lines.append(f"| (b) variant {name} ({v['options']}, bf16 active: "
                         f"{v['bf16_active']}) | {v['steps_per_s']:.1f} | {v['samples_per_s']:.0f} "
                         f"({v['samples_per_s'] / b['samples_per_s']:.2f}× the preset) | "
                         f"{v['all_steps_per_s']} |")
    targets = r.get("value_targets")
    if targets:
        lines += ["", "Value targets: fastest (median) steps/s of the rounds; vs C51: the median over "
                  "rounds of the target's steps/s over C51's in the same round (round-robin, so "
                  "a round's runs share the machine's load):", "",
                  "| value target | (a) Nature CNN, batch 32, float32 | vs C51 | (b) MinAtar preset "
                  "| vs C51 | loss + backward alone (b's shapes) | runs (a); runs (b) |",
                  "|---|---|---|---|---|---|---|"]
        at, mi, ms = targets["atari"], targets["minatar"], targets["loss_ms"]
        for t in at:
            lines.append(
                f"| {t} | {at[t]['steps_per_s']:.1f} ({at[t]['median_steps_per_s']:.1f}) | "
                f"{paired_ratio(at, t):.2f}× | "
                f"{mi[t]['steps_per_s']:.1f} ({mi[t]['median_steps_per_s']:.1f}) | "
                f"{paired_ratio(mi, t):.2f}× | "
                f"{ms[t]:.2f} ms | {at[t]['all_steps_per_s']}; {mi[t]['all_steps_per_s']} |")
    if not a:
        return "\n".join(lines)
    lines += ["", f"(a) FLOPs per update: {a['flops_per_update'] / 1e9:.2f} GFLOP; achieved "
              f"{a['achieved_flops'] / 1e9:.1f} GFLOP/s vs float32 matmul "
              f"{r['matmul_flops'] / 1e9:.1f} GFLOP/s ({100 * a['achieved_flops'] / r['matmul_flops']:.0f}%)"]
    if d:
        lines.append(f"(a) / d3rlpy: {a['steps_per_s'] / d['steps_per_s']:.2f}× (float32)")
        if a16:
            lines.append(f"(a, bf16) / d3rlpy: {a16['steps_per_s'] / d['steps_per_s']:.2f}×")
    if b:
        lines.append(f"(b) parameters: {b['params']['total']:,}")
    lines.append(f"(a) parameters: {a['params']['total']:,}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
