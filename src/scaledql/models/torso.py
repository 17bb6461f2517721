"""The torso every value/policy network shares: encoder → dense projection + ReLU → feature norm.

The torso is the transferable part of a network (``transfer.py`` loads a pretrained one into a
new network with fresh heads); heads are per game and never transfer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from scaledql.models.encoders import make_encoder


@dataclass(frozen=True)
class TorsoSpec:
    """What builds a torso, written once: a learner's config makes one (``TorsoConfig.
    torso_spec``), ``Torso`` and ``ScaledQNetwork`` take it. Not saved anywhere itself: run
    configs and checkpoints keep these values as the config's own flat fields.

    ``encoder``: a name of ``make_encoder``; ``width``: its channel multiplier;
    ``encoder_layout``: a ResNet's downsampling layout (None: by input size); ``feature_dim``:
    the projection's width; ``feature_norm``, ``feature_scale``, ``learn_feature_scale``: see
    ``Torso``; ``obs_scale``: uint8 observations × this; ``channels_last``: NHWC convolutions.
    """

    encoder: str
    width: float = 1.0
    feature_dim: int = 512
    feature_norm: bool = True
    channels_last: bool = False
    obs_scale: float = 1.0 / 255.0
    encoder_layout: str | None = None
    feature_scale: float = 1.0
    learn_feature_scale: bool = False


class TorsoOutput(NamedTuple):
    features: torch.Tensor  # float[B, D], L2-normalized when the torso normalizes
    feature_norm: torch.Tensor  # float32[B], L2 norm *before* normalization (a diagnostic)


class Torso(nn.Module):
    """obs uint8[B, C, H, W] → ``TorsoOutput``.

    Observations are multiplied by ``obs_scale`` here (1/255: Atari pixels and MinAtar's 0/255
    cells), so callers pass raw uint8, 4× cheaper to move to a device than float.
    ``feature_norm=True`` divides the features by their L2 norm, the Scaled QL stabilizer (the
    paper's form: no scale). ``feature_scale`` multiplies the unit-norm features by a fixed
    number, or with ``learn_feature_scale`` by a learned scalar starting there — our variants,
    not the paper's: unit-norm features feeding default-initialized heads make Q-values small
    and slow to grow (docs/defaults.md).
    """

    def __init__(self, spec: TorsoSpec, obs_shape: Sequence[int]) -> None:
        super().__init__()
        in_channels, height, width_px = (int(s) for s in obs_shape)
        self.spec = spec
        self.obs_scale = spec.obs_scale
        self.encoder = make_encoder(spec.encoder, in_channels, (height, width_px), spec.width,
                                    layout=spec.encoder_layout)
        self.projection = nn.Linear(self.encoder.output_shape[0], spec.feature_dim)
        self.feature_dim = spec.feature_dim
        self.feature_norm = spec.feature_norm
        self.feature_scale: float | nn.Parameter = float(spec.feature_scale)
        if spec.learn_feature_scale:  # only then a parameter: other runs' checkpoints keep their keys
            self.feature_scale = nn.Parameter(torch.tensor(float(spec.feature_scale)))
        self.channels_last = spec.channels_last
        if spec.channels_last:
            self.encoder.to(memory_format=torch.channels_last)

    def scale(self, obs: torch.Tensor) -> torch.Tensor:
        """uint8 obs → float in [0, 1], in the autocast dtype when autocast is on (one pass)."""
        device = obs.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
        x = obs.to(dtype).mul_(self.obs_scale)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def projected(self, obs: torch.Tensor) -> torch.Tensor:
        """float[B, D]: ReLU(projection(encoder(obs))), the features before normalization (the
        same quantity whether or not this torso normalizes: diagnostics compare arms on it)."""
        return torch.relu(self.projection(self.encoder(self.scale(obs))))

    def forward(self, obs: torch.Tensor) -> TorsoOutput:
        features = self.projected(obs)
        norm = features.detach().float().norm(dim=1)
        if self.feature_norm:
            features = F.normalize(features, dim=1, eps=1e-6)
            if isinstance(self.feature_scale, nn.Parameter) or self.feature_scale != 1.0:
                features = features * self.feature_scale
        return TorsoOutput(features, norm)
