"""Per-game output heads with per-sample routing by game id.

Batches mix games and games have different action counts. Every game has its own linear head;
all heads are applied to every sample as one matrix product (their weights concatenated), and
each sample then picks its own game's slice. Computing all heads costs little next to the
encoder, keeps the forward free of data-dependent Python branches, and gives every parameter a
gradient each step (absent games get zeros), which DistributedDataParallel requires.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class MultiGameHeads(nn.Module):
    """features float[B, D], game_id int64[B] → values float[B, A_max, N] (or [B, A_max]).

    ``num_atoms=None`` gives one scalar per action (the mse variant); otherwise ``num_atoms``
    logits per action (C51). Actions ``a ≥ num_actions[game]`` are padding: their values are
    meaningless and ``action_mask(game_id)`` marks them False.
    """

    def __init__(self, in_dim: int, num_actions: Sequence[int], num_atoms: int | None) -> None:
        super().__init__()
        if not num_actions or min(num_actions) < 1:
            raise ValueError(f"every game needs at least one action, got {list(num_actions)}")
        self.num_actions = [int(a) for a in num_actions]
        self.num_atoms = num_atoms
        per_action = num_atoms or 1
        self.heads = nn.ModuleList(nn.Linear(in_dim, a * per_action) for a in self.num_actions)
        max_actions = max(self.num_actions)
        # column[g, a, n]: where (game g, action a, atom n) sits in the concatenated output.
        # Padded actions point at the game's first column; they are masked downstream.
        columns = torch.zeros(len(self.num_actions), max_actions, per_action, dtype=torch.long)
        mask = torch.zeros(len(self.num_actions), max_actions, dtype=torch.bool)
        offset = 0
        for g, a in enumerate(self.num_actions):
            columns[g, :a] = offset + torch.arange(a * per_action).view(a, per_action)
            columns[g, a:] = offset
            mask[g, :a] = True
            offset += a * per_action
        self.register_buffer("columns", columns.flatten(1), persistent=False)
        self.register_buffer("mask", mask, persistent=False)
        self._out_shape = (max_actions, per_action) if num_atoms else (max_actions,)

    def action_mask(self, game_id: torch.Tensor) -> torch.Tensor:
        """bool[B, A_max]: True where the sample's game has that action."""
        return self.mask[game_id]

    def forward(self, features: torch.Tensor, game_id: torch.Tensor) -> torch.Tensor:
        weight = torch.cat([h.weight for h in self.heads])
        bias = torch.cat([h.bias for h in self.heads])
        every_head = F.linear(features, weight, bias)  # [B, Σ_g A_g · N]
        mine = every_head.gather(1, self.columns[game_id])  # [B, A_max · N]
        return mine.view(features.shape[0], *self._out_shape)
