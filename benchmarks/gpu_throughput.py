"""Update throughput of the Scaled QL learner per encoder, against the machine's own matmul rate.

For the Nature CNN, IMPALA and ResNet-34/50/101 (authors' layout, 84×84×4 Atari frames, one
game of 18 actions, C51 + CQL) at batch 512: ms per ``update`` (forward, loss, backward, Adam
step; the batch already on the device, so the sampler is not measured), samples/s, FLOPs of one
update counted with ``torch.utils.flop_counter.FlopCounterMode`` (float32, uncompiled: the
operations the update asks for), the achieved TFLOP/s and its share of a matrix-product rate
measured in the same run on the same device (bf16 on CUDA; on a CPU the products of the
row's own precision, float32 or bf16). Precision modes: ``fp32``, ``bf16`` (autocast), ``bf16+compile``
(CUDA; on a CPU only with ``--modes``), each with and without ``channels_last`` when asked.

    python benchmarks/gpu_throughput.py                          # CUDA: the issue's table
    python benchmarks/gpu_throughput.py --batch 32 --encoders nature,impala,resnet34 --steps 5
    python benchmarks/gpu_throughput.py --json out.json          # every number, machine-readable

Results and the commands that made them: benchmarks/README.md ("GPU update throughput").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from scaledql.agents.base import Problem
from scaledql.agents.scaled_ql import ScaledQL, ScaledQLConfig
from scaledql.data.sampling.sampler import TransitionBatch
from scaledql.device import describe_machine, pick_device

OBS = (4, 84, 84)
ACTIONS = 18
ENCODERS = ("nature", "impala", "resnet34", "resnet50", "resnet101")


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int, seconds: float) -> float:
    """Dense n×n matrix products per second × 2n³ FLOPs: the device's practical peak."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
        if count % 10 == 0:
            sync(device)
    sync(device)
    return 2 * n ** 3 * count / (time.perf_counter() - start) / 1e12


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synthetic_batch(batch: int, device: torch.device, seed: int = 0) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (batch, *OBS), dtype=np.uint8)
    return TransitionBatch(
        obs=torch.from_numpy(frames).to(device),
        action=torch.from_numpy(rng.integers(0, ACTIONS, batch)).to(device),
        reward=torch.from_numpy(rng.standard_normal(batch).astype(np.float32)).to(device),
        discount=torch.full((batch,), 0.99, device=device),
        done=torch.zeros(batch, device=device),
        next_obs=torch.from_numpy(np.roll(frames, 1, axis=0)).to(device),
        game_id=torch.zeros(batch, dtype=torch.int64, device=device))


def config_for(encoder: str, batch: int, mode: str, channels_last: bool) -> ScaledQLConfig:
    return ScaledQLConfig(encoder=encoder, width=1.0, batch_size=batch,
                          bf16="bf16" in mode, compile="compile" in mode,
                          channels_last=channels_last)


def update_flops(encoder: str, batch: int, device: torch.device) -> int:
    learner = ScaledQL(config_for(encoder, batch, "fp32", False),
                       Problem(OBS, (ACTIONS,), ("game",), 1), device)
    data = synthetic_batch(batch, device)
    learner.update(data)  # the first update may build lazily; count a steady one
    with FlopCounterMode(display=False) as counter:
        learner.update(data)
    return int(counter.get_total_flops())


def time_updates(encoder: str, batch: int, mode: str, channels_last: bool,
                 device: torch.device, steps: int, warmup: int) -> dict:
    cfg = config_for(encoder, batch, mode, channels_last)
    learner = ScaledQL(cfg, Problem(OBS, (ACTIONS,), ("game",), 1), device)
    data = synthetic_batch(batch, device)
    start = time.perf_counter()
    for _ in range(warmup):  # compilation and autotuning happen here
        learner.update(data)["loss"].item()
    warm = time.perf_counter() - start
    times = []
    for _ in range(steps):
        sync(device)
        t = time.perf_counter()
        learner.update(data)
        sync(device)
        times.append(time.perf_counter() - t)
    ms = 1000 * statistics.median(times)
    return {"encoder": encoder, "mode": mode, "channels_last": channels_last, "batch": batch,
            "ms_per_update": ms, "samples_per_s": batch / (ms / 1000),
            "warmup_seconds": warm, "params": learner.param_counts()["total"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoders", default=",".join(ENCODERS))
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--modes", default=None,
                   help="comma list of fp32, bf16, bf16+compile (default: all three on CUDA, "
                        "fp32 on a CPU)")
    p.add_argument("--channels-last", choices=["off", "on", "both"], default="off")
    p.add_argument("--steps", type=int, default=20, help="timed updates (median reported)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--matmul-n", type=int, default=8192)
    p.add_argument("--matmul-seconds", type=float, default=3.0)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None, help="also write every number to this file")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    modes = (args.modes or ("fp32,bf16,bf16+compile" if cuda else "fp32")).split(",")
    layouts = {"off": [False], "on": [True], "both": [False, True]}[args.channels_last]
    # The reference rate: bf16 matrix products on CUDA (the yardstick for every mode);
    # on a CPU the products of the mode's own precision (float32, and bf16 where asked).
    n = args.matmul_n if cuda else min(args.matmul_n, 2048)
    dtypes = {"bf16": torch.bfloat16} if cuda else {
        "fp32": torch.float32, **({"bf16": torch.bfloat16} if any("bf16" in m for m in modes)
                                  else {})}
    peaks = {name: matmul_tflops(device, dtype, n, args.matmul_seconds)
             for name, dtype in dtypes.items()}
    print(f"# {describe_machine(str(device))}; matmul {n}x{n}: "
          + ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in peaks.items()), flush=True)
    print("| encoder | params | mode | NHWC | ms / update | samples/s | GFLOP / update | "
          "TFLOP/s | share of matmul rate |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for encoder in args.encoders.split(","):
        flops = update_flops(encoder, args.batch, device)
        for mode in modes:
            for channels_last in layouts:
                row = time_updates(encoder, args.batch, mode, channels_last, device, args.steps,
                                   args.warmup)
                row["gflop_per_update"] = flops / 1e9
                row["tflops"] = flops / (row["ms_per_update"] / 1000) / 1e12
                peak = peaks["bf16"] if cuda or "bf16" in mode else peaks["fp32"]
                row["share_of_matmul"] = row["tflops"] / peak
                rows.append(row)
                print(f"| {encoder} | {row['params']:,} | {mode} | {'yes' if channels_last else 'no'}"
                      f" | {row['ms_per_update']:.1f} | {row['samples_per_s']:,.0f} | "
                      f"{row['gflop_per_update']:.1f} | {row['tflops']:.2f} | "
                      f"{100 * row['share_of_matmul']:.1f}% |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": describe_machine(str(device)), "matmul_n": n,
                       "matmul_tflops": peaks, "command": " ".join(sys.argv), "rows": rows}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
