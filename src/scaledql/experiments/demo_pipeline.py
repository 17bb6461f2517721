"""The main job on the embedded default: the whole Scaled QL pipeline on the five MinAtar games.

1. **Data** — DQN-Replay-style behaviour data: per game an online DQN trained from scratch, every
   transition it sees logged, exploration included (``collect``). Kept in ``OUT/data`` and reused.
2. **Learners** — one multi-game Scaled QL agent trained offline on all games (``train``), and
   the baselines the paper compares against on the same data: the multi-game Decision
   Transformer and behaviour cloning (``baselines``), each from the MinAtar preset.
3. **Evaluation** — every learner in the real games under the same protocol; the behaviour
   policy as the score of the dataset's episodes (the paper's "behaviour policy" bar) and, for
   context, the last DQN snapshot of each game's collection run.
4. **Report** — ``OUT/report.md`` with PNG plots (``report``).

``quick=True`` runs the same pipeline tiny (for tests and smoke checks).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.agents.dqn import DQNConfig
from scaledql.agents.registry import learner_class
from scaledql.collect import CollectConfig, collect
from scaledql.data.store.dataset import open_dataset
from scaledql.data.store.game import behaviour_score
from scaledql.device import describe_machine
from scaledql.errors import UserError
from scaledql.evaluate import EvalConfig, EvalReport, evaluate, policy_evaluator, write_json
from scaledql.run_folder import checkpoint_file, latest_evaluation
from scaledql.suites import EnvOptions, get_suite
from scaledql.training.config import RunConfig, merge, preset_path, read_toml
from scaledql.training.offline_loop import train
from scaledql.training.online_loop import OnlineSchedule


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    seed: int = 0
    quick: bool = False
    full: bool = False  # the earlier demo's size (``full_config``), named in the report
    # Per game an online DQN's first 21k steps, ε reaching 0.05 halfway (``schedule``); 8
    # environments × 2,625 steps, so that even freeway (2,501-step episodes) ends 8 episodes, the
    # behaviour score's rows. Sized for 20 minutes on a 2-core CPU without native bf16
    # (benchmarks/README.md); ``full_config`` is the earlier demo at 50k.
    collect_steps: int = 21_000
    # 10.2 passes over each game's transitions at batch 128 (offline Q-learning needs tens of
    # passes; docs/diagnostics.md, results/tuning-minatar-cpu/)
    train_steps: int = 8_400
    # Baselines on the same data: learner → gradient steps (their steps cost differently; the
    # report states steps and passes next to each score). BC gets Scaled QL's passes, DT 2.56
    # (its tuned budget).
    baselines: dict[str, int] = field(default_factory=lambda: {"dt": 2_100, "bc": 8_400})
    # two evaluations: an early policy can play long episodes (seaquest: 3,800 steps each at
    # step 2,800, 1:50 of an evaluation on a float32 CPU)
    eval_every: int = 4_200
    collect_jobs: int = 2  # games collected side by side (one torch thread each)
    eval_episodes: int = 30
    max_episode_steps: int | None = None  # None: the suite's cap
    device: str = "auto"
    progress: bool = True
    dqn: DQNConfig = field(default_factory=DQNConfig)
    schedule: OnlineSchedule = field(default_factory=lambda: OnlineSchedule(
        epsilon_decay_steps=10_500))

    @classmethod
    def full_config(cls, out: Path, seed: int = 0, device: str = "auto",
                    progress: bool = True) -> DemoConfig:
        """The demo before issue 37, at 2.4× the data: 50k transitions a game (ε reaching 0.05
        at 25k), 20k Scaled QL and BC steps (10.2 passes), DT 5k. 9.2 min on a Zen 5 with
        native bf16, 37 on an AVX2 CPU without it."""
        return cls(out=out, seed=seed, full=True, collect_steps=50_000, train_steps=20_000,
                   baselines={"dt": 5_000, "bc": 20_000}, eval_every=5_000, device=device,
                   progress=progress, schedule=OnlineSchedule(epsilon_decay_steps=25_000))

    @classmethod
    def quick_config(cls, out: Path, seed: int = 0, device: str = "auto",
                     progress: bool = True) -> DemoConfig:
        return cls(out=out, seed=seed, quick=True, collect_steps=400, train_steps=40,
                   baselines={"dt": 20, "bc": 20},
                   eval_every=20, eval_episodes=2, max_episode_steps=100, device=device,
                   progress=progress,
                   dqn=DQNConfig(width=0.25, feature_dim=64),
                   schedule=OnlineSchedule(learning_starts=200, epsilon_decay_steps=500))


def run_demo(cfg: DemoConfig) -> dict:
    """Run the pipeline; returns the summary also written to ``OUT/summary.json``."""
    start = time.perf_counter()
    suite = get_suite("minatar")
    games = suite.games()
    options = EnvOptions(max_episode_steps=cfg.max_episode_steps)
    data_dir, run_dir = cfg.out / "data", cfg.out / "agent"
    timings: dict[str, float] = {}

    t = time.perf_counter()
    collected = collect(CollectConfig(
        suite=suite.name, games=games, steps=cfg.collect_steps, out=data_dir, seed=cfg.seed,
        num_envs=2 if cfg.quick else 8, options=options, dqn=cfg.dqn, schedule=cfg.schedule,
        device=cfg.device, jobs=1 if cfg.quick else cfg.collect_jobs,
        progress=cfg.progress),
        skip_existing=True)
    timings["collect"] = time.perf_counter() - t

    t = time.perf_counter()
    # one environment per episode: a single round, however long the good agents' episodes are
    eval_cfg = EvalConfig(episodes=cfg.eval_episodes, seed=cfg.seed + 10_000,
                          num_envs=cfg.eval_episodes, options=options,
                          progress=cfg.progress)
    # Two groups side by side, one torch thread each: Scaled QL alone; BC, DT and the DQN
    # snapshots' evaluation one after the other. On a 2-core CPU one-thread processes train the
    # small MinAtar networks faster than one two-thread process (benchmarks/README.md); the
    # second group finishes first, so the snapshots' evaluation costs no wall time there.
    groups = [[("scaled-ql", partial(train_learner, cfg, "scaled-ql", data_dir, run_dir,
                                     cfg.train_steps, eval_cfg, cfg.eval_every))],
              [(algo, partial(train_learner, cfg, algo, data_dir, cfg.out / algo, steps,
                              eval_cfg, 0)) for algo, steps in cfg.baselines.items()]
              + [("dqn-snapshots", partial(dqn_snapshot_report, data_dir, games, eval_cfg,
                                           cfg.device))]]
    results = _run_groups(cfg, groups)
    train_cfg = results["scaled-ql"][0]
    timings["train"] = results["scaled-ql"][1]
    baseline_reports, baseline_configs = {}, {}
    for algo in cfg.baselines:
        baseline_configs[algo] = results[algo][0].to_dict()
        baseline_reports[algo] = _last_eval(cfg.out / algo)
        timings[f"train_{algo}"] = results[algo][1]
    snapshots, timings["evaluate_dqn_snapshots"] = results["dqn-snapshots"]
    timings["train_wall"] = time.perf_counter() - t

    t = time.perf_counter()
    agent_report = _last_eval(run_dir)
    behaviour = behaviour_report(data_dir, games, cfg.seed)
    timings["evaluate"] = time.perf_counter() - t

    summary = {
        "seed": cfg.seed, "quick": cfg.quick, "games": games,
        "agent": agent_report, "behaviour_dataset": behaviour, "behaviour_last_dqn": snapshots,
        "baselines": baseline_reports, "baseline_configs": baseline_configs,
        "collect": collected, "config": _jsonable(asdict(cfg)), "train_config": train_cfg.to_dict(),
        "timings_seconds": timings, "wall_seconds": time.perf_counter() - start,
        "machine": describe_machine(cfg.device),
    }
    write_json(summary, cfg.out / "summary.json")
    from scaledql.reports.demo_report import write_report

    summary["report"] = str(write_report(cfg.out))
    return summary


Job = tuple[str, Callable[[], Any]]  # (name, what it runs: a picklable partial)


def _run_group(group: list[Job], threads: int | None) -> dict[str, tuple[Any, float]]:
    """Run each job of ``group`` in turn; → name → (its result, seconds)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    out = {}
    for name, job in group:
        t = time.perf_counter()
        out[name] = (job(), time.perf_counter() - t)
    return out


