"""Scaled Q-Learning: online and target networks, Adam, one update step (a ``Learner``).

The update math lives in ``scaled_ql_loss`` (a pure function of network outputs and batch
tensors); ``ScaledQL`` adds the optimizer, the target-network schedule, devices and
DistributedDataParallel. The online DQN that collects behaviour data (``agents/dqn.py``) is the
same learner with a scalar Huber TD loss, no CQL and no feature normalization.

Defaults and their sources: ``docs/defaults.md``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch

from scaledql import losses
from scaledql.agents.base import (
    BatchSpec,
    Learner,
    Problem,
    as_tensors,
    eval_mode,
    make_adam,
    maybe_compile,
    resolve_bf16,
    wrap_distributed,
)
from scaledql.agents.configs import ScaledQLConfig
from scaledql.agents.optimization import gradient_step
from scaledql.agents.registry import register
from scaledql.data.sampling.sampler import TransitionBatch
from scaledql.models import NetworkOutput, ScaledQNetwork
from scaledql.policies import GreedyPolicy, Policy
from scaledql.value_targets import make_value_target, value_target_class


def scaled_ql_loss(
    online_out: NetworkOutput,
    target_out: NetworkOutput,
    next_online_out: NetworkOutput | None,
    batch: TransitionBatch,
    cfg: ScaledQLConfig,
    num_games: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The Scaled QL objective, averaged over the batch: ``mean(TD + α · CQL)``.

    online_out: online net at s (with gradient); target_out: target net at s'; next_online_out:
    online net at s' (picks the bootstrap action when ``cfg.double_q``; may be None otherwise).
    The value target ``cfg.loss`` names (``scaledql.value_targets``) reads Q from the outputs
    and gives TD: its loss of the online outputs at the data action against its target, built
    from ``r``, ``γ^k (1 − done)`` and the target net's outputs at the bootstrap action
    ``a* = argmax_a Q(s', a)`` (Q of the online net with ``double_q``, else of the target net).
    C51 (the default): cross-entropy against the projected distribution of
    ``r + γ^k (1 − done) z``; mse: regression of Q(s, a) onto ``r + γ^k (1 − done) Q_target(s', a*)``.
    CQL = ``logsumexp_a Q(s, a) − Q(s, a_data)`` over the game's valid actions, on those Qs.
    The mean over the batch (not a sum) makes DDP's gradient averaging equal one big batch.

    Returns (scalar loss, metrics: 0-d tensors loss, td_loss, cql_loss, mean_q, feature_norm,
    q_spread, action_gap (``losses.value_diagnostics``), and ``cql_by_game``, float[num_games]:
    the unweighted CQL term per game, to read beside ln|A| (its value when Q is flat), when
    ``num_games`` is given).
    """
    rows = torch.arange(batch.action.shape[0], device=batch.action.device)
    bootstrap = batch.discount * (1.0 - batch.done)  # [B]
    values = online_out.values.float()  # [B, A, N] (a scalar target: [B, A])
    value_target = make_value_target(cfg, values.device)
    q = value_target.q_values(values)  # [B, A]
    with torch.no_grad():
        next_outputs = target_out.values.float()
        chooser = next_online_out if cfg.double_q else target_out
        next_q = value_target.q_values(chooser.values.float())
        next_action = losses.masked_argmax(next_q, target_out.action_mask)
        target = value_target.td_target(batch.reward, bootstrap, next_outputs[rows, next_action])
    td = value_target.td_loss(values[rows, batch.action], target)
    cql = losses.cql_term(q, batch.action, online_out.action_mask)
    td_loss, cql_loss = td.mean(), cql.mean()
    loss = td_loss + cfg.cql_alpha * cql_loss if cfg.cql_alpha > 0 else td_loss
    metrics = {
        "loss": loss.detach(),
        "td_loss": td_loss.detach(),
        "cql_loss": cql_loss.detach(),  # the unweighted CQL term (before × α)
        "mean_q": q.detach()[rows, batch.action].mean(),  # Q at the data actions
        "feature_norm": online_out.feature_norm.mean(),
        **losses.value_diagnostics(q, online_out.action_mask),
    }
    if num_games is not None:
        metrics["cql_by_game"] = losses.group_means(cql, batch.game_id, num_games)
    return loss, metrics


