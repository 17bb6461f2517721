"""The value-target interface: one seam between a Q-learner and what its network outputs.

A value target says three things, each a pure function of tensors (no network, no optimizer):

- ``q_values``: Q from the network's outputs per action;
- ``td_target``: the target of one backup, from the rewards, the bootstrap discounts and the
  target network's outputs at the bootstrap action (which the learner picks: double-Q or not);
- ``td_loss``: the per-sample loss of the online outputs at the data action against it.

Conventions: ``B`` batch, ``A`` actions (padded; the learner masks padding), ``N`` outputs per
action (``outputs_per_action``). A target with ``outputs_per_action(...) is None`` has one
scalar per action: its tensors lack the trailing ``N`` axis (``[B, A]``, ``[B]``).
``discount`` is the bootstrap factor ``γ^k · (1 − done)``: 0 where the episode terminated, so
the target is then the reward alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Protocol

import torch


class TargetOptions(Protocol):
    """The learner options a value target reads (``agents.configs.ScaledQLConfig`` has them)."""

    loss: str  # the value target's registered name
    num_atoms: int  # outputs per action of the categorical targets
    v_min: float  # the support's ends
    v_max: float
    huber_delta: float | None  # mse: None = squared error, a number = Huber
    hl_gauss_sigma_ratio: float  # hl-gauss: σ as a multiple of the bin width


class ValueTarget(ABC):
    """What the network outputs per action and how a TD backup trains it.

    A subclass sets ``name`` (what ``--loss`` says) and is registered with
    ``scaledql.value_targets.register_value_target``; it is built once per loss computation
    from the learner's options (``__init__(options, device)``), so it must be cheap to build.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""

    def __init__(self, options: TargetOptions, device: torch.device | str | None = None) -> None:
        self.options = options
        self.device = device

    @classmethod
    def outputs_per_action(cls, options: TargetOptions) -> int | None:
        """N, the network's outputs per action; None for one scalar per action."""
        return options.num_atoms

    @abstractmethod
    def q_values(self, outputs: torch.Tensor) -> torch.Tensor:
        """Q from the outputs: float[..., A, N] (scalar: float[..., A]) → float[..., A]."""

    @abstractmethod
    def td_target(self, reward: torch.Tensor, discount: torch.Tensor,
                  next_outputs: torch.Tensor) -> torch.Tensor:
        """The target of the backup, without gradient.

        reward, discount: float[B]; next_outputs: the target network's outputs at the bootstrap
        action, float[B, N] (scalar: float[B]) → what ``td_loss`` takes as its target.
        """

    @abstractmethod
    def td_loss(self, outputs_at_action: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample TD loss: the online outputs at the data action, float[B, N] (scalar:
        float[B]), against ``td_target``'s target → float[B]."""