def _group_task(group: list[Job], progress: object = None) -> dict[str, tuple[Any, float]]:
    """One group in a worker process of ``_run_groups`` (``parallel.Pool``), one thread."""
    return _run_group(group, 1)


def _run_groups(cfg: DemoConfig, groups: list[list[Job]]) -> dict[str, tuple[Any, float]]:
    """The groups in parallel processes (spawned: no inherited threads), one thread each, with
    plain progress lines (two live bars would overwrite each other); in this process, in
    turn, in quick mode and on CUDA (one device). Stopped (SIGINT, SIGTERM, SIGHUP), the
    workers save their checkpoints and stop; the same command continues them."""
    from scaledql.device import pick_device
    from scaledql.worker_pool import Pool, Stopped, stop_signals

    if cfg.quick or pick_device(cfg.device).type == "cuda":
        return {k: v for g in groups for k, v in _run_group(g, None).items()}
    runner, out, ok = Pool(len(groups), lambda n: None), {}, False
    with stop_signals():
        try:
            for i, group in enumerate(groups):
                runner.submit((i,), _group_task, _quiet(group))
            for _ in groups:
                kind, _, result = runner.next_event()
                if kind == "error":
                    raise result
                out.update(result)
            ok = True
        except Stopped as stop:
            raise stop.saying(f"kept the data in {cfg.out / 'data'} and each learner's last "
                              "checkpoint; run the same command to continue") from None
        finally:
            runner.close(terminate=not ok)
    return out


