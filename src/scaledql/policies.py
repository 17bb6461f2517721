"""Policies: what plays a game, for evaluation, collection and online learning.

A policy is driven one vector environment at a time: ``reset(game, num_envs)`` before the first
step, ``act(obs)`` for every step, ``observe(actions, rewards, dones)`` after it with the actions
actually executed (exploration may have replaced some), the rewards, and which environments
ended an episode (vector envs reset those on the same step, so the next ``obs`` row starts a new
episode). Q-policies and the random policy ignore ``observe``; a return-conditioned policy (the
Decision Transformer) keeps per-environment histories through it. Every learner returns one from
``Learner.policy()``, so one ``evaluate`` plays them all under the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from scaledql.errors import UserError


class Policy(Protocol):
    """Plays the games it was trained on. ``games``: those it has heads for, in head order;
    ``num_actions[i]``: the action count of ``games[i]``."""

    games: list[str]
    num_actions: list[int]

    def reset(self, game: str, num_envs: int) -> None:
        """Start ``num_envs`` fresh episodes of ``game``."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """obs: uint8[N, S*C, H, W] → int64[N] actions in [0, num_actions(game))."""

    def observe(self, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        """After a step: int64[N] executed actions, float[N] rewards, bool[N] episode ends."""


class _StatelessPolicy:
    """Shared bookkeeping of policies without per-episode state."""

    def __init__(self, games: Sequence[str], num_actions: Sequence[int]) -> None:
        self.games = list(games)
        self.num_actions = [int(a) for a in num_actions]
        self.game_id = 0

    def reset(self, game: str, num_envs: int) -> None:
        self.game_id = head_index(self.games, game)

    def observe(self, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        pass


class GreedyPolicy(_StatelessPolicy):
    """argmax of per-action scores: Q-values (Scaled QL, DQN) or action logits (BC).

    ``scores(obs uint8[N, ...] tensor, game_id) → float[N, A_max]`` with ``-inf`` on actions the
    game lacks; it runs on ``device``.
    """

    def __init__(self, scores: Callable[[torch.Tensor, int], torch.Tensor], games: Sequence[str],
                 num_actions: Sequence[int], device: torch.device | str) -> None:
        super().__init__(games, num_actions)
        self.scores = scores
        self.device = torch.device(device)

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(obs)).to(self.device)
        return self.scores(x, self.game_id).argmax(1).cpu().numpy().astype(np.int64)


class RandomPolicy(_StatelessPolicy):
    """Uniformly random actions (the ``random`` row of the normalization tables)."""

    def __init__(self, games: Sequence[str], num_actions: Sequence[int], seed: int = 0) -> None:
        super().__init__(games, num_actions)
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.integers(0, self.num_actions[self.game_id], size=len(obs))


def head_index(games: Sequence[str], game: str) -> int:
    """The head of ``game`` among a policy's ``games``; ``UserError`` if it has none."""
    try:
        return list(games).index(game)
    except ValueError:
        raise UserError(f"the policy has no head for {game!r} (trained on: "
                        f"{', '.join(games)})") from None


def epsilon_greedy(policy: Policy, obs: np.ndarray, epsilon: float, num_actions: int,
                   rng: np.random.Generator) -> np.ndarray:
    """The policy's actions, each replaced with probability ε by a uniformly random one.

    The random numbers are drawn first and the same way whatever ε is, so a run is reproducible
    from ``rng``; the policy is always asked (a stateful policy must see every observation).
    """
    n = len(obs)
    random_actions = rng.integers(0, num_actions, size=n)
    explore = rng.random(n) < epsilon
    chosen = np.asarray(policy.act(obs), dtype=np.int64)
    return np.where(explore, random_actions, chosen).astype(np.int64)
