"""The multi-game Decision Transformer (Lee et al. 2022), the paper's DT baseline, as a ``Learner``.

The network is ``models/transformer.py``; the tokenization and the loss are pure functions in
``losses.py`` (section "Decision Transformer"); expert-action inference is
``agents/dt_policy.py``. Sources: the authors' release (google-research ``multi_game_dt``
colab) and the Scaled QL paper's description of its DT baseline.

Data (a ``TrajectoryBatch`` of ``context`` steps):
- frames: the newest frame of each stacked observation (its last ``frame_channels`` channels):
  one 84×84 grayscale frame per step for Atari, the 10×10×10 grid for MinAtar;
- returns-to-go: the batch's ``return_to_go``, i.e. the stored return from the step to the
  episode's end. We rely on it being a sum of clipped rewards, as the release's returns are:
  DQN Replay stores rewards already clipped to ±1 and MinAtar rewards are 0/1. A store of raw
  Atari rewards (``rewards_clipped`` false) would give raw returns here, only bounded by the
  clip to [rtg_min, rtg_max] (a clipped return-to-go needs the whole episode, which a window
  does not have: that would belong in the store or the sampler);
- rewards: only their sign is used (4 classes with "terminal" from ``terminal``), so the
  sampler's reward clipping is irrelevant and ``batch_spec`` asks for raw rewards.

Values and their sources — release: ``context`` 4, dropout 0.1, key size 64 (heads =
d_model/64), the Atari return range [−20, 100], ``single_return_token`` (only the window's first
return-to-go is an input and a target), 4 reward classes, inference with 128 return samples,
return inverse temperature 0.75, action inverse temperature 1, action top percentile 50, κ = 0
(the release's demo; the paper's κ is unconfirmed). Chosen here: the sizes (d_model 128, 2
layers: CPU scale; the release model is d_model 1280, 10 layers), AdamW (the paper trained with
LAMB) with lr 3e-4, weight decay 0.01 on weight matrices only, linear warm-up over 500 steps,
global-norm clipping at 1.0; ``action_inputs = False`` is ours, a check for copying the previous
action (default: the release's past actions as inputs; docs/defaults.md). For MinAtar we suggest ``rtg_min = 0, rtg_max = 50``
(``agents.configs.MINATAR_RTG_RANGE``): its rewards are never negative, and the mean returns of this
project's CPU-budget reference agents are below 25 (``suites/scores.py``), so behaviour data
rarely reach 50; larger returns saturate the top class. Patching: 14×14 for Atari (release), 5×5 for MinAtar (4 tokens of 250 values; see
``models.transformer.default_patch_size``).

Dropout draws from torch's global generator, which the training loop checkpoints.
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
    maybe_compile,
    resolve_bf16,
    wrap_distributed,
)
from scaledql.agents.configs import DecisionTransformerConfig
from scaledql.agents.dt_policy import DecisionTransformerPolicy
from scaledql.agents.optimization import gradient_step
from scaledql.agents.registry import register
from scaledql.data.sampling.sampler import TrajectoryBatch
from scaledql.errors import UserError
from scaledql.models.transformer import (
    DecisionTransformerNet,
    DTOutput,
    default_patch_size,
    patch_grid,
)
from scaledql.policies import Policy


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on the weight matrices of linear and convolution layers only (the GPT
    convention: not on biases, LayerNorms, embeddings or position tables)."""
    decay = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)}
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if id(p) in decay], "weight_decay": weight_decay},
            {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0}]


