"""Offline multi-game training: sample → update → log → checkpoint → evaluate, in one loop.

The loop knows datasets (through the sampler) and agents (through ``update``), nothing of any
game: evaluation is a callback the caller may give (the CLI passes one that plays the suite).
Runs are resumable bit-for-bit on CPU: a checkpoint holds the agent (online, target, optimizer,
step), the sampler's RNG state and the torch/numpy/python RNG states.

Scale-out: under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) each process draws its own
``batch_size / world_size`` samples from the shared memory-mapped store with its own seed, the
online network is wrapped in DistributedDataParallel (gloo on CPU, NCCL on CUDA) and gradients
are averaged, which equals one step on the union batch. Rank 0 alone logs, checkpoints and
evaluates.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from scaledql.agents.scaled_ql import AgentConfig, ScaledQLAgent
from scaledql.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from scaledql.data.sampler import TransitionSampler
from scaledql.data.store import open_dataset
from scaledql.device import pick_device
from scaledql.errors import UserError


@dataclass
class TrainConfig:
    """One offline training run (saved as ``RUN/config.json``)."""

    data: str
    out: str
    games: list[str] | None = None  # default: every game in the dataset
    steps: int = 20_000  # gradient steps
    n_step: int = 3
    reward_clip: float | None = 1.0  # clip each reward to [-c, c] for learning (DQN convention)
    seed: int = 0
    log_every: int = 100
    checkpoint_every: int = 1_000
    eval_every: int = 0  # 0: evaluate only at the end
    eval_episodes: int = 10
    eval_epsilon: float = 0.001
    device: str = "auto"
    agent: AgentConfig = field(default_factory=AgentConfig)

    def validate(self) -> TrainConfig:
        self.agent.validate()
        for name in ("steps", "n_step", "log_every", "checkpoint_every", "eval_episodes"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.eval_every < 0:
            raise UserError(f"eval-every must be >= 0, got {self.eval_every}")
        if self.reward_clip is not None and self.reward_clip <= 0:
            raise UserError(f"reward-clip must be positive, got {self.reward_clip}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        agent = AgentConfig(**d.pop("agent", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(agent=agent, **d)


def load_preset(path: Path) -> dict[str, Any]:
    """A TOML preset → a dict for ``TrainConfig.from_dict`` (``[agent]`` table = AgentConfig)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None


PRESETS_DIR = Path(__file__).parent / "configs"


def preset_path(name: str) -> Path:
    """``minatar``/``atari`` → the packaged preset; anything else is a path."""
    packaged = PRESETS_DIR / f"{name}.toml"
    return packaged if packaged.is_file() else Path(name)


# -- distributed -----------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group when launched by torchrun; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), pick_device(device_name)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend=backend)
    return Dist(rank, world, local), device


