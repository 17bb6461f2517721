"""Masked-autoencoder pieces for a convolutional encoder: patch masks, a light decoder, and the
network that joins them to a ``Torso``'s encoder trunk (used by ``agents/mae.py``).

A ViT drops masked tokens; a CNN cannot, so (as in CNN MAEs such as SimMIM-style masked image
modelling) the masked patches of the *input* are blanked — set to 0 after scaling to [0, 1], or
to a learned per-channel value — the whole masked image goes through the encoder's ``trunk``,
and the decoder predicts every pixel from the trunk's feature map; the loss then looks at the
masked patches only (``losses.masked_patch_mse``).

Patches are P×P pixels over *all* channels, i.e. all stacked frames at once ("tube" masking,
Tong et al. 2022, VideoMAE): masking a patch in one frame only would let the network copy it
from the neighbouring frame of the stack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scaledql.models.torso import Torso


def num_masked(num_patches: int, ratio: float) -> int:
    """Masked patches per sample. As He et al. (2022) keep ``int(L · (1 − ratio))`` patches,
    the rest are masked: 49 patches at 0.75 → 37 masked, 25 → 19."""
    return num_patches - int(num_patches * (1.0 - ratio))


def random_patch_mask(batch: int, grid: tuple[int, int], ratio: float,
                      generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """bool[B, Hp, Wp], True = masked: exactly ``num_masked(Hp·Wp, ratio)`` patches per sample,
    chosen uniformly (the argsort-of-noise trick of He et al.'s ``random_masking``)."""
    hp, wp = grid
    noise = torch.rand(batch, hp * wp, generator=generator, device=device)
    mask = torch.zeros(batch, hp * wp, dtype=torch.bool, device=device)
    mask.scatter_(1, noise.argsort(dim=1)[:, : num_masked(hp * wp, ratio)], True)
    return mask.view(batch, hp, wp)


def default_decoder_width(trunk_channels: int) -> int:
    """Half the trunk's output channels, within [16, 512]: Nature CNN (64) → 32, ResNet-18/34
    (512) → 256, ResNet-50/101 (2048) → 512 (MAE's decoder is 512 wide). This keeps the decoder
    a fraction of the encoder's cost at every scale (a fixed 128 would cost the MinAtar Nature
    CNN 2.7× its encoder's multiply-adds)."""
    return min(512, max(16, trunk_channels // 2))


def pixel_mask(patch_mask: torch.Tensor, patch: int) -> torch.Tensor:
    """bool[B, Hp, Wp] → bool[B, 1, Hp·P, Wp·P]: each patch's flag on its pixels."""
    m = patch_mask.repeat_interleave(patch, dim=1).repeat_interleave(patch, dim=2)
    return m[:, None]


class PatchDecoder(nn.Module):
    """Trunk feature map float[B, Cf, h, w] → pixels float[B, C, Hp·P, Wp·P].

    1×1 conv to ``width`` channels → bilinear resize of the map to the patch grid (Hp, Wp) when
    the trunk's map has another size (ResNets end at 3×3 or 2×2, the Nature CNN at 7×7 on
    84×84 Atari) → ``depth`` 3×3 conv + GELU layers that mix neighbouring patches → 1×1 conv
    to the C·P² pixels of each patch, unfolded with ``pixel_shuffle`` (a per-patch linear
    readout, as in MAE's decoder head). Light next to a ResNet trunk: its cost is that of
    ``depth`` convs at the patch grid.
    """

    def __init__(self, in_channels: int, grid: tuple[int, int], out_channels: int, patch: int,
                 width: int = 128, depth: int = 1) -> None:
        super().__init__()
        self.grid = (int(grid[0]), int(grid[1]))
        self.patch = patch
        self.inp = nn.Conv2d(in_channels, width, 1)
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, out_channels * patch * patch, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.inp(features)
        if tuple(z.shape[-2:]) != self.grid:
            z = F.interpolate(z, size=self.grid, mode="bilinear", align_corners=False)
        z = self.body(F.gelu(z))
        return F.pixel_shuffle(self.out(z), self.patch)


class MAENetwork(nn.Module):
    """A ``Torso`` whose encoder trunk is pretrained by masked reconstruction, and the decoder.

    ``forward(obs uint8[B, C, H, W], patch_mask bool[B, Hp, Wp]) → float[B, C, H, W]``, the
    reconstruction of every pixel. Only ``torso.encoder.trunk``, the decoder and (``learned_fill``)
    the fill value are used and trained; ``torso.encoder.readout`` (the ResNets' spatial
    embedding) and ``torso.projection`` exist so that the torso's parameter names and shapes are
    exactly a Scaled QL torso's (transfer), and are frozen here: they keep their initialization.
    State-dict keys ``torso.encoder.*`` match ``ScaledQNetwork``'s.
    """

    def __init__(self, torso: Torso, obs_shape: tuple[int, int, int], patch: int,
                 decoder_width: int | None, decoder_depth: int, learned_fill: bool) -> None:
        super().__init__()
        channels, height, width = obs_shape
        self.torso = torso
        self.patch = patch
        self.grid = (height // patch, width // patch)
        # Frozen so DistributedDataParallel does not wait for gradients they never get.
        torso.encoder.readout.requires_grad_(False)
        torso.projection.requires_grad_(False)
        with torch.no_grad():
            trunk_channels = torso.encoder.trunk(torch.zeros(1, *obs_shape)).shape[1]
        width = decoder_width or default_decoder_width(int(trunk_channels))
        self.decoder = PatchDecoder(trunk_channels, self.grid, channels, patch, width,
                                    decoder_depth)
        # Value (in [0, 1] pixel units) given to masked input pixels, per channel. 0 at init.
        self.fill = nn.Parameter(torch.zeros(channels), requires_grad=learned_fill)

    def masked_input(self, obs: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        """The encoder's input: obs scaled to [0, 1], masked patches replaced by the fill."""
        x = self.torso.scale(obs)
        hidden = pixel_mask(patch_mask, self.patch)
        if self.fill.requires_grad:
            x = torch.where(hidden, self.fill.to(x.dtype)[None, :, None, None], x)
        else:
            x = x.masked_fill(hidden, 0.0)
        if self.torso.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, obs: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.torso.encoder.trunk(self.masked_input(obs, patch_mask)))

    def param_counts(self) -> dict[str, int]:
        """encoder (trunk + readout), projection (both transferable), decoder (+ fill), total."""
        parts = {"encoder": self.torso.encoder.parameters(),
                 "projection": self.torso.projection.parameters(),
                 "decoder": [*self.decoder.parameters(), self.fill]}
        counts = {k: sum(p.numel() for p in ps) for k, ps in parts.items()}
        counts["total"] = sum(counts.values())
        return counts