@register
class DecisionTransformer(Learner):
    """``DecisionTransformerNet`` trained with AdamW on trajectory windows; see the module
    docstring. ``distributed=True`` wraps the network in DistributedDataParallel."""

    name = "dt"
    config_class = DecisionTransformerConfig
    cfg: DecisionTransformerConfig

    def __init__(self, cfg: DecisionTransformerConfig, problem: Problem,
                 device: torch.device | str = "cpu", distributed: bool = False) -> None:
        super().__init__(cfg, problem, device, distributed)
        c = problem.frame_channels
        _, h, w = problem.obs_shape
        self.frame_shape = (c, h, w)
        patch = cfg.patch_size if cfg.patch_size is not None else default_patch_size(h, w)
        try:
            patch_grid(self.frame_shape, patch)
        except ValueError as exc:
            raise UserError(f"dt: {exc} (set patch_size)") from None
        self.model = DecisionTransformerNet(
            self.frame_shape, problem.num_actions, num_returns=cfg.num_returns,
            d_model=cfg.d_model, num_layers=cfg.num_layers, num_heads=cfg.heads,
            context=cfg.context, patch_size=patch, dropout=cfg.dropout,
            single_return_token=cfg.single_return_token, obs_scale=cfg.obs_scale,
            action_inputs=cfg.action_inputs,
        ).to(self.device)  # fmt: skip
        forward = wrap_distributed(self.model, self.device) if distributed else self.model
        self._train_forward = maybe_compile(forward, cfg.compile, self.device)
        self._bf16 = resolve_bf16(cfg.bf16, self.device)
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, cfg.weight_decay), lr=cfg.lr, eps=cfg.adam_eps,
            fused=self.device.type in ("cpu", "cuda"))

    @classmethod
    def tiny_config(cls) -> DecisionTransformerConfig:
        # No dropout: the conformance test's DDP check (two half batches = one union batch)
        # needs an update without random draws; tests/test_decision_transformer.py covers it.
        return cls.config_class(d_model=32, num_layers=1, num_heads=2, context=3, batch_size=8,
                                lr=1e-3, warmup_steps=2, return_samples=16, dropout=0.0, bf16=False)

    # -- the interface -------------------------------------------------------------------------
    def batch_spec(self) -> BatchSpec:
        # Raw rewards: the reward classes use only their sign (module docstring).
        return BatchSpec("trajectories", self.cfg.batch_size, length=self.cfg.context,
                         reward_clip=None)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._bf16)

    def learning_rate(self, step: int) -> float:
        """The learning rate of gradient step ``step`` (0-based): linear warm-up, then ``lr``."""
        if self.cfg.warmup_steps == 0:
            return self.cfg.lr
        return self.cfg.lr * min(1.0, (step + 1) / self.cfg.warmup_steps)

    def _forward(self, t: TrajectoryBatch, forward: torch.nn.Module
                 ) -> tuple[DTOutput, torch.Tensor, torch.Tensor]:
        """The network on a batch of tensors, teacher-forced: (its outputs, the return and reward
        classes it was given)."""
        frames = t.obs[:, :, -self.frame_shape[0]:]  # the newest frame of each stack
        returns = losses.encode_returns(t.return_to_go, self.cfg.rtg_min, self.cfg.rtg_max)
        rewards = losses.encode_rewards(t.reward, t.terminal)
        with self._autocast():
            out = forward(frames, returns, t.action, rewards)
        return out, returns, rewards

    def _loss(self, batch: TrajectoryBatch, forward: torch.nn.Module
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        t = as_tensors(batch, self.device)
        out, returns, rewards = self._forward(t, forward)
        return losses.dt_loss(
            out.return_logits, out.action_logits, out.reward_logits, returns, t.action, rewards,
            t.mask, self.model.action_mask[t.game_id], self.cfg.single_return_token)

    @torch.no_grad()
    def teacher_forced_logits(self, batch: TrajectoryBatch) -> torch.Tensor:
        """float32[B, L, A_max] action logits at every step of a trajectory batch, given the
        data's own returns, past actions and rewards (no dropout); -inf for actions a game
        lacks. Their argmax is what ``action_accuracy`` scores; an analysis can split it by
        state (e.g. where the data repeats its previous action)."""
        t = as_tensors(batch, self.device)
        with eval_mode(self.model):
            out = self._forward(t, self.model)[0]
        mask = self.model.action_mask[t.game_id][:, None, :]
        return out.action_logits.float().masked_fill(~mask, float("-inf"))

    def update(self, batch: TrajectoryBatch) -> dict[str, torch.Tensor]:
        """One gradient step on a trajectory batch (tensors on the device; numpy is moved).

        Returns 0-d tensors on the device: loss, action_loss, return_loss, reward_loss,
        action_accuracy, grad_norm (before clipping).
        """
        cfg = self.cfg
        self.model.train()
        loss, metrics = self._loss(batch, self._train_forward)
        # the warm-up schedule's rate for this step, set after clipping as before
        metrics["grad_norm"] = gradient_step(self.optimizer, loss, self.model.parameters(),
                                             cfg.grad_clip, lr=self.learning_rate(self.step))
        self.step += 1
        return metrics

    @torch.no_grad()
    def evaluate_loss(self, batch: TrajectoryBatch) -> dict[str, torch.Tensor]:
        """The metrics of ``update`` on a batch without learning (no dropout): validation."""
        with eval_mode(self.model):
            return self._loss(batch, self.model)[1]

    def policy(self, seed: int | None = None,
               inference: DecisionTransformerConfig | None = None) -> Policy:
        """Expert-action inference (``DecisionTransformerPolicy``), sampling from a generator
        seeded with ``seed`` (default: the config's), so an evaluation is reproducible.
        ``inference`` replaces the config the policy reads (its return and action rules), e.g.
        ``dataclasses.replace(learner.cfg, action_top_percentile=100.0)`` for argmax actions."""
        cfg = self.cfg if inference is None else inference
        return DecisionTransformerPolicy(
            self.model, cfg, self.problem.games, self.problem.num_actions, self.device,
            seed=cfg.seed if seed is None else seed, autocast=self._autocast)

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimizer state and step (the warm-up schedule is a function of the step)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
