"""The Scaled QL network: a ``Torso`` (encoder → projection + ReLU → feature norm) → game heads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from scaledql.models.heads import MultiGameHeads
from scaledql.models.torso import Torso, TorsoSpec


class NetworkOutput(NamedTuple):
    """What one forward pass returns (B samples, A_max actions, N atoms)."""

    values: torch.Tensor  # float[B, A_max, N] (a categorical value target), or float[B, A_max]
    action_mask: torch.Tensor  # bool[B, A_max], False for actions the sample's game lacks
    feature_norm: torch.Tensor  # float[B], L2 norm of the features *before* normalization


class ScaledQNetwork(nn.Module):
    """obs uint8[B, C, H, W], game_id int64[B] → ``NetworkOutput``.

    ``spec`` builds the torso (``self.torso``); the per-game heads are ``self.heads``.
    ``num_atoms=None`` makes one scalar per action (scalar Q, or the action logits of behaviour
    cloning).
    """

    def __init__(self, spec: TorsoSpec, obs_shape: Sequence[int], num_actions: Sequence[int],
                 num_atoms: int | None = 51) -> None:
        super().__init__()
        self.torso = Torso(spec, obs_shape)
        self.heads = MultiGameHeads(spec.feature_dim, num_actions, num_atoms)

    def forward(self, obs: torch.Tensor, game_id: torch.Tensor) -> NetworkOutput:
        features, norm = self.torso(obs)
        return NetworkOutput(self.heads(features, game_id), self.heads.action_mask(game_id), norm)

    def parts(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by part: encoder, projection, head weights, head biases (the per-action
        biases are their own part: Adam moves them at full speed when the weights' steps are
        ε-dominated, ``training/diagnostics.py``)."""
        heads = [(n, p) for n, p in self.heads.named_parameters()]
        projection = list(self.torso.projection.parameters())
        if isinstance(self.torso.feature_scale, nn.Parameter):
            projection.append(self.torso.feature_scale)
        return {"encoder": list(self.torso.encoder.parameters()),
                "projection": projection,
                "heads": [p for n, p in heads if not n.endswith("bias")],
                "head_bias": [p for n, p in heads if n.endswith("bias")]}

    def param_counts(self) -> dict[str, int]:
        """Parameter counts by part: encoder, projection, heads, total."""
        parts = {"encoder": self.torso.encoder, "projection": self.torso.projection,
                 "heads": self.heads}
        counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
        counts["total"] = sum(counts.values())
        return counts
