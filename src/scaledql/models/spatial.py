"""Learned spatial embeddings: the Scaled QL replacement for global average pooling.

Average pooling throws away *where* things are on the screen, which matters in Atari. Instead
each channel gets ``F`` learned spatial filters over the whole feature map:
``out[b, c, f] = Σ_{h, w} x[b, c, h, w] · K[h, w, c, f]``, flattened to ``C · F`` features.
"""

from __future__ import annotations

import torch
from torch import nn

from scaledql.models.init import variance_scaling_


class SpatialEmbedding(nn.Module):
    """x: float[B, C, H, W] → float[B, C · F] (F = ``num_features``).

    The authors' encoder uses F = 8 after basic-block ResNets and F = 4 after bottleneck ones
    (Asap7772/PTR, ``pixel_cql_learner.py``); ``ResNetEncoder`` picks it.
    """

    def __init__(self, height: int, width: int, channels: int, num_features: int = 8) -> None:
        super().__init__()
        self.num_features = num_features
        # Kernel laid out (H, W, C, F) as in the method's description and the authors' Flax
        # module, whose default init is LeCun normal; Flax counts the fan-in of an (H, W, C, F)
        # kernel as H·W·C (all axes but the last), so std = 1/sqrt(H·W·C), truncated at ±2σ.
        self.kernel = nn.Parameter(torch.empty(height, width, channels, num_features))
        variance_scaling_(self.kernel, 1.0, height * width * channels)
        self.output_dim = channels * num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.einsum("bchw,hwcf->bcf", x, self.kernel)
        return out.flatten(1)
