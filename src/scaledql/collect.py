"""Behaviour data the DQN-Replay way: an online DQN per game logging every transition it sees.

The DQN Replay Dataset (Agarwal et al., 2020) is the replay of a Nature-DQN agent trained online
per game, exploration included; the "sub-optimal" Scaled QL data is the first 20% of each run.
``collect`` does the same at any scale: per game, a fresh online double DQN (the ``dqn`` learner)
runs in the shared online loop (``training/online_loop.py``) — ε-greedy with a linearly decaying ε,
learning from an in-memory replay — and *every* transition it experiences is written to the
on-disk store with the behaviour episodes' raw returns. ``policy=<checkpoint>`` logs a fixed
trained policy (any learner) with a fixed ε instead.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scaledql.agents.base import Problem
from scaledql.agents.dqn import DQN, DQNConfig
from scaledql.checkpoint import check_policy_games, load_learner, run_payload
from scaledql.data.store.action_log import (
    ActionLogger,
    ReplayPolicy,
    check_recipe,
    log_path,
    read_log,
    store_digest,
    write_log,
)
from scaledql.data.store.dataset import list_games
from scaledql.data.store.format import MANIFEST
from scaledql.data.store.writer import GameWriter
from scaledql.device import pick_device
from scaledql.errors import UserError
from scaledql.run_folder import step_checkpoint_name
from scaledql.suites import EnvOptions, get_suite
from scaledql.suites.base import GameSpec
from scaledql.training.lifecycle import crossed
from scaledql.training.online_loop import OnlineSchedule, OnlineState, run_online
from scaledql.training.session import RunSession
from scaledql.worker_pool import Pool, Stopped, stop_signals


@dataclass
class CollectConfig:
    suite: str
    games: list[str]
    steps: int  # environment steps (transitions) per game
    out: Path
    seed: int = 0
    num_envs: int = 4
    policy: str = "dqn"  # "dqn" (learn online) or a checkpoint path (fixed policy)
    epsilon: float = 0.01  # fixed-policy exploration
    options: EnvOptions = field(default_factory=EnvOptions)
    dqn: DQNConfig = field(default_factory=DQNConfig)
    schedule: OnlineSchedule = field(default_factory=OnlineSchedule)
    save_agents: bool = True  # keep each game's final DQN as OUT/_agents/GAME.pt
    # Also keep the DQN every this many steps (OUT/_agents/GAME/step_NNNNNNNN.pt): the run's
    # checkpoints, as DQN Replay keeps one per iteration, so a data fraction has its policy.
    snapshot_every: int | None = None
    jobs: int = 1  # games collected in parallel processes (one torch thread each when > 1)
    # Keep each game's action log as LOG_DIR/GAME.npz, and rebuild a game from its log when
    # one is there instead of running the DQN again (data/store/action_log.py).
    log_dir: Path | None = None
    overwrite: bool = False
    device: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise UserError(f"--steps must be positive, got {self.steps}")
        if self.num_envs <= 0:
            raise UserError(f"--num-envs must be positive, got {self.num_envs}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise UserError(f"--epsilon must be in [0, 1], got {self.epsilon}")
        if self.seed < 0:
            raise UserError(f"--seed must be >= 0, got {self.seed}")
        if self.snapshot_every is not None and self.snapshot_every <= 0:
            raise UserError(f"--snapshot-every must be positive, got {self.snapshot_every}")
        if self.jobs <= 0:
            raise UserError(f"--jobs must be positive, got {self.jobs}")
        self.dqn.validate()
        self.schedule.validate()
        self.options.validate()


class _EpisodeWriter:
    """The ``Recorder`` of collection: per-environment episodes (single frames, actions, raw
    rewards) written to the store as they end."""

    def __init__(self, writer: GameWriter, num_envs: int, channels: int):
        self.writer = writer
        self.c = channels
        self.frames: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
        self.actions: list[list[int]] = [[] for _ in range(num_envs)]
        self.rewards: list[list[float]] = [[] for _ in range(num_envs)]

    def begin(self, env: int, obs: np.ndarray) -> None:
        self.frames[env] = [obs[-self.c:].copy()]
        self.actions[env] = []
        self.rewards[env] = []

    def record(self, env: int, action: int, reward: float, next_obs: np.ndarray) -> None:
        self.actions[env].append(action)
        self.rewards[env].append(reward)
        self.frames[env].append(next_obs[-self.c:].copy())

    def end(self, env: int, terminated: bool, truncated: bool) -> float:
        self.writer.add_episode(np.stack(self.frames[env]), np.asarray(self.actions[env], np.int64),
                                np.asarray(self.rewards[env], np.float32), terminated, truncated)
        return float(np.sum(self.rewards[env]))

    def finish(self) -> None:
        """The unfinished trailing episodes keep their steps (neither terminated nor truncated)."""
        for env in range(len(self.actions)):
            if self.actions[env]:
                self.end(env, terminated=False, truncated=False)


def recipe(cfg: CollectConfig, game: str, seed: int) -> dict:
    """What makes a game's data: an action log made with another recipe is refused."""
    learning = cfg.policy == "dqn"
    return {"suite": cfg.suite, "game": game, "seed": seed, "num_envs": cfg.num_envs,
            "steps": cfg.steps, "env_options": cfg.options.record(), "policy": str(cfg.policy),
            "epsilon": None if learning else cfg.epsilon,
            "dqn": {**asdict(cfg.dqn), **asdict(cfg.schedule)} if learning else None}


