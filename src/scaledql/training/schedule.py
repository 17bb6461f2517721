"""How an online learner interacts with its games: replay size, update period, ε decay.

Its own module, torch-free, so that ``collect`` and ``finetune online`` can show these defaults
in ``--help`` without loading the online loop (which imports torch through the policies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaledql.errors import UserError


@dataclass
class OnlineSchedule:
    """How an online learner interacts (Dopamine's DQN, scaled down for CPUs).

    ``update_period`` counts environment transitions per gradient step; ε decays linearly from
    ``epsilon_start`` to ``epsilon_end`` over ``epsilon_decay_steps`` transitions.
    """

    replay_capacity: int = 100_000
    learning_starts: int = 2_000
    update_period: int = 4
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_steps: int = 25_000

    def epsilon(self, step: int) -> float:
        frac = min(1.0, step / max(1, self.epsilon_decay_steps))
        return self.epsilon_start + frac * (self.epsilon_end - self.epsilon_start)

    def validate(self) -> OnlineSchedule:
        for name in ("replay_capacity", "update_period", "epsilon_decay_steps"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.learning_starts < 0:
            raise UserError(f"learning-starts must be >= 0, got {self.learning_starts}")
        for name in ("epsilon_start", "epsilon_end"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise UserError(f"{name.replace('_', '-')} must be in [0, 1], got {value}")
        return self
