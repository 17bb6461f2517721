"""Where the demo's CPU time goes on the float32 path, at small scale (issue 37).

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/demo_profile.py

Each case is one ``scaledql`` command in a subprocess of its own (its thread count, oneDNN
switch and environment clean), as the demo runs it:

- ``train``: the demo's learners (the MinAtar preset: Scaled QL, BC at 20k steps, DT at 5k) on a
  synthetic five-game store, float32 (``learner.bf16=false``: what a CPU without native bf16
  runs), gradient steps/s read from the run's own ``train`` rows (the median of the windows
  after the first); variants: NCHW instead of channels-last, oneDNN off, two threads;
- ``pair``: Scaled QL and BC side by side, one thread each (the demo's placement), against each
  alone;
- ``collect``: the demo's online DQN collection of one game (8 environments), steps/s alone
  and two games side by side (``--jobs 2``, one thread each).

``--op-profile`` instead prints where one float32 Scaled QL update spends its time, op by op.

Prints one JSON line per case and a table. Not a test. ``--steps`` sets the gradient steps per
case (default 300), ``--collect-steps`` the environment steps (default 3000).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import MINATAR, MINATAR_GAMES, make_learner, write_store

RUNNER = """
import sys, torch
threads, mkldnn = int(sys.argv[1]), sys.argv[2] == "on"
torch.set_num_threads(threads)
torch.backends.mkldnn.enabled = mkldnn
from scaledql.cli import main
sys.exit(main(sys.argv[3:]))
"""
FP32 = ["--set", "learner.bf16=false"]
CASES = {  # name → (algo, extra train arguments, threads, oneDNN)
    "sql": ("scaled-ql", FP32, 1, True),
    "sql-nchw": ("scaled-ql", [*FP32, "--set", "learner.channels_last=false"], 1, True),
    "sql-no-onednn": ("scaled-ql", FP32, 1, False),
    "sql-2-threads": ("scaled-ql", FP32, 2, True),
    "bc": ("bc", FP32, 1, True),
    "bc-nchw": ("bc", [*FP32, "--set", "learner.channels_last=false"], 1, True),
    "dt": ("dt", FP32, 1, True),
}


def _command(threads: int, mkldnn: bool, argv: list[str]) -> tuple[list[str], dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    return ([sys.executable, "-c", RUNNER, str(threads), "on" if mkldnn else "off", *argv], env)


def _train_argv(data: Path, out: Path, algo: str, extra: list[str], steps: int) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--algo", algo, "--config",
            "minatar", "--steps", str(steps), "--log-every", "50", "--eval-every", "0",
            "--eval-episodes", "1", "--no-progress", "--device", "cpu", *extra]


def _rate(out: Path) -> float:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [r["steps_per_second"] for r in rows if "steps_per_second" in r]
    return statistics.median(rates[1:] or rates)


def train_cases(data: Path, tmp: Path, names: list[str], steps: int, rounds: int
                ) -> dict[str, float]:
    """Each case ``rounds`` times, the cases alternating (a shared machine's load drifts); the
    best of each (load only ever slows a run down)."""
    rates: dict[str, float] = {}
    for r in range(rounds):
        for name in names:
            algo, extra, threads, mkldnn = CASES[name]
            out = tmp / f"run-{name}-{r}"
            cmd, env = _command(threads, mkldnn, _train_argv(data, out, algo, extra, steps))
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            rate = _rate(out)
            rates[name] = max(rates.get(name, 0.0), rate)
            print(json.dumps({"case": name, "round": r, "steps_per_s": round(rate, 2),
                              "load": round(os.getloadavg()[0], 2)}), flush=True)
    return rates


def pair(data: Path, tmp: Path, steps: int) -> dict[str, float]:
    """Scaled QL and BC side by side, one thread each."""
    procs, outs = [], {}
    for algo in ("scaled-ql", "bc"):
        outs[algo] = tmp / f"pair-{algo}"
        cmd, env = _command(1, True, _train_argv(data, outs[algo], algo, FP32, steps))
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    for p in procs:
        assert p.wait() == 0
    rates = {f"pair-{algo}": _rate(out) for algo, out in outs.items()}
    print(json.dumps({"case": "pair", **{k: round(v, 2) for k, v in rates.items()}}), flush=True)
    return rates


def collect(tmp: Path, steps: int) -> dict[str, float]:
    """The demo's collection settings (8 environments, the DQN's defaults), one game alone on
    one thread and two side by side."""
    rates = {}
    for name, games, jobs in (("collect-1-game", "breakout", 1),
                              ("collect-2-games-jobs-2", "breakout,asterix", 2)):
        argv = ["collect", "--suite", "minatar", "--games", games, "--steps", str(steps),
                "--num-envs", "8", "--out", str(tmp / name), "--jobs", str(jobs), "--json",
                "--no-progress", "--device", "cpu", "--dqn-learning-starts", "500"]
        cmd, env = _command(1, True, argv)
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        per_game = [r["steps_per_second"] for r in json.loads(done.stdout)]
        rates[name] = statistics.mean(per_game)
        print(json.dumps({"case": name, "steps_per_s_per_game": [round(r) for r in per_game],
                          "wall_s": round(wall, 1)}), flush=True)
    return rates


def op_profile(data: Path, steps: int, top: int = 18) -> None:
    """Where one float32 Scaled QL update spends its time, op by op (torch.profiler, one
    thread, the demo's preset with ``bf16=False``), and the sampler's share of a step."""
    import torch

    torch.set_num_threads(1)
    agent, sampler = make_learner(data, replace(MINATAR, bf16=False), MINATAR_GAMES, (10, 10, 10))
    batch = sampler.empty_batch()
    for _ in range(20):
        agent.update(sampler.sample(out=batch))
    start = time.perf_counter()
    for _ in range(steps):
        sampler.sample(out=batch)
    sample_s = (time.perf_counter() - start) / steps
    start = time.perf_counter()
    for _ in range(steps):
        agent.update(batch)
    update_s = (time.perf_counter() - start) / steps
    print(json.dumps({"case": "op-profile", "sample_ms": round(1e3 * sample_s, 2),
                      "update_ms": round(1e3 * update_s, 2)}), flush=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            agent.update(batch)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--collect-steps", type=int, default=3000)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds of the cases")
    ap.add_argument("--skip-pair", action="store_true")
    ap.add_argument("--skip-collect", action="store_true")
    ap.add_argument("--op-profile", action="store_true",
                    help="only the op-by-op profile of the float32 Scaled QL update")
    args = ap.parse_args()
    print(json.dumps({"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                      "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
                      "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                      "load_at_start": os.getloadavg()[0]}), flush=True)
    with tempfile.TemporaryDirectory(prefix="scaledql-demo-profile-") as tmp:
        data = Path(tmp) / "data"
        write_store(data, "minatar", MINATAR_GAMES, (10, 10, 10), 1, 20_000)
        if args.op_profile:
            op_profile(data, args.steps)
            return
        rates = train_cases(data, Path(tmp), args.cases.split(","), args.steps, args.rounds)
        if not args.skip_pair:
            rates.update(pair(data, Path(tmp), args.steps))
        if not args.skip_collect:
            rates.update(collect(Path(tmp), args.collect_steps))
    print(json.dumps({"load_at_end": os.getloadavg()[0]}))
    for name, rate in rates.items():
        print(f"{name:<24} {rate:10.2f} steps/s")


if __name__ == "__main__":
    main()