def comparable_recipe(recipe_: dict) -> dict:
    """A recipe with its behaviour settings at today's defaults left out, so that a log written
    before a setting existed (a learner option added since, at its default) still matches; a
    setting whose default changed since stays in and is compared."""
    defaults = {**asdict(DQNConfig()), **asdict(OnlineSchedule())}
    dqn = recipe_.get("dqn")
    if not isinstance(dqn, dict):
        return recipe_
    return {**recipe_, "dqn": {k: v for k, v in dqn.items()
                               if k not in defaults or defaults[k] != v}}


def collect_game(cfg: CollectConfig, game: str, seed: int) -> dict:
    """Collect ``cfg.steps`` transitions of one game into ``cfg.out/<game>``; returns a summary.
    With ``cfg.log_dir``: rebuilt from the game's action log when there is one, else collected
    and its log written."""
    if cfg.log_dir is not None and log_path(cfg.log_dir, game).is_file():
        return rebuild_game(cfg, game, seed)
    suite = get_suite(cfg.suite)
    spec = suite.spec(game, cfg.options)
    device = pick_device(cfg.device)
    torch.manual_seed(seed)
    learning = cfg.policy == "dqn"
    if learning:
        problem = Problem.of([spec], where=game)
        learner = DQN(cfg.dqn, problem, device)
        schedule = cfg.schedule
    else:
        learner, payload = load_learner(Path(cfg.policy), device)
        check_policy_games(payload, [game], cfg.options)
        schedule = OnlineSchedule(epsilon_start=cfg.epsilon, epsilon_end=cfg.epsilon)
    provenance = _provenance(cfg, seed)
    session = CollectSession(cfg, game, seed, learner)
    on_step = session.step if learning and cfg.save_agents and cfg.snapshot_every else None
    start = time.perf_counter()
    with _game_writer(cfg, game, spec, provenance) as writer:
        recorder = _EpisodeWriter(writer, cfg.num_envs, spec.frame_shape[0])
        if cfg.log_dir is not None:
            recorder = ActionLogger(recorder)
        result = run_online(learner, cfg.suite, game, cfg.options, steps=cfg.steps,
                            schedule=schedule, seed=seed, num_envs=cfg.num_envs, learn=learning,
                            recorder=recorder, progress=cfg.progress, desc=f"collect {game}",
                            on_step=on_step)
        recorder.finish()
    seconds = time.perf_counter() - start
    if cfg.log_dir is not None:
        write_log(log_path(cfg.log_dir, game), recorder.actions, recipe(cfg, game, seed),
                  provenance, store_digest(cfg.out / game))
    if learning and cfg.save_agents:
        session.checkpoint()
    return _summary(game, result.episode_returns, result.steps, seconds)