@register
class ScaledQL(Learner):
    """Online + target ``ScaledQNetwork`` and Adam; ``update`` does one gradient step.

    ``distributed=True`` wraps the online network in DistributedDataParallel; the caller must
    have called ``torch.distributed.init_process_group`` (gloo on CPU, NCCL on GPU) and gives
    each process its share of the global batch.
    """

    name = "scaled-ql"
    config_class = ScaledQLConfig
    cfg: ScaledQLConfig

    def __init__(self, cfg: ScaledQLConfig, problem: Problem, device: torch.device | str = "cpu",
                 distributed: bool = False) -> None:
        super().__init__(cfg, problem, device, distributed)
        self.online = ScaledQNetwork(
            cfg.torso_spec(), problem.obs_shape, problem.num_actions,
            num_atoms=value_target_class(cfg.loss).outputs_per_action(cfg),
        ).to(self.device)
        forward = wrap_distributed(self.online, self.device) if distributed else self.online
        self.target = copy.deepcopy(self.online).requires_grad_(False).eval()
        self.optimizer = make_adam(self.online.parameters(), cfg.effective_lr, cfg.adam_eps,
                                   self.device)
        self._train_forward = maybe_compile(forward, cfg.compile, self.device)
        self._bf16 = resolve_bf16(cfg.bf16, self.device)
        # Under bf16, autocast would re-cast the fixed target weights on every forward (a
        # fifth of a CPU step for the Nature CNN); a bf16 copy, refreshed whenever the target
        # changes, gives the same products. It only ever runs inside the update's autocast.
        self._target_bf16 = copy.deepcopy(self.target).to(torch.bfloat16) if self._bf16 else None
        self._value_target = make_value_target(cfg, self.device)  # Q from the outputs (policy)
        # ln|A| per game, logged beside each game's CQL term: its value when Q is flat.
        self._cql_uniform = {f"cql_uniform/{g}": torch.tensor(math.log(a), device=self.device)
                             for g, a in zip(problem.games, problem.num_actions, strict=True)}

    @classmethod
    def tiny_config(cls) -> ScaledQLConfig:
        return cls.config_class(encoder="nature", width=0.25, feature_dim=16, batch_size=8,
                                num_atoms=11, target_update_period=2, cql_alpha=0.5, n_step=2,
                                lr=1e-3, lr_scaling="none", bf16=False)

    # -- the interface -------------------------------------------------------------------------
    def batch_spec(self) -> BatchSpec:
        return BatchSpec("transitions", self.cfg.batch_size, n_step=self.cfg.n_step,
                         gamma=self.cfg.gamma, reward_clip=self.cfg.reward_clip)

    @property
    def torso(self):
        return self.online.torso

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"online": self.online}

    def param_counts(self) -> dict[str, int]:
        """Online-network parameters by part (encoder, projection, heads, total)."""
        return self.online.param_counts()

    def parts(self) -> dict[str, list[torch.nn.Parameter]]:
        return self.online.parts()

    def update(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        """One gradient step on a transition batch (tensors on the device; numpy is moved).

        Returns 0-d tensors on the device: loss, td_loss, cql_loss, mean_q, feature_norm
        (pre-normalization L2 norm), q_spread, action_gap, ``cql_loss/<game>`` per game beside
        ``cql_uniform/<game>`` (ln|A|),
        grad_norm (before clipping). Copies online → target every
        ``target_update_period`` steps.
        """
        t = as_tensors(batch, self.device)
        self.online.train()
        loss, metrics = self._objective(t, self._train_forward)
        by_game = metrics.pop("cql_by_game")
        metrics.update({f"cql_loss/{g}": by_game[i] for i, g in enumerate(self.problem.games)})
        metrics.update(self._cql_uniform)
        metrics["grad_norm"] = gradient_step(self.optimizer, loss, self.online.parameters(),
                                             self.cfg.grad_clip)
        self.step += 1
        if self.step % self.cfg.target_update_period == 0:
            self.sync_target()
        return metrics

    def _objective(self, t: TransitionBatch, forward: Any
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``scaled_ql_loss`` on tensors ``t``, the online net at s run by ``forward``."""
        with self._autocast():
            online_out = forward(t.obs, t.game_id)
            with torch.no_grad():
                # Plain module (not DDP) for the gradient-free passes: no collective needed.
                next_online_out = self.online(t.next_obs, t.game_id) if self.cfg.double_q else None
                target_net = self._target_bf16 if self._target_bf16 is not None else self.target
                target_out = target_net(t.next_obs, t.game_id)
        return scaled_ql_loss(online_out, target_out, next_online_out, t, self.cfg,
                              len(self.problem.games))

    @torch.no_grad()
    def held_out_losses(self, batch: TransitionBatch) -> dict[str, float]:
        """loss, td_loss and cql_loss (the update's objective, against the current target
        network) on a batch not stepped on, the online network in eval mode."""
        t = as_tensors(batch, self.device)
        with eval_mode(self.online):
            _, metrics = self._objective(t, self.online)
        return {k: float(metrics[k]) for k in ("loss", "td_loss", "cql_loss")}

    def sync_target(self) -> None:
        """Hard copy of the online weights into the target network."""
        self.target.load_state_dict(self.online.state_dict())
        self._refresh_target_bf16()

    def _refresh_target_bf16(self) -> None:
        if self._target_bf16 is not None:
            self._target_bf16.load_state_dict(self.target.state_dict())  # casts to bf16

    @torch.no_grad()
    def q_values(self, obs: torch.Tensor, game_id: int | torch.Tensor) -> torch.Tensor:
        """Expected Q-values of the online net. obs: uint8[B, S*C, H, W] → float32[B, A_max];
        actions the game lacks are -inf."""
        obs = torch.as_tensor(obs).to(self.device)
        ids = torch.as_tensor(game_id, dtype=torch.int64, device=self.device)
        ids = ids.expand(obs.shape[0]) if ids.dim() == 0 else ids
        with eval_mode(self.online), self._autocast():
            out = self.online(obs, ids)
        values = self._value_target.q_values(out.values.float())
        return values.masked_fill(~out.action_mask, float("-inf"))

    def policy(self) -> Policy:
        return GreedyPolicy(self.q_values, self.problem.games, self.problem.num_actions,
                            self.device)

    def state_dict(self) -> dict[str, Any]:
        """Online and target weights, optimizer state and step (tensors; torch.save-able)."""
        return {"online": self.online.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self._refresh_target_bf16()
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
