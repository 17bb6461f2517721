"""The online DQN that generates DQN-Replay-style behaviour data (Dopamine's DQN, CPU-sized).

It is the Scaled QL learner with DQN's choices: scalar Q with a Huber TD loss, double-Q
bootstrap, 1-step returns, no CQL, no feature normalization, a fixed learning rate. The online
loop (``training/online.py``) supplies its schedule: replay, ε decay, update period.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaledql.agents.registry import register
from scaledql.agents.scaled_ql import ScaledQL, ScaledQLConfig


@dataclass
class DQNConfig(ScaledQLConfig):
    """Double DQN defaults (Mnih et al. 2015 / Dopamine), scaled down for a CPU."""

    encoder: str = "nature"
    width: float = 0.5
    feature_dim: int = 256
    feature_norm: bool = False
    loss: str = "mse"
    huber_delta: float | None = 1.0
    cql_alpha: float = 0.0
    n_step: int = 1
    lr: float = 5e-4
    lr_batch_size: int = 32
    lr_scaling: str = "none"
    batch_size: int = 32
    adam_eps: float = 1.5e-4
    target_update_period: int = 1_000


@register
class DQN(ScaledQL):
    name = "dqn"
    config_class = DQNConfig
    summary = "double DQN (scalar Huber TD, no CQL): the online learner that collects data"

    @classmethod
    def tiny_config(cls) -> DQNConfig:
        return DQNConfig(width=0.25, feature_dim=16, batch_size=8, target_update_period=2,
                         lr=1e-3)