def _provenance(cfg: CollectConfig, seed: int) -> dict:
    """What a collected store records of how it was made (its manifest's ``provenance``)."""
    learning = cfg.policy == "dqn"
    return {
        "source": "scaledql collect",
        "command": " ".join(shlex.quote(a) for a in ["scaledql", *sys.argv[1:]]),
        "behaviour": "online DQN (replay logged from the start)" if learning
        else f"fixed policy {cfg.policy} with epsilon {cfg.epsilon}",
        "seed": seed,
        "env_options": cfg.options.record(),
        "dqn": {**asdict(cfg.dqn), **asdict(cfg.schedule)} if learning else None,
    }


def made_by_this_command(cfg: CollectConfig, game: str, seed: int) -> bool:
    """``cfg.out/<game>`` is a complete store this same collection made (or rebuilt from its
    log) before it was stopped: the same command line, seed and settings, all its steps."""
    path = cfg.out / game / MANIFEST
    if not path.is_file():
        return False
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    want = [_provenance(cfg, seed)]
    if cfg.log_dir is not None and log_path(cfg.log_dir, game).is_file():
        want.append(read_log(log_path(cfg.log_dir, game))[1]["provenance"])
    return (m.get("provenance") in want
            and m.get("counts", {}).get("transitions") == cfg.steps)


def _summary(game: str, returns: list[float], steps: int, seconds: float) -> dict:
    return {"game": game, "steps": steps, "episodes": len(returns), "seconds": seconds,
            "steps_per_second": steps / seconds,
            "mean_return": float(np.mean(returns)) if returns else None,
            "last_20_return": float(np.mean(returns[-20:])) if returns else None}


def _game_writer(cfg: CollectConfig, game: str, spec: GameSpec, provenance: dict) -> GameWriter:
    """The store writer of one collected (or rebuilt) game."""
    return GameWriter(cfg.out, suite=cfg.suite, game=game, num_actions=spec.num_actions,
                      frame_shape=spec.frame_shape, stack=spec.stack,
                      action_set="full" if cfg.options.full_action_space else "minimal",
                      provenance=provenance, overwrite=cfg.overwrite)


def rebuild_game(cfg: CollectConfig, game: str, seed: int) -> dict:
    """``cfg.out/<game>`` made again from its action log: the same environments stepped with the
    logged actions; refused (and removed) unless the store's digest is the one logged."""
    path = log_path(cfg.log_dir, game)
    actions, meta = read_log(path)
    check_recipe(path, comparable_recipe(meta["recipe"]),
                 comparable_recipe(recipe(cfg, game, seed)))
    suite = get_suite(cfg.suite)
    spec = suite.spec(game, cfg.options)
    start = time.perf_counter()
    with _game_writer(cfg, game, spec, meta["provenance"]) as writer:
        recorder = _EpisodeWriter(writer, cfg.num_envs, spec.frame_shape[0])
        result = run_online(None, cfg.suite, game, cfg.options, steps=cfg.steps,
                            schedule=OnlineSchedule(epsilon_start=0.0, epsilon_end=0.0),
                            seed=seed, num_envs=cfg.num_envs, learn=False, recorder=recorder,
                            progress=cfg.progress, desc=f"rebuild {game}",
                            policy=ReplayPolicy(actions))
        recorder.finish()
    digest = store_digest(cfg.out / game)
    if digest != meta["digest"]:
        shutil.rmtree(cfg.out / game, ignore_errors=True)
        raise UserError(f"{path}: replaying the log made other data than it was logged from "
                        "(another emulator or library version?); the rebuilt store was removed")
    seconds = time.perf_counter() - start
    return {**_summary(game, result.episode_returns, result.steps, seconds), "rebuilt": True}


