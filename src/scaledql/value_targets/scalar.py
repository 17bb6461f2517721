"""The scalar value target: one output per action, Q itself, regressed onto the scalar backup
``r + γ^k Q_target(s', a*)`` (the paper's MSE ablation; with ``huber_delta`` DQN's Huber loss)."""

from __future__ import annotations

import torch

from scaledql import losses
from scaledql.value_targets import register_value_target
from scaledql.value_targets.base import TargetOptions, ValueTarget


@register_value_target
class MSE(ValueTarget):
    """Scalar Q regression: ½ squared error, or Huber with ``huber_delta``."""

    name = "mse"

    @classmethod
    def outputs_per_action(cls, options: TargetOptions) -> int | None:
        return None

    def q_values(self, outputs: torch.Tensor) -> torch.Tensor:
        """The outputs are the Q-values: float[..., A] → the same tensor."""
        return outputs

    def td_target(self, reward: torch.Tensor, discount: torch.Tensor,
                  next_outputs: torch.Tensor) -> torch.Tensor:
        """float[B]: ``reward + discount · Q_target(s', a*)``."""
        return losses.scalar_td_target(reward, discount, next_outputs)

    def td_loss(self, outputs_at_action: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return losses.mse_td_loss(outputs_at_action, target, self.options.huber_delta)