# -- logging -----------------------------------------------------------------------------------
class MetricsLog:
    """JSONL + CSV + TensorBoard, all from one ``write`` (rank 0 only)."""

    def __init__(self, run: Path, enabled: bool, resume_step: int = 0):
        self.enabled = enabled
        self.jsonl = run / "metrics.jsonl"
        self.csv = run / "metrics.csv"
        self.tb = None
        if not enabled:
            return
        if resume_step == 0:
            for p in (self.jsonl, self.csv):
                p.unlink(missing_ok=True)
        else:  # drop rows logged after the checkpoint we resume from: they will be redone
            self._truncate_after(resume_step)
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(run / "tensorboard"), purge_step=resume_step or None)

    def _truncate_after(self, step: int) -> None:
        if not self.jsonl.exists():
            return
        rows = [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r.get("step", 0) <= step]
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self.csv.unlink(missing_ok=True)
        for r in rows:
            self._write_csv(r)

    def _write_csv(self, row: dict) -> None:
        keys = sorted(row)
        exists = self.csv.exists()
        if exists:
            with open(self.csv) as f:
                header = f.readline().strip().split(",")
            keys = header + sorted(set(row) - set(header))
        with open(self.csv, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            if not exists:
                writer.writeheader()
            writer.writerow(row)

    def write(self, row: dict, prefix: str = "train") -> None:
        if not self.enabled:
            return
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        self._write_csv(row)
        step = int(row["step"])
        for k, v in row.items():
            if k != "step" and isinstance(v, int | float) and math.isfinite(v):
                self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# -- RNG state -------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Global RNG states in plain types (checkpoints load with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# -- the loop --------------------------------------------------------------------------------------
class NonFiniteLoss(UserError):
    pass


EvalFn = Callable[[ScaledQLAgent, list[str], int], dict]


def train(cfg: TrainConfig, resume: bool = False, evaluate_fn: EvalFn | None = None,
          progress: bool = True, stop_after: int | None = None) -> dict:
    """Run (or resume) training; returns a summary dict. ``stop_after``: stop (with a checkpoint)
    after that many steps in this call, as a kill would — used to test resumption."""
    cfg.validate()
    dist, device = init_distributed(cfg.device)
    run = Path(cfg.out)
    ckpt_file = run / FILENAME
    payload = None
    if resume:
        if not ckpt_file.exists():
            raise UserError(f"--resume: no checkpoint in {run}")
        payload = load_checkpoint(ckpt_file, "cpu")
        saved = TrainConfig.from_dict(payload["train_config"])
        if _comparable(saved) != _comparable(cfg):
            diff = sorted(k for k, v in _comparable(cfg).items() if _comparable(saved).get(k) != v)
            raise UserError(f"--resume: options differ from the run's config ({', '.join(diff)})")
    elif ckpt_file.exists():
        raise UserError(f"{run} already holds a run; pass --resume to continue it or choose "
                        "another --out")

    dataset = open_dataset(Path(cfg.data), cfg.games)
    games = list(cfg.games or dataset.games)
    data = [dataset.game(g) for g in games]
    suite = data[0].suite
    if any(d.suite != suite for d in data):
        raise UserError(f"{cfg.data}: games from different suites cannot share a network")
    obs_shape, num_actions = data[0].obs_shape, [d.num_actions for d in data]
    if cfg.agent.batch_size % dist.world_size:
        raise UserError(f"batch size {cfg.agent.batch_size} is not divisible by the "
                        f"{dist.world_size} processes")

    seed_everything(cfg.seed)
    agent = ScaledQLAgent(cfg.agent, obs_shape, num_actions, device,
                          distributed=dist.world_size > 1)
    sampler = TransitionSampler(
        dataset, games, batch_size=cfg.agent.batch_size // dist.world_size, n_step=cfg.n_step,
        gamma=cfg.agent.gamma, reward_clip=cfg.reward_clip, seed=cfg.seed * 1009 + dist.rank)
    if payload is not None:
        agent.load_state_dict(payload["agent"])
        sampler.load_state_dict(payload["samplers"][dist.rank])
        set_rng_state(payload["rng"])
    start = agent.step
    counts = agent.param_counts()
    if dist.is_main:
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        (run / "params.json").write_text(json.dumps(counts, indent=2))
        print(f"[train] {len(games)} games, obs {obs_shape}, encoder {cfg.agent.encoder} "
              f"×{cfg.agent.width}: {counts['total']:,} parameters (encoder "
              f"{counts['encoder']:,}, heads {counts['heads']:,}); device {device}; "
              f"{dist.world_size} process(es)", file=sys.stderr)
    log = MetricsLog(run, dist.is_main, start)
    meta = {"suite": suite, "games": games, "num_actions": num_actions,
            "obs_shape": list(obs_shape), "env_options": env_options_of(data[0])}

    def save() -> None:
        samplers = _gather_sampler_states(sampler, dist)
        if dist.is_main:
            save_checkpoint({"step": agent.step, **meta, "agent_config": cfg.agent.to_dict(),
                             "agent": agent.state_dict(), "train_config": cfg.to_dict(),
                             "samplers": samplers, "rng": rng_state(),
                             "param_counts": counts}, ckpt_file)

    def run_eval() -> None:
        if evaluate_fn is None or not dist.is_main:
            return
        result = evaluate_fn(agent, games, agent.step)
        log.write({"step": agent.step, **result}, prefix="eval")

    interrupted = False

    def on_signal(signum, frame):  # Ctrl-C or a scheduler's SIGTERM: save and leave
        raise KeyboardInterrupt

    # Installed explicitly: a process started in the background of a non-interactive shell
    # inherits SIGINT as *ignored*, and Python then never raises KeyboardInterrupt.
    old_handlers = ({sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
                    if dist.is_main else {})
    bar = tqdm(total=cfg.steps, initial=start, desc="train", unit="step", dynamic_ncols=True,
               disable=not (progress and dist.is_main), file=sys.stderr)
    batch_buffer = sampler.empty_batch()
    window: dict[str, float] = {}
    window_steps, t0 = 0, time.perf_counter()
    try:
        while agent.step < cfg.steps:
            if stop_after is not None and agent.step - start >= stop_after:
                break
            batch = sampler.sample(out=batch_buffer)  # refill one batch: no page faults
            metrics = agent.update(batch)
            if not math.isfinite(metrics["loss"]):
                raise NonFiniteLoss(
                    f"loss became {metrics['loss']} at step {agent.step}; stopped. The last good "
                    f"checkpoint ({ckpt_file}) is kept: try a lower --lr or --cql-alpha")
            for k, v in metrics.items():
                window[k] = window.get(k, 0.0) + v
            window_steps += 1
            bar.update(1)
            if agent.step % cfg.log_every == 0:
                seconds = time.perf_counter() - t0
                row = {"step": agent.step, **{k: v / window_steps for k, v in window.items()},
                       "steps_per_second": window_steps / seconds,
                       "samples_per_second": window_steps * cfg.agent.batch_size / seconds}
                log.write(row)
                bar.set_postfix(loss=f"{row['loss']:.3f}", q=f"{row['mean_q']:.2f}",
                                sps=f"{row['steps_per_second']:.1f}", refresh=False)
                window, window_steps, t0 = {}, 0, time.perf_counter()
            if agent.step % cfg.checkpoint_every == 0:
                save()
            if cfg.eval_every and agent.step % cfg.eval_every == 0 and agent.step < cfg.steps:
                run_eval()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    if interrupted or (stop_after is not None and agent.step < cfg.steps):
        save()
        log.close()
        if interrupted:
            print(f"[train] interrupted at step {agent.step}; checkpoint saved to {ckpt_file}; "
                  "continue with --resume", file=sys.stderr)
        return {"step": agent.step, "interrupted": interrupted, "run": str(run)}
    save()
    run_eval()
    log.close()
    if dist.world_size > 1:
        torch.distributed.destroy_process_group()
    return {"step": agent.step, "interrupted": False, "run": str(run), "games": games,
            "param_counts": counts, "rank": dist.rank}


def _comparable(cfg: TrainConfig) -> dict[str, Any]:
    """Options that must match to resume a run (run length and cadences may change)."""
    d = cfg.to_dict()
    for k in ("steps", "log_every", "checkpoint_every", "eval_every", "eval_episodes", "device"):
        d.pop(k)
    flat = {k: v for k, v in d.items() if k != "agent"}
    flat.update({f"agent.{k}": v for k, v in d["agent"].items()})
    return flat


def env_options_of(game_data) -> dict:
    """The game options the data was collected with (so evaluation plays the same game)."""
    options = (game_data.manifest.get("provenance") or {}).get("env_options") or {}
    return {k: v for k, v in options.items() if k in
            ("sticky", "max_episode_steps", "full_action_space", "mode", "difficulty")}


def _gather_sampler_states(sampler: TransitionSampler, dist: Dist) -> list[dict]:
    if dist.world_size == 1:
        return [sampler.state_dict()]
    states: list[Any] = [None] * dist.world_size
    torch.distributed.all_gather_object(states, sampler.state_dict())
    return states
