"""The categorical value targets: ``num_atoms`` logits per action, Q their softmax's mean, the
TD loss a cross-entropy against a target distribution. They differ in the target only:

- ``c51``: the distribution ``r + γ^k Z'`` of the target network, projected onto the atoms
  ``z = linspace(v_min, v_max, N)`` (Bellemare et al. 2017; the paper's backup);
- ``hl-gauss`` and ``two-hot``: the scalar backup ``y = r + γ^k Q_target(s', a*)`` turned into
  probabilities over N equal bins of [v_min, v_max] (centres ``v_min + (i + ½)·w``, bin width
  ``w = (v_max − v_min) / N``), smoothed by a Gaussian (Farebrother et al. 2024) or split
  between its two nearest centres.

The math is in ``scaledql.losses`` (pure functions, checked by hand in ``tests/test_losses.py``).
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from scaledql import losses
from scaledql.value_targets import register_value_target
from scaledql.value_targets.base import TargetOptions, ValueTarget


@register_value_target
class C51(ValueTarget):
    """Distributional C51: the target network's distribution at the bootstrap action, shifted
    by ``r + γ^k z`` and projected onto the fixed atoms."""

    name = "c51"

    def __init__(self, options: TargetOptions, device: torch.device | str | None = None) -> None:
        super().__init__(options, device)
        self.support = losses.make_support(options.v_min, options.v_max, options.num_atoms,
                                           device=device)  # [N]

    def q_values(self, outputs: torch.Tensor) -> torch.Tensor:
        return losses.expected_q(outputs, self.support)

    def td_target(self, reward: torch.Tensor, discount: torch.Tensor,
                  next_outputs: torch.Tensor) -> torch.Tensor:
        """float[B, N]: the projected distribution of ``reward + discount · Z'``."""
        next_probs = torch.softmax(next_outputs, dim=-1)
        return losses.categorical_projection(next_probs, reward, discount, self.support)

    def td_loss(self, outputs_at_action: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return losses.cross_entropy_td_loss(outputs_at_action, target)


class HistogramTarget(ValueTarget):
    """A histogram loss (Imani & White 2018): the scalar TD target ``y`` as probabilities over
    ``num_atoms`` equal bins of [v_min, v_max]; Q is the mean of the softmax over the bin
    centres. A subclass says how ``y`` becomes probabilities (``scalar_to_probs``)."""

    def __init__(self, options: TargetOptions, device: torch.device | str | None = None) -> None:
        super().__init__(options, device)
        self.edges = losses.histogram_edges(options.v_min, options.v_max, options.num_atoms,
                                            device=device)  # [N + 1]
        self.centres = losses.bin_centres(self.edges)  # [N]
        self.bin_width = (options.v_max - options.v_min) / options.num_atoms

    def q_values(self, outputs: torch.Tensor) -> torch.Tensor:
        return losses.expected_q(outputs, self.centres)

    def td_target(self, reward: torch.Tensor, discount: torch.Tensor,
                  next_outputs: torch.Tensor) -> torch.Tensor:
        """float[B, N]: ``scalar_to_probs(reward + discount · Q_target(s', a*))``."""
        next_q = losses.expected_q(next_outputs, self.centres)
        return self.scalar_to_probs(losses.scalar_td_target(reward, discount, next_q))

    @abstractmethod
    def scalar_to_probs(self, target: torch.Tensor) -> torch.Tensor:
        """Scalar targets float[B] → probabilities over the bins float[B, N], rows summing to 1."""

    def td_loss(self, outputs_at_action: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return losses.cross_entropy_td_loss(outputs_at_action, target)


@register_value_target
class HLGauss(HistogramTarget):
    """HL-Gauss: the bin probabilities of N(y, σ²), σ = ``hl_gauss_sigma_ratio`` × bin width,
    renormalized over the support (y clipped to it first)."""

    name = "hl-gauss"

    def scalar_to_probs(self, target: torch.Tensor) -> torch.Tensor:
        sigma = self.options.hl_gauss_sigma_ratio * self.bin_width
        return losses.hl_gauss_probs(target, self.edges, sigma)


@register_value_target
class TwoHot(HistogramTarget):
    """Two-hot: y (clipped to the outermost centres) split between its two nearest centres,
    so that the target distribution's mean is y."""

    name = "two-hot"

    def scalar_to_probs(self, target: torch.Tensor) -> torch.Tensor:
        return losses.two_hot_probs(target, self.centres)
