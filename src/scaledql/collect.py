"""Behaviour data the DQN-Replay way: an online DQN per game logging every transition it sees.

The DQN Replay Dataset (Agarwal et al., 2020) is the replay of a Nature-DQN agent trained online
per game, exploration included; the "sub-optimal" Scaled QL data is the first 20% of each run.
``collect`` does the same at any scale: per game, a fresh online double DQN (the Scaled QL agent
with a scalar Huber TD loss, no CQL, no feature normalization) acts ε-greedily with a linearly
decaying ε, learns from an in-memory replay, and *every* transition it experiences is written to
the on-disk store with the behaviour episodes' raw returns. ``policy=<checkpoint>`` logs a fixed
trained policy with a fixed ε instead.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from scaledql.agents.scaled_ql import AgentConfig, ScaledQLAgent
from scaledql.checkpoint import save_checkpoint
from scaledql.data.replay import RingReplay
from scaledql.data.store import GameWriter, list_games
from scaledql.device import pick_device
from scaledql.errors import UserError
from scaledql.suites import EnvOptions, GameSpec, get_suite


@dataclass
class DQNConfig:
    """The online DQN that generates behaviour data (Dopamine's DQN, scaled down for CPUs).

    ``update_period`` counts environment transitions per gradient step;
    ``target_update_period`` counts gradient steps.
    """

    encoder: str = "nature"
    width: float = 0.5
    feature_dim: int = 256
    lr: float = 5e-4
    adam_eps: float = 1.5e-4
    batch_size: int = 32
    replay_capacity: int = 100_000
    learning_starts: int = 2_000
    update_period: int = 4
    target_update_period: int = 1_000
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_steps: int = 25_000
    gamma: float = 0.99
    reward_clip: float = 1.0

    def epsilon(self, step: int) -> float:
        frac = min(1.0, step / max(1, self.epsilon_decay_steps))
        return self.epsilon_start + frac * (self.epsilon_end - self.epsilon_start)

    def agent_config(self) -> AgentConfig:
        return AgentConfig(
            encoder=self.encoder, width=self.width, feature_dim=self.feature_dim,
            feature_norm=False, loss="mse", huber_delta=1.0, cql_alpha=0.0, gamma=self.gamma,
            lr=self.lr, lr_batch_size=self.batch_size, batch_size=self.batch_size,
            adam_eps=self.adam_eps, target_update_period=self.target_update_period,
        )


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
    save_agents: bool = True  # keep each game's final DQN as OUT/_agents/GAME.pt
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


class _EpisodeBuffers:
    """Per-environment episodes in progress: single frames, actions, raw rewards."""

    def __init__(self, num_envs: int, channels: int):
        self.c = channels
        self.frames: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
        self.actions: list[list[int]] = [[] for _ in range(num_envs)]
        self.rewards: list[list[float]] = [[] for _ in range(num_envs)]

    def start(self, i: int, obs: np.ndarray) -> None:
        self.frames[i] = [obs[-self.c:].copy()]
        self.actions[i] = []
        self.rewards[i] = []

    def step(self, i: int, action: int, reward: float, next_obs: np.ndarray) -> None:
        self.actions[i].append(int(action))
        self.rewards[i].append(float(reward))
        self.frames[i].append(next_obs[-self.c:].copy())

    def flush(self, i: int, writer: GameWriter, terminated: bool, truncated: bool) -> float:
        ret = float(np.sum(self.rewards[i]))
        writer.add_episode(np.stack(self.frames[i]), np.asarray(self.actions[i], np.int64),
                           np.asarray(self.rewards[i], np.float32), terminated, truncated)
        return ret


def _final_obs(info: dict, i: int, fallback: np.ndarray) -> np.ndarray:
    """The observation that ended env i's episode (SAME_STEP autoreset puts it in ``info``)."""
    final = info.get("final_obs")
    if final is None or final[i] is None:
        return fallback
    return np.asarray(final[i])


def collect_game(cfg: CollectConfig, game: str, seed: int) -> dict:
    """Collect ``cfg.steps`` transitions of one game into ``cfg.out/<game>``; returns a summary."""
    suite = get_suite(cfg.suite)
    spec: GameSpec = suite.spec(game, cfg.options)
    device = pick_device(cfg.device)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    learning = cfg.policy == "dqn"
    if learning:
        agent = ScaledQLAgent(cfg.dqn.agent_config(), spec.obs_shape, [spec.num_actions], device)
        replay = RingReplay(min(cfg.dqn.replay_capacity, cfg.steps), spec.obs_shape,
                            spec.frame_shape[0], cfg.dqn.reward_clip, cfg.dqn.gamma, seed)
        head = 0
    else:
        from scaledql.checkpoint import load_policy

        policy, _, _ = load_policy(Path(cfg.policy), cfg.device)
        policy.check_games([game], cfg.options)
        agent, head = policy.agent, policy.head[game]
    provenance = {
        "source": "scaledql collect",
        "command": " ".join(shlex.quote(a) for a in ["scaledql", *sys.argv[1:]]),
        "behaviour": "online DQN (replay logged from the start)" if learning
        else f"fixed policy {cfg.policy} with epsilon {cfg.epsilon}",
        "seed": seed,
        "env_options": asdict(cfg.options),
        "dqn": asdict(cfg.dqn) if learning else None,
    }
    envs = suite.make_vector_env(game, cfg.num_envs, cfg.options)
    episodes = _EpisodeBuffers(cfg.num_envs, spec.frame_shape[0])
    recent: deque[float] = deque(maxlen=20)
    returns: list[float] = []
    running = np.zeros(cfg.num_envs)
    updates_due = 0.0
    steps = 0
    start = time.perf_counter()
    with GameWriter(cfg.out, suite=cfg.suite, game=game, num_actions=spec.num_actions,
                    frame_shape=spec.frame_shape, stack=spec.stack,
                    action_set="full" if cfg.options.full_action_space else "minimal",
                    provenance=provenance, overwrite=cfg.overwrite) as writer, \
            tqdm(total=cfg.steps, desc=f"collect {game}", unit="step", disable=not cfg.progress,
                 dynamic_ncols=True, file=sys.stderr) as bar:
        obs, _ = envs.reset(seed=seed)
        for i in range(cfg.num_envs):
            episodes.start(i, obs[i])
        while steps < cfg.steps:
            n = min(cfg.num_envs, cfg.steps - steps)  # the last step may use fewer envs
            eps = cfg.dqn.epsilon(steps) if learning else cfg.epsilon
            actions = agent.act(obs, head, eps, rng)
            next_obs, rewards, terminated, truncated, info = envs.step(actions)
            done = np.logical_or(terminated, truncated)
            true_next = next_obs.copy()
            for i in np.flatnonzero(done):
                true_next[i] = _final_obs(info, i, next_obs[i])
            for i in range(n):
                episodes.step(i, actions[i], rewards[i], true_next[i])
            if learning:
                replay.add(obs[:n], actions[:n], rewards[:n], terminated[:n].astype(np.float32),
                           true_next[:n])
            running += rewards
            for i in range(n):
                if done[i]:
                    returns.append(episodes.flush(i, writer, bool(terminated[i]),
                                                  bool(truncated[i] and not terminated[i])))
                    recent.append(running[i])
                    running[i] = 0.0
                    episodes.start(i, next_obs[i])
            steps += n
            if learning and steps >= cfg.dqn.learning_starts:
                updates_due += n / cfg.dqn.update_period
                while updates_due >= 1:
                    agent.update(replay.sample(cfg.dqn.batch_size))
                    updates_due -= 1
            obs = next_obs
            bar.update(n)
            if recent:
                bar.set_postfix(ret=f"{np.mean(recent):.1f}", eps=f"{eps:.2f}", refresh=False)
        for i in range(cfg.num_envs):  # the unfinished trailing episodes keep their steps
            if episodes.actions[i]:
                episodes.flush(i, writer, terminated=False, truncated=False)
    envs.close()
    seconds = time.perf_counter() - start
    if learning and cfg.save_agents:
        save_checkpoint({
            "step": agent.step, "suite": cfg.suite, "games": [game],
            "num_actions": [spec.num_actions], "obs_shape": list(spec.obs_shape),
            "agent_config": agent.cfg.to_dict(), "agent": agent.state_dict(),
            "env_options": asdict(cfg.options), "seed": seed,
        }, cfg.out / "_agents" / f"{game}.pt")
    return {"game": game, "steps": steps, "episodes": len(returns), "seconds": seconds,
            "steps_per_second": steps / seconds,
            "mean_return": float(np.mean(returns)) if returns else None,
            "last_20_return": float(np.mean(list(recent))) if recent else None}


def collect(cfg: CollectConfig, skip_existing: bool = False) -> list[dict]:
    """Collect every game of ``cfg.games`` (seeds ``cfg.seed + index``); see ``collect_game``."""
    done = set(list_games(cfg.out)) if cfg.out.exists() else set()
    out = []
    for index, game in enumerate(cfg.games):
        if skip_existing and game in done and not cfg.overwrite:
            out.append({"game": game, "reused": True})
            continue
        out.append(collect_game(cfg, game, cfg.seed + index))
    return out
