"""The Scaled QL network: encoder → dense projection + ReLU → feature normalization → game heads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from scaledql.models.encoders import make_encoder
from scaledql.models.heads import MultiGameHeads


class NetworkOutput(NamedTuple):
    """What one forward pass returns (B samples, A_max actions, N atoms)."""

    values: torch.Tensor  # float[B, A_max, N] C51 logits, or float[B, A_max] Q for the mse variant
    action_mask: torch.Tensor  # bool[B, A_max], False for actions the sample's game lacks
    feature_norm: torch.Tensor  # float[B], L2 norm of the features *before* normalization


class ScaledQNetwork(nn.Module):
    """obs uint8[B, C, H, W], game_id int64[B] → ``NetworkOutput``.

    Observations are multiplied by ``obs_scale`` here (1/255: Atari pixels and MinAtar's 0/255
    cells), so callers pass raw uint8, 4× cheaper to move to a device than float.
    ``feature_norm=True`` divides the penultimate features by their L2 norm (no learned scale),
    the Scaled QL stabilizer; ``num_atoms=None`` makes scalar-Q heads. ``encoder_layout``
    picks a ResNet's downsampling layout (``make_encoder``'s ``layout``; None = its default).
    """

    def __init__(
        self,
        encoder: str,
        obs_shape: Sequence[int],
        num_actions: Sequence[int],
        width: float = 1.0,
        feature_dim: int = 512,
        feature_norm: bool = True,
        num_atoms: int | None = 51,
        channels_last: bool = False,
        obs_scale: float = 1.0 / 255.0,
        encoder_layout: str | None = None,
    ) -> None:
        super().__init__()
        self.obs_scale = obs_scale
        in_channels, height, width_px = (int(s) for s in obs_shape)
        self.encoder = make_encoder(
            encoder, in_channels, (height, width_px), width, layout=encoder_layout
        )
        self.projection = nn.Linear(self.encoder.output_shape[0], feature_dim)
        self.heads = MultiGameHeads(feature_dim, num_actions, num_atoms)
        self.feature_norm = feature_norm
        self.channels_last = channels_last
        if channels_last:
            self.encoder.to(memory_format=torch.channels_last)

    def forward(self, obs: torch.Tensor, game_id: torch.Tensor) -> NetworkOutput:
        # Under autocast go straight to the low-precision dtype: one conversion pass, not two.
        device = obs.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
        x = obs.to(dtype).mul_(self.obs_scale)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features = torch.relu(self.projection(self.encoder(x)))
        norm = features.detach().float().norm(dim=1)
        if self.feature_norm:
            features = F.normalize(features, dim=1, eps=1e-6)
        return NetworkOutput(self.heads(features, game_id), self.heads.action_mask(game_id), norm)

    def param_counts(self) -> dict[str, int]:
        """Parameter counts by part: encoder, projection, heads, total."""
        parts = {"encoder": self.encoder, "projection": self.projection, "heads": self.heads}
        counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
        counts["total"] = sum(counts.values())
        return counts
