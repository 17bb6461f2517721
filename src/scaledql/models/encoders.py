"""Image encoders, chosen by name, each with a ``width`` multiplier on its channel counts.

- ``nature``: the Nature DQN CNN (Mnih et al. 2015).
- ``impala``: the IMPALA ResNet (Espeholt et al. 2018), 3 stages of (16, 32, 32) channels.
- ``resnet18|34|50|101``: the Scaled QL encoder — a ResNet with GroupNorm (4 groups) in place of
  BatchNorm (no batch statistics, so offline/online and single/multi-process updates agree) and
  learned spatial embeddings in place of global average pooling. Basic blocks for 18/34,
  bottleneck blocks (×4 expansion) for 50/101. By default it follows the first author's public
  encoder (Asap7772/PTR, ``jaxrl2/networks/encoders/resnet_encoderv1.py``): only the second
  stage downsamples, so an 84×84 frame leaves the trunk as an 11×11 map. ``layout`` names the
  alternatives (``RESNET_LAYOUTS``).

Every encoder maps float[B, C, H, W] (already scaled to [0, 1]) to float[B, D] and exposes
``output_shape == (D,)``. The stem follows the input size: large frames (Atari 84×84) are
downsampled early as in the original architectures; small grids (MinAtar 10×10) keep their
resolution in the stem (see ``SMALL_INPUT``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import nn

from scaledql.errors import UserError
from scaledql.models.init import he_normal_conv_
from scaledql.models.spatial import SpatialEmbedding

# Inputs whose smaller side is below this use the small-grid stem (no early downsampling).
SMALL_INPUT = 32
GROUPS = 4  # GroupNorm groups (Scaled QL)
# F of the learned spatial embedding by block kind: the authors' pixel CQL learner builds
# ResNet-18/34 with num_spatial_blocks=8 and ResNet-50 with 4 (PTR, pixel_cql_learner.py);
# ResNet-101 (not in PTR) follows ResNet-50.
SPATIAL_FEATURES = {"basic": 8, "bottleneck": 4}
# Zero the last GroupNorm scale of *basic* blocks too? The authors do it in bottlenecks only
# (PTR resnet_encoderv1.py), and their encoder is the default here.
ZERO_INIT_BASIC = False

RESNET_BLOCKS: dict[str, tuple[str, tuple[int, ...]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
ENCODER_NAMES = ("nature", "impala", *RESNET_BLOCKS)


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
        try:
            with torch.no_grad():
                c, h, w = self.trunk(torch.zeros(1, in_channels, *input_hw)).shape[1:]
        except RuntimeError as exc:  # a kernel larger than what is left of the frame
            if "size" not in str(exc):
                raise
            raise UserError(f"the {type(self).__name__} encoder cannot read "
                            f"{'x'.join(map(str, input_hw))} frames (too small for its "
                            "kernels): choose another encoder, or larger frames (GymSuite's "
                            "frame_size)") from None
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
    return nn.GroupNorm(GROUPS, channels)  # eps 1e-5 (PyTorch default), as the authors set it


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF/Flax ``"SAME"`` padding of one axis: output ``ceil(size / stride)``, odd pixel after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _window(
    op: Callable[[int | tuple[int, int]], nn.Module],
    kernel: int,
    stride: int,
    same_hw: tuple[int, int] | None,
) -> nn.Module:
    """A k×k strided window op (conv or max-pool) built as ``op(padding)``.

    ``same_hw=None``: PyTorch's symmetric ``k // 2`` padding. Otherwise the input's (H, W), and
    the windows are aligned as Flax's default ``"SAME"`` (the authors' encoder): on an even side
    the one pixel of padding goes after, which a symmetric pad cannot express, so a ZeroPad2d
    goes in front. Zero padding is exact for the max-pool too because it follows a ReLU (inputs
    ≥ 0, and every window holds at least one real pixel).
    """
    if same_hw is None:
        return op(kernel // 2)
    (top, bottom), (left, right) = (_same_pad(s, kernel, stride) for s in same_hw)
    if top == bottom and left == right:
        return op((top, left))
    return nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), op(0))


def _strided_conv3x3(
    cin: int, cout: int, stride: int, same_hw: tuple[int, int] | None
) -> nn.Module:
    def conv(padding: int | tuple[int, int]) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, 3, stride=stride, padding=padding, bias=False)

    # Stride 1: "SAME" is the symmetric pad, so only strided convs need the input size.
    return _window(conv, 3, stride, same_hw if stride > 1 else None)


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    # A strided 1×1 conv needs no padding under either alignment (both sample pixels 0, s, 2s…).
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), _norm(cout))


class BasicBlock(nn.Module):
    """3×3 conv → GN → ReLU → 3×3 conv → GN, plus the shortcut, then ReLU.

    ``same_hw``: the input's (H, W) for Flax "SAME" alignment of a strided conv, else None.
    """

    expansion = 1

    def __init__(
        self, cin: int, planes: int, stride: int, same_hw: tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _strided_conv3x3(cin, planes, stride, same_hw), _norm(planes), nn.ReLU(),
            nn.Conv2d(planes, planes, 3, padding=1, bias=False), _norm(planes),
        )  # fmt: skip
        self.shortcut = _shortcut(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided) → 1×1 (×4 channels), GN after each, plus the shortcut, then ReLU."""

    expansion = 4

    def __init__(
        self, cin: int, planes: int, stride: int, same_hw: tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, planes, 1, bias=False), _norm(planes), nn.ReLU(),
            _strided_conv3x3(planes, planes, stride, same_hw), _norm(planes), nn.ReLU(),
            nn.Conv2d(planes, cout, 1, bias=False), _norm(cout),
        )  # fmt: skip
        self.shortcut = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNetLayout(NamedTuple):
    """Where a ResNet downsamples. ``stem``: ``"pooled"`` = 7×7/2 conv → GN → ReLU → 3×3/2
    max-pool, ``"small"`` = 3×3/1 conv → GN → ReLU. ``same_padding``: strided windows aligned as
    Flax's ``"SAME"`` (the authors' code) instead of PyTorch's symmetric padding."""

    stem: str
    stage_strides: tuple[int, int, int, int]
    same_padding: bool


