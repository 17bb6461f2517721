"""Expert-action inference for the multi-game Decision Transformer (Lee et al. 2022, §3.4).

At every step, for every environment: take the return logits of the window's first step, add
the optimality bias κ·(R − R_low)/(R_high − R_low), keep the logits above a percentile if asked,
scale by an inverse temperature, draw ``return_samples`` returns and keep the largest; condition
on it and sample the action from the action logits of the newest step, restricted to the game's
actions, to those above a percentile, and scaled by an inverse temperature. This is the
release's ``optimal_action`` (``multi_game_dt`` colab; its ``temperature`` multiplies the
logits, i.e. it is an inverse temperature; its percentile filter keeps logits strictly above
``percentile(logits)``). Default values and their sources: ``agents/decision_transformer.py``.

Histories: each environment keeps its last ``context`` steps (frame, action, reward class).
Where the release pre-pads a new episode with blank frames, we put the real steps at the start
of the window and read the action at the newest one: attention is causal, so the padding after
them changes nothing, and the model sees windows that begin at an episode's start exactly as in
training (the sampler pads only after an episode's end).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from scaledql import losses
from scaledql.agents.base import eval_mode
from scaledql.agents.configs import DecisionTransformerConfig
from scaledql.models.transformer import DecisionTransformerNet
from scaledql.policies import head_index


def keep_top_percentile(logits: torch.Tensor, percentile: float,
                        valid: torch.Tensor | None = None) -> torch.Tensor:
    """Logits above the ``percentile``-th percentile (linear interpolation, over the valid
    entries) kept, the rest −inf. The largest valid logit is always kept (so ties cannot empty a
    row). logits: float[N, K]; valid: bool[N, K] or None → float[N, K]."""
    x = logits.float()
    if valid is None:
        valid = torch.ones_like(x, dtype=torch.bool)
    x = x.masked_fill(~valid, float("-inf"))
    threshold = torch.nanquantile(x.masked_fill(~valid, float("nan")), percentile / 100.0,
                                  dim=-1, keepdim=True)
    keep = ((x > threshold) | (x == x.max(-1, keepdim=True).values)) & valid
    return x.masked_fill(~keep, float("-inf"))


def _scale(logits: torch.Tensor, inverse_temperature: float) -> torch.Tensor:
    """β · logits, leaving −inf entries −inf (β = 0 would make them NaN)."""
    return torch.where(torch.isfinite(logits), inverse_temperature * logits, logits)


def expert_return_logits(return_logits: torch.Tensor, kappa: float, inverse_temperature: float,
                         top_percentile: float | None = None) -> torch.Tensor:
    """The logits returns are drawn from: ``β · (logits + κ·(R − R_low)/(R_high − R_low))``,
    optionally filtered by ``keep_top_percentile`` before the scaling (release order).
    float[N, R] → float[N, R]; class i is return R_low + i, so the bias is κ·i/(R − 1)."""
    num = return_logits.shape[-1]
    bias = torch.linspace(0.0, 1.0, num, device=return_logits.device) if num > 1 else 0.0
    logits = return_logits.float() + kappa * bias
    if top_percentile is not None:
        logits = keep_top_percentile(logits, top_percentile)
    return _scale(logits, inverse_temperature)


def sample_expert_returns(return_logits: torch.Tensor, *, kappa: float,
                          inverse_temperature: float, num_samples: int,
                          top_percentile: float | None, generator: torch.Generator) -> torch.Tensor:
    """Draw ``num_samples`` return classes per row from ``expert_return_logits`` and keep the
    largest. float[N, R] → int64[N] class indices."""
    probs = torch.softmax(
        expert_return_logits(return_logits, kappa, inverse_temperature, top_percentile), dim=-1)
    draws = torch.multinomial(probs, num_samples, replacement=True, generator=generator)
    return draws.max(dim=1).values


def sample_actions(action_logits: torch.Tensor, valid: torch.Tensor, *,
                   inverse_temperature: float, top_percentile: float | None,
                   generator: torch.Generator) -> torch.Tensor:
    """One action per row among the ``valid`` ones. action_logits: float[N, A]; valid:
    bool[N, A] → int64[N]."""
    logits = action_logits.float().masked_fill(~valid, float("-inf"))
    if top_percentile is not None:
        logits = keep_top_percentile(logits, top_percentile, valid)
    probs = torch.softmax(_scale(logits, inverse_temperature), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


class DecisionTransformerPolicy:
    """``scaledql.policies.Policy`` playing a ``DecisionTransformerNet`` by expert-action
    inference (module docstring), with per-environment histories of ``cfg.context`` steps."""

    def __init__(self, model: DecisionTransformerNet, cfg: DecisionTransformerConfig,
                 games: Sequence[str], num_actions: Sequence[int], device: torch.device,
                 seed: int = 0,
                 autocast: Callable[[], contextlib.AbstractContextManager] | None = None) -> None:
        self.model = model
        self.cfg = cfg
        self.games = list(games)
        self.num_actions = [int(a) for a in num_actions]
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self._autocast = autocast or contextlib.nullcontext
        self.game_id = 0
        self.reset(self.games[0], 0)

    def reset(self, game: str, num_envs: int) -> None:
        self.game_id = head_index(self.games, game)
        n, ctx, dev = num_envs, self.cfg.context, self.device
        self.frames = torch.zeros((n, ctx, *self.model.frame_shape), dtype=torch.uint8, device=dev)
        self.actions = torch.zeros((n, ctx), dtype=torch.int64, device=dev)
        self.rewards = torch.zeros((n, ctx), dtype=torch.int64, device=dev)
        self.length = np.zeros(n, np.int64)  # steps held per env (0..context), on the host

    def _push(self, frames: torch.Tensor) -> torch.Tensor:
        """Append the newest frames (shifting full histories); int64[N] index of that step."""
        full = torch.from_numpy(self.length == self.cfg.context).to(self.device)
        for h in (self.frames, self.actions, self.rewards):
            h[full] = h[full].roll(-1, dims=1)
        self.length = np.minimum(self.length + 1, self.cfg.context)
        idx = torch.from_numpy(self.length - 1).to(self.device)
        rows = torch.arange(len(idx), device=self.device)
        self.frames[rows, idx] = frames
        self.actions[rows, idx] = 0  # unknown yet: never seen by the action read at this step
        self.rewards[rows, idx] = 0
        return idx

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """obs: uint8[N, S*C, H, W] → int64[N] actions in [0, num_actions(game))."""
        cfg, model = self.cfg, self.model
        x = torch.from_numpy(np.ascontiguousarray(obs)).to(self.device)
        idx = self._push(x[:, -model.frame_shape[0]:])
        n, steps = len(idx), int(self.length.max())
        frames, actions, rewards = self.frames[:, :steps], self.actions[:, :steps], \
            self.rewards[:, :steps]
        returns = torch.zeros((n, steps), dtype=torch.int64, device=self.device)
        with eval_mode(model), self._autocast():
            # The return logits of step t see only the steps up to t's patches, so step t
            # needs a window of t + 1 steps; only the first return when it is the only one.
            for t in range(1 if cfg.single_return_token else steps):
                logits = model(frames[:, :t + 1], returns[:, :t + 1], actions[:, :t + 1],
                               rewards[:, :t + 1]).return_logits[:, t]
                returns[:, t] = sample_expert_returns(
                    logits, kappa=cfg.kappa, inverse_temperature=cfg.return_inverse_temperature,
                    num_samples=cfg.return_samples, top_percentile=cfg.return_top_percentile,
                    generator=self.generator)
            out = model(frames, returns, actions, rewards)
        logits = out.action_logits[torch.arange(n, device=self.device), idx]
        valid = model.action_mask[self.game_id].expand(n, -1)
        chosen = sample_actions(logits, valid, inverse_temperature=cfg.action_inverse_temperature,
                                top_percentile=cfg.action_top_percentile, generator=self.generator)
        return chosen.cpu().numpy().astype(np.int64)

    def observe(self, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        """Record the executed actions and the rewards' classes at the newest step; clear the
        histories of environments whose episode ended (their next obs starts a new one)."""
        held = self.length > 0
        if held.any():
            rows = torch.from_numpy(np.flatnonzero(held)).to(self.device)
            idx = torch.from_numpy(self.length[held] - 1).to(self.device)
            self.actions[rows, idx] = torch.as_tensor(
                np.asarray(actions)[held], dtype=torch.int64, device=self.device)
            r = torch.as_tensor(np.asarray(rewards, dtype=np.float32)[held], device=self.device)
            self.rewards[rows, idx] = losses.encode_rewards(r)
        done = np.asarray(dones, dtype=bool)
        if done.any():
            self.length[done] = 0
            d = torch.from_numpy(done).to(self.device)
            for h in (self.frames, self.actions, self.rewards):
                h[d] = 0
