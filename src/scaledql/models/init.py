"""Weight initializers matching JAX/Flax's ``variance_scaling`` family.

The authors' encoder (Asap7772/PTR, written in Flax) initializes convolutions with
``nn.initializers.kaiming_normal()`` and the spatial-embedding kernel with ``lecun_normal()``.
In JAX these are ``variance_scaling(2.0 | 1.0, "fan_in", "truncated_normal")``: a normal cut at
±2 of its own sigma, with sigma enlarged so that the *truncated* draw has the target standard
deviation ``sqrt(scale / fan_in)``. PyTorch's ``kaiming_normal_`` draws an untruncated normal
instead, so the few lines here reproduce the Flax draw's distribution (not its random stream).
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Standard deviation of a standard normal truncated to [-2, 2] (JAX's constant). Dividing the
# target std by it gives the sigma whose truncated draw has exactly the target std.
TRUNCATED_STD = 0.87962566103423978


def truncated_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """In place: zero-mean normal cut at ±2 sigma whose (truncated) std is ``std``."""
    sigma = std / TRUNCATED_STD
    with torch.no_grad():
        return nn.init.trunc_normal_(tensor, 0.0, sigma, -2.0 * sigma, 2.0 * sigma)


def variance_scaling_(tensor: torch.Tensor, scale: float, fan_in: int) -> torch.Tensor:
    """In place: truncated normal with variance ``scale / fan_in`` (Flax ``fan_in`` mode)."""
    return truncated_normal_(tensor, math.sqrt(scale / fan_in))


def he_normal_conv_(conv: nn.Conv2d) -> None:
    """Flax ``kaiming_normal`` (= ``he_normal``): std ``sqrt(2 / fan_in)``, fan_in = C_in·k_h·k_w.

    Fan-in (not PyTorch's ``fan_out`` choice for ResNets) because that is JAX's default mode,
    which the authors' encoder uses. PyTorch stores the weight as (C_out, C_in, k_h, k_w), so the
    fan-in is one output filter's size.
    """
    variance_scaling_(conv.weight, 2.0, conv.weight[0].numel())
    if conv.bias is not None:  # not in the ResNets (GroupNorm follows every conv), kept general
        nn.init.zeros_(conv.bias)