RESNET_LAYOUTS: dict[str, ResNetLayout] = {
    # The first author's public encoder (Asap7772/PTR, resnet_encoderv1.py: strides
    # (2, 2, 2, 1, 1) over stem conv, pool and stages 2–4): only stage 2 downsamples.
    # Atari 84 → 42 → 21 → 21 → 11 → 11 → 11.
    "authors": ResNetLayout("pooled", (1, 2, 1, 1), True),
    # torchvision's ResNet: every stage after the first halves. Atari 84 → 21 → 21 → 11 → 6 → 3.
    "torchvision": ResNetLayout("pooled", (1, 2, 2, 2), False),
    # Small grids (MinAtar 10×10) have no resolution to spare: no stem downsampling.
    # 10 → 10 → 10 → 5 → 3 → 2.
    "small": ResNetLayout("small", (1, 2, 2, 2), False),
}


def default_resnet_layout(input_hw: Sequence[int]) -> str:
    """``"small"`` for inputs with a side < ``SMALL_INPUT``, else ``"authors"``."""
    return "small" if _is_small(input_hw) else "authors"


class ResNetEncoder(_Encoder):
    """ResNet-18/34/50/101 with GroupNorm and learned spatial embeddings.

    Stages of 64/128/256/512 channels (×4 out for bottleneck blocks) after the stem; stem and
    stage strides per ``layout`` (``RESNET_LAYOUTS``; None picks ``default_resnet_layout``).
    Readout: spatial embedding with F = 8 (basic blocks) or 4 (bottlenecks), as the authors.
    Initialization as the authors' Flax code: convs He-normal (fan-in, truncated), GroupNorm
    scale 1 and bias 0, except the last GroupNorm of each residual block, whose scale is 0 so
    every block starts as its shortcut.
    """

    def __init__(
        self,
        name: str,
        in_channels: int,
        input_hw: Sequence[int],
        width: float = 1.0,
        layout: str | None = None,
    ) -> None:
        super().__init__()
        self.layout = layout or default_resnet_layout(input_hw)
        spec = RESNET_LAYOUTS[self.layout]
        kind, blocks = RESNET_BLOCKS[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.spatial_features = SPATIAL_FEATURES[kind]
        stem_c = _scaled(64, width, GROUPS)
        if spec.stem == "small":
            layers: list[nn.Module] = [
                nn.Conv2d(in_channels, stem_c, 3, padding=1, bias=False), _norm(stem_c), nn.ReLU()
            ]
            hw = tuple(input_hw)
        else:
            # The stem conv's padding is 3 on both sides in every layout (explicit in the
            # authors' code too); output ceil(n / 2).
            hw = tuple(-(-s // 2) for s in input_hw)
            pool = _window(
                lambda p: nn.MaxPool2d(3, stride=2, padding=p), 3, 2,
                hw if spec.same_padding else None,
            )  # fmt: skip
            layers = [
                nn.Conv2d(in_channels, stem_c, 7, stride=2, padding=3, bias=False),
                _norm(stem_c), nn.ReLU(), pool,
            ]  # fmt: skip
            hw = tuple(-(-s // 2) for s in hw)
        cin = stem_c
        for stage, (base, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            planes = _scaled(base, width, GROUPS)
            for i in range(count):
                stride = spec.stage_strides[stage] if i == 0 else 1
                same_hw = (hw[0], hw[1]) if spec.same_padding else None
                layers.append(block(cin, planes, stride, same_hw))
                cin = planes * block.expansion
                # Exact under "SAME"; the symmetric layouts do not use hw after the stem.
                hw = tuple(-(-s // stride) for s in hw)
        self.trunk = nn.Sequential(*layers)
        self._init_trunk()
        self._finish(in_channels, input_hw)

    def _init_trunk(self) -> None:
        for m in self.trunk.modules():
            if isinstance(m, nn.Conv2d):
                he_normal_conv_(m)
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # The authors zero this scale in bottleneck blocks only; ZERO_INIT_BASIC = True would
        # zero it in basic blocks too (Goyal et al. 2017, torchvision's zero_init_residual).
        zeroed = (BasicBlock, Bottleneck) if ZERO_INIT_BASIC else (Bottleneck,)
        for m in self.trunk:
            if isinstance(m, zeroed):
                nn.init.zeros_(m.body[-1].weight)

    def _make_readout(self, c: int, h: int, w: int) -> nn.Module:
        return SpatialEmbedding(h, w, c, self.spatial_features)


def encoder_param_counts(encoder: nn.Module) -> dict[str, int]:
    """Parameters of an encoder by part: ``trunk`` (convs, norms), ``readout``, ``total``."""
    parts = {"trunk": encoder.trunk, "readout": encoder.readout}
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    counts["total"] = counts["trunk"] + counts["readout"]
    return counts


def canonical_encoder_name(name: str) -> str:
    """``"ResNet-50"`` → ``"resnet50"``; ``UserError`` for an unknown name."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in ENCODER_NAMES:
        raise UserError(f"unknown encoder {name!r} (choose from {', '.join(ENCODER_NAMES)})")
    return key


def make_encoder(
    name: str,
    in_channels: int,
    input_hw: Sequence[int],
    width: float = 1.0,
    layout: str | None = None,
) -> _Encoder:
    """Build an encoder by name for inputs float[B, in_channels, *input_hw] → float[B, D].

    name: nature | impala | resnet18 | resnet34 | resnet50 | resnet101; width: channel multiplier
    (> 0). layout (ResNets only): ``"authors"`` (default for inputs ≥ 32 px), ``"torchvision"``
    or ``"small"`` (default below 32 px); see ``RESNET_LAYOUTS``. The returned module has
    ``.output_shape == (D,)``.
    """
    key = canonical_encoder_name(name)
    if not width > 0:
        raise UserError(f"encoder width must be positive, got {width}")
    if layout is not None:
        if key not in RESNET_BLOCKS:
            raise UserError(f"layout applies to the ResNet encoders only, not {key!r}")
        if layout not in RESNET_LAYOUTS:
            raise UserError(
                f"unknown ResNet layout {layout!r} (choose from {', '.join(RESNET_LAYOUTS)})"
            )
    hw = tuple(int(s) for s in input_hw)
    if key == "nature":
        return NatureCNN(in_channels, hw, width)
    if key == "impala":
        return ImpalaCNN(in_channels, hw, width)
    return ResNetEncoder(key, in_channels, hw, width, layout)