def _quiet(group: list[Job]) -> list[Job]:
    """The jobs with their progress bars off (their workers print plain lines instead)."""
    def quiet(arg: Any) -> Any:
        return replace(arg, progress=False) if isinstance(arg, DemoConfig | EvalConfig) else arg
    return [(name, partial(job.func, *map(quiet, job.args), **job.keywords)
             if isinstance(job, partial) else job) for name, job in group]


def train_learner(cfg: DemoConfig, algo: str, data_dir: Path, run_dir: Path, steps: int,
                  eval_cfg: EvalConfig, eval_every: int) -> RunConfig:
    """Train (or finish, or reuse) one learner on the demo data from the MinAtar preset; quick
    mode uses the learner's tiny config."""
    learner = learner_class(algo).tiny_config().to_dict() if cfg.quick else {}
    run_cfg = merge(algo, read_toml(preset_path("minatar")), None, {
        "data": str(data_dir), "out": str(run_dir), "steps": steps, "seed": cfg.seed,
        "eval_every": eval_every, "eval_episodes": cfg.eval_episodes,
        "checkpoint_every": min(1000, steps), "log_every": min(100, steps),
        "device": cfg.device}, learner)
    resume = checkpoint_file(run_dir).exists()
    evaluator = policy_evaluator("minatar", eval_cfg, run_dir, echo=False)  # the report has them
    train(run_cfg, resume=resume, evaluate_fn=evaluator,
          progress=cfg.progress)
    return run_cfg


def _last_eval(run_dir: Path) -> dict:
    latest = latest_evaluation(run_dir)
    if latest is None:
        raise UserError(f"{run_dir}: no evaluation (its training did not finish)")
    return latest[1]


def behaviour_report(data_dir: Path, games: list[str], seed: int) -> dict:
    """The dataset's own score: its finished episodes' raw returns (``data.game.behaviour_score``:
    which episodes count), normalized.

    rliable needs the same number of rows per game, so every game contributes the same number of
    episodes, drawn without replacement (seeded) — at most 1000.
    """
    dataset = open_dataset(data_dir, games)
    returns = {g: behaviour_score(dataset.game(g)).returns for g in games}
    k = min(1000, *(len(r) for r in returns.values()))
    rng = np.random.default_rng(seed)
    picked = {g: rng.choice(r, size=k, replace=False).tolist() if k else [] for g, r in
              returns.items()}
    report = EvalReport("minatar", picked, seed, float("nan")).to_dict()
    for g in games:  # the per-game mean over *all* episodes, not just the k drawn
        report["games"][g]["mean_all_episodes"] = float(np.mean(returns[g])) if len(returns[g]) else None
        report["games"][g]["episodes_in_dataset"] = len(returns[g])
    return report


def dqn_snapshot_report(data_dir: Path, games: list[str], cfg: EvalConfig, device: str) -> dict:
    """Each game's last online-DQN snapshot (the best policy that generated data), evaluated."""
    from scaledql.checkpoint import load_policy

    returns = {}
    for game in games:
        policy, _ = load_policy(data_dir / "_agents" / f"{game}.pt", device)
        returns[game] = evaluate("minatar", [game], policy, cfg).returns[game]
    return EvalReport("minatar", returns, cfg.seed, cfg.epsilon).to_dict()


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))
