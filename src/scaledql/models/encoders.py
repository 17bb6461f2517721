"""Image encoders, chosen by name, each with a ``width`` multiplier on its channel counts.

- ``nature``: the Nature DQN CNN (Mnih et al. 2015).
- ``impala``: the IMPALA ResNet (Espeholt et al. 2018), 3 stages of (16, 32, 32) channels.
- ``resnet18|34|50|101``: the Scaled QL encoder — a ResNet with GroupNorm (4 groups) in place of
  BatchNorm (no batch statistics, so offline/online and single/multi-process updates agree) and
  learned spatial embeddings in place of global average pooling. Basic blocks for 18/34,
  bottleneck blocks (×4 expansion) for 50/101.

Every encoder maps float[B, C, H, W] (already scaled to [0, 1]) to float[B, D] and exposes
``output_shape == (D,)``. The stem follows the input size: large frames (Atari 84×84) are
downsampled early as in the original architectures; small grids (MinAtar 10×10) keep their
resolution in the stem (see ``SMALL_INPUT``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from scaledql.errors import UserError
from scaledql.models.spatial import SpatialEmbedding

# Inputs whose smaller side is below this use the small-grid stem (no early downsampling).
SMALL_INPUT = 32
GROUPS = 4  # GroupNorm groups (Scaled QL)
SPATIAL_FEATURES = 8  # F of the learned spatial embedding (the authors' encoder)

RESNET_LAYOUTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
ENCODER_NAMES = ("nature", "impala", *RESNET_LAYOUTS)


def _scaled(channels: int, width: float, multiple: int = 1) -> int:
    """``channels · width`` rounded to a positive multiple of ``multiple`` (GroupNorm needs 4)."""
    return max(multiple, round(channels * width / multiple) * multiple)


def _is_small(input_hw: Sequence[int]) -> bool:
    return min(input_hw) < SMALL_INPUT


class _Encoder(nn.Module):
    """Base: ``trunk`` (conv stack) followed by ``flatten`` or a spatial embedding."""

    output_shape: tuple[int]

    def _finish(self, in_channels: int, input_hw: Sequence[int]) -> None:
        """Find the trunk's output size with one dummy pass and build the readout."""
        with torch.no_grad():
            c, h, w = self.trunk(torch.zeros(1, in_channels, *input_hw)).shape[1:]
        self.readout = self._make_readout(c, h, w)
        with torch.no_grad():
            dim = self.readout(torch.zeros(1, c, h, w)).shape[1]
        self.output_shape = (int(dim),)

    def _make_readout(self, c: int, h: int, w: int) -> nn.Module:
        return nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: float[B, C, H, W] in [0, 1] → float[B, D]."""
        return self.readout(self.trunk(x))


class NatureCNN(_Encoder):
    """Nature DQN: 32·8×8/4, 64·4×4/2, 64·3×3/1 with ReLU; small grids: three 3×3/1 convs."""

    def __init__(self, in_channels: int, input_hw: Sequence[int], width: float = 1.0) -> None:
        super().__init__()
        c1, c2, c3 = (_scaled(c, width) for c in (32, 64, 64))
        kernels = ((3, 1), (3, 1), (3, 1)) if _is_small(input_hw) else ((8, 4), (4, 2), (3, 1))
        layers: list[nn.Module] = []
        for (k, s), (cin, cout) in zip(kernels, ((in_channels, c1), (c1, c2), (c2, c3)), strict=True):
            layers += [nn.Conv2d(cin, cout, k, stride=s), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self._finish(in_channels, input_hw)


class _ImpalaResidual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(torch.relu(x))))


class ImpalaCNN(_Encoder):
    """IMPALA: per stage conv3×3 → max-pool 3×3/2 → 2 residual blocks; stages (16, 32, 32).

    Small grids skip the max-pools (a 10×10 grid has nothing to spare).
    """

    def __init__(self, in_channels: int, input_hw: Sequence[int], width: float = 1.0) -> None:
        super().__init__()
        pool = not _is_small(input_hw)
        layers: list[nn.Module] = []
        cin = in_channels
        for base in (16, 32, 32):
            cout = _scaled(base, width)
            layers.append(nn.Conv2d(cin, cout, 3, padding=1))
            if pool:
                layers.append(nn.MaxPool2d(3, stride=2, padding=1))
            layers += [_ImpalaResidual(cout), _ImpalaResidual(cout)]
            cin = cout
        layers.append(nn.ReLU())
        self.trunk = nn.Sequential(*layers)
        self._finish(in_channels, input_hw)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(GROUPS, channels)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), _norm(cout))


class BasicBlock(nn.Module):
    """3×3 conv → GN → ReLU → 3×3 conv → GN, plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, planes, 3, stride=stride, padding=1, bias=False), _norm(planes), nn.ReLU(),
            nn.Conv2d(planes, planes, 3, padding=1, bias=False), _norm(planes),
        )  # fmt: skip
        self.shortcut = _shortcut(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided) → 1×1 (×4 channels), GN after each, plus the shortcut, then ReLU."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, planes, 1, bias=False), _norm(planes), nn.ReLU(),
            nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False), _norm(planes), nn.ReLU(),
            nn.Conv2d(planes, cout, 1, bias=False), _norm(cout),
        )  # fmt: skip
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNetEncoder(_Encoder):
    """ResNet-18/34/50/101 with GroupNorm and learned spatial embeddings.

    Stem, large frames: 7×7/2 conv (64 ch) → GN → ReLU → 3×3/2 max-pool (84 → 21).
    Stem, small grids: 3×3/1 conv (64 ch) → GN → ReLU (10 → 10).
    Stages of 64/128/256/512 channels (×4 out for bottleneck blocks), strides 1, 2, 2, 2
    (Atari 21 → 21 → 11 → 6 → 3; MinAtar 10 → 10 → 5 → 3 → 2); then the spatial embedding.
    """

    def __init__(
        self, name: str, in_channels: int, input_hw: Sequence[int], width: float = 1.0
    ) -> None:
        super().__init__()
        kind, blocks = RESNET_LAYOUTS[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        stem_c = _scaled(64, width, GROUPS)
        if _is_small(input_hw):
            stem: list[nn.Module] = [
                nn.Conv2d(in_channels, stem_c, 3, padding=1, bias=False), _norm(stem_c), nn.ReLU()
            ]
        else:
            stem = [
                nn.Conv2d(in_channels, stem_c, 7, stride=2, padding=3, bias=False),
                _norm(stem_c), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1),
            ]  # fmt: skip
        layers = stem
        cin = stem_c
        for stage, (base, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            planes = _scaled(base, width, GROUPS)
            for i in range(count):
                stride = 2 if (stage > 0 and i == 0) else 1
                layers.append(block(cin, planes, stride))
                cin = planes * block.expansion
        self.trunk = nn.Sequential(*layers)
        self._finish(in_channels, input_hw)

    def _make_readout(self, c: int, h: int, w: int) -> nn.Module:
        return SpatialEmbedding(h, w, c, SPATIAL_FEATURES)


def canonical_encoder_name(name: str) -> str:
    """``"ResNet-50"`` → ``"resnet50"``; ``UserError`` for an unknown name."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in ENCODER_NAMES:
        raise UserError(f"unknown encoder {name!r} (choose from {', '.join(ENCODER_NAMES)})")
    return key


def make_encoder(
    name: str, in_channels: int, input_hw: Sequence[int], width: float = 1.0
) -> _Encoder:
    """Build an encoder by name for inputs float[B, in_channels, *input_hw] → float[B, D].

    name: nature | impala | resnet18 | resnet34 | resnet50 | resnet101; width: channel multiplier
    (> 0). The returned module has ``.output_shape == (D,)``.
    """
    key = canonical_encoder_name(name)
    if not width > 0:
        raise UserError(f"encoder width must be positive, got {width}")
    hw = tuple(int(s) for s in input_hw)
    if key == "nature":
        return NatureCNN(in_channels, hw, width)
    if key == "impala":
        return ImpalaCNN(in_channels, hw, width)
    return ResNetEncoder(key, in_channels, hw, width)
