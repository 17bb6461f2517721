"""Learned spatial embeddings: the Scaled QL replacement for global average pooling.

Average pooling throws away *where* things are on the screen, which matters in Atari. Instead
each channel gets ``F`` learned spatial filters over the whole feature map:
``out[b, c, f] = Σ_{h, w} x[b, c, h, w] · K[h, w, c, f]``, flattened to ``C · F`` features.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SpatialEmbedding(nn.Module):
    """x: float[B, C, H, W] → float[B, C · F] (F = ``num_features``, 8 in the authors' encoder)."""

    def __init__(self, height: int, width: int, channels: int, num_features: int = 8) -> None:
        super().__init__()
        self.num_features = num_features
        # Kernel laid out (H, W, C, F) as in the method's description. Each output sums over H·W
        # inputs, so a normal with std 1/sqrt(H·W) keeps its scale near the input's (LeCun).
        self.kernel = nn.Parameter(
            torch.randn(height, width, channels, num_features) / math.sqrt(height * width)
        )
        self.output_dim = channels * num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("bchw,hwcf->bcf", x, self.kernel)
        return out.flatten(1)
