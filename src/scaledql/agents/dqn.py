"""The online DQN that generates DQN-Replay-style behaviour data (Dopamine's DQN, CPU-sized).

It is the Scaled QL learner with DQN's choices: scalar Q with a Huber TD loss, double-Q
bootstrap, 1-step returns, no CQL, no feature normalization, a fixed learning rate. The online
loop (``training/online_loop.py``) supplies its schedule: replay, ε decay, update period.
"""

from __future__ import annotations

from scaledql.agents.configs import DQNConfig
from scaledql.agents.registry import register
from scaledql.agents.scaled_ql import ScaledQL


@register
class DQN(ScaledQL):
    name = "dqn"
    config_class = DQNConfig

    @classmethod
    def tiny_config(cls) -> DQNConfig:
        return DQNConfig(width=0.25, feature_dim=16, batch_size=8, target_update_period=2,
                         lr=1e-3)