class CollectSession(RunSession):
    """One game's collection as a run session: its learner's checkpoints go to
    ``OUT/_agents`` (no lock, no metrics log: the store's writer holds the game's folder, and
    the store is the run's record). ``step`` (the online loop's ``on_step``) keeps a snapshot
    every ``cfg.snapshot_every`` environment steps; ``checkpoint`` the final learner."""

    def __init__(self, cfg: CollectConfig, game: str, seed: int, learner: Any) -> None:
        super().__init__(cfg.out / "_agents")
        self.cfg, self.game, self.seed, self.learner = cfg, game, seed, learner
        self.last = 0  # the environment step at the previous call

    def step(self, state: OnlineState) -> bool:
        cfg, every, steps = self.cfg, int(self.cfg.snapshot_every or 0), state.result.steps
        if crossed(self.last, steps, every):
            at = (self.last // every + 1) * every  # the snapshot's name: the multiple reached
            payload = run_payload(self.learner, cfg.suite, cfg.options.record(), seed=self.seed,
                                  env_steps=steps,
                                  episode_returns=list(state.result.episode_returns))
            self.write_checkpoint(payload, file=self.run / self.game / step_checkpoint_name(at))
        self.last = steps
        return False

    def checkpoint(self) -> None:
        self.write_checkpoint(run_payload(self.learner, self.cfg.suite, self.cfg.options.record(),
                                          seed=self.seed), file=self.run / f"{self.game}.pt")


def _collect_task(task: tuple[CollectConfig, str, int, int], progress: object = None) -> dict:
    """One game in a worker process of ``collect(jobs>1)`` (``parallel.Pool``)."""
    cfg, game, seed, threads = task
    torch.set_num_threads(threads)
    return collect_game(cfg, game, seed)


def collect(cfg: CollectConfig, skip_existing: bool = False) -> list[dict]:
    """Collect every game of ``cfg.games`` (seeds ``cfg.seed + index``); see ``collect_game``.

    ``cfg.jobs > 1`` collects games in that many processes, each with an equal share of the
    cores as torch threads (small networks run faster on one thread than on two contending
    ones). A game's data depends on its seed and on the thread count, not on the other games.

    Stopped (SIGINT, SIGTERM, SIGHUP: ``parallel.Stopped``): the workers stop, the unfinished
    games' partial stores go, the finished ones stay; the same command run again keeps them
    (``made_by_this_command``) and collects the rest.
    """
    done = set(list_games(cfg.out)) if cfg.out.exists() else set()
    todo = [(index, game) for index, game in enumerate(cfg.games)
            if not (game in done and not cfg.overwrite and (
                skip_existing or made_by_this_command(cfg, game, cfg.seed + index)))]
    results: dict[str, dict] = {game: {"game": game, "reused": True} for game in cfg.games}
    jobs = min(cfg.jobs, len(todo))
    runner = Pool(jobs, lambda n: None) if jobs > 1 else None
    ok = False
    with stop_signals():  # held while the workers stop too: a second signal changes nothing
        try:
            if runner is None:
                for index, game in todo:
                    results[game] = collect_game(cfg, game, cfg.seed + index)
            else:
                threads = max(1, (os.cpu_count() or 1) // jobs)
                for index, game in todo:
                    runner.submit((game,), _collect_task, (cfg, game, cfg.seed + index, threads))
                for _ in todo:
                    kind, (game,), result = runner.next_event()
                    if kind == "error":
                        raise result
                    results[game] = result
            ok = True
        except Stopped as stop:
            stores = set(list_games(cfg.out)) if cfg.out.is_dir() else set()
            kept = [g for g in cfg.games if g in stores]
            left = [g for g in cfg.games if g not in kept]
            raise stop.saying(
                f"kept {', '.join(kept) or 'no game'} in {cfg.out}"
                + (f"; {', '.join(left)} not finished (partial data removed)" if left else "")
                + "; run the same command to continue") from None
        finally:
            if runner is not None:
                runner.close(terminate=not ok)
    return [results[game] for game in cfg.games]
