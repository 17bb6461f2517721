"""Behaviour cloning: the Scaled QL network trained to predict the data's actions (a ``Learner``).

The paper's multi-game BC baseline gives no details; the natural reading (next to its
multi-game Decision Transformer baseline) is the *same* network as Scaled QL — torso (encoder →
projection + ReLU → feature norm) and one linear head per game — with one logit per action and a
cross-entropy on the data actions. Keeping the architecture and optimizer settings of Scaled QL
makes the comparison one of objectives only. Defaults and their sources:
``docs/defaults_bc_mae.md``.
"""

from __future__ import annotations

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
from scaledql.agents.configs import BCConfig
from scaledql.agents.optimization import gradient_step
from scaledql.agents.registry import register
from scaledql.data.sampling.sampler import TransitionBatch
from scaledql.models import ScaledQNetwork
from scaledql.policies import GreedyPolicy, Policy


@register
class BehaviourCloning(Learner):
    """``ScaledQNetwork`` with one logit per action, cross-entropy on the data actions, Adam.

    ``distributed=True`` wraps the network in DistributedDataParallel (the process group must
    exist; each process gets its share of the global batch).
    """

    name = "bc"
    config_class = BCConfig
    cfg: BCConfig

    def __init__(self, cfg: BCConfig, problem: Problem, device: torch.device | str = "cpu",
                 distributed: bool = False) -> None:
        super().__init__(cfg, problem, device, distributed)
        self.network = ScaledQNetwork(cfg.torso_spec(), problem.obs_shape, problem.num_actions,
                                      num_atoms=None).to(self.device)
        forward = wrap_distributed(self.network, self.device) if distributed else self.network
        self.optimizer = make_adam(self.network.parameters(), cfg.effective_lr, cfg.adam_eps,
                                   self.device)
        self._train_forward = maybe_compile(forward, cfg.compile, self.device)
        self._bf16 = resolve_bf16(cfg.bf16, self.device)

    @classmethod
    def tiny_config(cls) -> BCConfig:
        return cls.config_class(encoder="nature", width=0.25, feature_dim=16, batch_size=8,
                                lr=1e-3, lr_scaling="none", bf16=False)

    # -- the interface -------------------------------------------------------------------------
    def batch_spec(self) -> BatchSpec:
        # Only obs, action and game_id are read; 1-step transitions are the cheapest batch.
        return BatchSpec("transitions", self.cfg.batch_size, n_step=1)

    @property
    def torso(self):
        return self.network.torso

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"network": self.network}

    def param_counts(self) -> dict[str, int]:
        """Network parameters by part (encoder, projection, heads, total)."""
        return self.network.param_counts()

    def parts(self) -> dict[str, list[torch.nn.Parameter]]:
        return self.network.parts()

    def update(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        """One gradient step on a transition batch (tensors on the device; numpy is moved).

        Returns 0-d tensors on the device: loss (mean cross-entropy), accuracy (greedy action
        equals the data action), entropy (of the policy over valid actions, nats),
        feature_norm (pre-normalization L2 norm), grad_norm (before clipping).
        """
        t = as_tensors(batch, self.device)
        self.network.train()
        with self._autocast():
            out = self._train_forward(t.obs, t.game_id)
        logits = out.values.float()  # the loss in float32 even under bf16
        # Mean over the batch: DDP's gradient average then equals one big batch.
        loss = losses.bc_loss(logits, t.action, out.action_mask).mean()
        grad_norm = gradient_step(self.optimizer, loss, self.network.parameters(),
                                  self.cfg.grad_clip)
        self.step += 1
        with torch.no_grad():
            greedy = losses.masked_argmax(logits, out.action_mask)
            return {
                "loss": loss.detach(),
                "accuracy": (greedy == t.action).float().mean(),
                "entropy": losses.masked_entropy(logits, out.action_mask).mean(),
                "feature_norm": out.feature_norm.mean(),
                "grad_norm": grad_norm,
            }

    @torch.no_grad()
    def held_out_losses(self, batch: TransitionBatch) -> dict[str, float]:
        """loss (the update's mean cross-entropy) and accuracy on a batch not stepped on."""
        t = as_tensors(batch, self.device)
        with eval_mode(self.network), self._autocast():
            out = self.network(t.obs, t.game_id)
        logits = out.values.float()
        greedy = losses.masked_argmax(logits, out.action_mask)
        return {"loss": float(losses.bc_loss(logits, t.action, out.action_mask).mean()),
                "accuracy": float((greedy == t.action).float().mean())}

    @torch.no_grad()
    def action_logits(self, obs: torch.Tensor, game_id: int | torch.Tensor) -> torch.Tensor:
        """obs: uint8[B, S*C, H, W] → float32[B, A_max] logits; actions the game lacks are -inf."""
        obs = torch.as_tensor(obs).to(self.device)
        ids = torch.as_tensor(game_id, dtype=torch.int64, device=self.device)
        ids = ids.expand(obs.shape[0]) if ids.dim() == 0 else ids
        with eval_mode(self.network), self._autocast():
            out = self.network(obs, ids)
        return out.values.float().masked_fill(~out.action_mask, float("-inf"))

    def policy(self) -> Policy:
        """Greedy (most likely) action; evaluation's ε-greedy wrapper adds the exploration."""
        return GreedyPolicy(self.action_logits, self.problem.games, self.problem.num_actions,
                            self.device)

    def state_dict(self) -> dict[str, Any]:
        """Network weights, optimizer state and step (tensors; torch.save-able)."""
        return {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
