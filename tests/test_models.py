"""Encoders, spatial embeddings, feature normalization and per-game head routing."""

import math

import pytest
import torch
from torch import nn

from scaledql.errors import UserError
from scaledql.models import (
    ScaledQNetwork,
    SpatialEmbedding,
    TorsoSpec,
    encoder_param_counts,
    make_encoder,
)
from scaledql.models.encoders import BasicBlock, Bottleneck
from scaledql.models.init import TRUNCATED_STD

# Small tensors: one thread avoids OpenMP contention on the shared 2-core machine.
torch.set_num_threads(1)

ATARI = (4, 84, 84)
MINATAR = (10, 10, 10)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", ["nature", "impala", "resnet18", "resnet34", "resnet50", "resnet101"])
@pytest.mark.parametrize("shape", [ATARI, MINATAR])
def test_encoder_shapes(name, shape):
    torch.manual_seed(0)
    enc = make_encoder(name, shape[0], shape[1:], width=0.125)
    out = enc(torch.rand(2, *shape))
    assert out.shape == (2, *enc.output_shape)
    assert torch.isfinite(out).all()


def test_encoder_output_sizes_by_hand():
    # Nature on 84×84: 64 channels · 7 · 7. MinAtar stem: three unpadded 3×3 convs, 10 → 4.
    assert make_encoder("nature", 4, (84, 84)).output_shape == (64 * 7 * 7,)
    assert make_encoder("nature", 10, (10, 10)).output_shape == (64 * 4 * 4,)
    # ResNet-18: 512 channels × F=8 spatial features; bottleneck: 2048 × F=4 (512 at width 1/4).
    assert make_encoder("resnet18", 4, (84, 84)).output_shape == (512 * 8,)
    assert make_encoder("resnet50", 10, (10, 10), width=0.25).output_shape == (512 * 4,)


def test_resnet_uses_groupnorm_with_4_groups_and_no_batchnorm():
    enc = make_encoder("resnet34", 4, (84, 84), width=0.25)
    norms = [m for m in enc.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_groups == 4 for m in norms)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in enc.modules())
    assert isinstance(enc.readout, SpatialEmbedding)


@pytest.mark.parametrize(
    ("name", "block", "count"),
    [("resnet18", "BasicBlock", 8), ("resnet34", "BasicBlock", 16),
     ("resnet50", "Bottleneck", 16), ("resnet101", "Bottleneck", 33)],
)
def test_resnet_block_layout(name, block, count):
    enc = make_encoder(name, 4, (84, 84), width=0.125)
    kinds = [type(m).__name__ for m in enc.trunk if isinstance(m, BasicBlock | Bottleneck)]
    assert kinds == [block] * count


def trunk_map(enc: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(enc.trunk(torch.zeros(1, *shape)).shape[1:])


@pytest.mark.parametrize(
    ("layout", "hw"), [(None, 11), ("authors", 11), ("torchvision", 3), ("small", 11)]
)
def test_resnet_layouts_trunk_map_on_atari(layout, hw):
    # authors: 84 → 42 → 21 (stem) → 21 → 11 → 11 → 11; torchvision: … → 11 → 6 → 3;
    # small (no stem downsampling): 84 → 84 → 42 → 21 → 11.
    enc = make_encoder("resnet18", 4, (84, 84), width=0.125, layout=layout)
    assert enc.layout == (layout or "authors")
    assert trunk_map(enc, ATARI) == (64, hw, hw)
    assert enc.output_shape == (64 * 8,)


def test_small_grids_keep_their_layout():
    for name, c in (("resnet18", 64), ("resnet50", 256)):
        enc = make_encoder(name, 10, (10, 10), width=0.125)
        assert enc.layout == "small"
        assert trunk_map(enc, MINATAR) == (c, 2, 2)  # 10 → 10 → 5 → 3 → 2, as before


def test_layout_argument_errors_and_passthrough():
    with pytest.raises(UserError, match="unknown ResNet layout"):
        make_encoder("resnet18", 4, (84, 84), layout="vgg")
    with pytest.raises(UserError, match="ResNet encoders only"):
        make_encoder("nature", 4, (84, 84), layout="authors")
    net = ScaledQNetwork(TorsoSpec("resnet18", width=0.125, feature_dim=8,
                                   encoder_layout="torchvision"), ATARI, [3])
    assert net.torso.encoder.layout == "torchvision"
    assert net.torso.encoder.readout.kernel.shape[:2] == (3, 3)


# Width 1, 84×84×4 input. The trunks equal torchvision's resnetN without its fc layer (2 GroupNorm
# parameters per channel, like BatchNorm's) plus 49·64 stem weights for the 4th input channel,
# e.g. ResNet-50: 25,557,032 − 2,049,000 + 3,136. Readout: H·W·C·F.
PARAMS = {
    "resnet18": (11_179_648, 11 * 11 * 512 * 8, 512 * 8),
    "resnet34": (21_287_808, 11 * 11 * 512 * 8, 512 * 8),
    "resnet50": (23_511_168, 11 * 11 * 2048 * 4, 2048 * 4),
    "resnet101": (42_503_296, 11 * 11 * 2048 * 4, 2048 * 4),
}


@pytest.mark.parametrize("name", list(PARAMS))
def test_resnet_exact_param_counts_at_width_1(name):
    trunk, readout, dim = PARAMS[name]
    enc = make_encoder(name, 4, (84, 84))
    assert encoder_param_counts(enc) == {"trunk": trunk, "readout": readout, "total": trunk + readout}
    assert enc.output_shape == (dim,)
    assert n_params(enc) == trunk + readout


def test_torchvision_layout_param_counts():
    enc = make_encoder("resnet18", 4, (84, 84), layout="torchvision")
    assert encoder_param_counts(enc) == {
        "trunk": 11_179_648, "readout": 3 * 3 * 512 * 8, "total": 11_179_648 + 36_864
    }  # fmt: skip


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_groupnorm_init(name):
    """The authors' init: the last GroupNorm scale of each *bottleneck* block is zero (their
    basic blocks keep scale 1; ``ZERO_INIT_BASIC`` would zero those too)."""
    enc = make_encoder(name, 4, (84, 84), width=0.125)
    blocks = [m for m in enc.trunk if isinstance(m, Bottleneck)]
    if name == "resnet18":
        assert not blocks and not any(
            torch.equal(b.body[-1].weight, torch.zeros_like(b.body[-1].weight))
            for b in enc.trunk if isinstance(b, BasicBlock))
        return
    last = {id(b.body[-1]) for b in blocks}
    for m in enc.trunk.modules():
        if isinstance(m, nn.GroupNorm):
            assert m.eps == 1e-5
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
            expected = 0.0 if id(m) in last else 1.0
            assert torch.equal(m.weight, torch.full_like(m.weight, expected))
    # Zero last scale: a block with an identity shortcut starts as the identity on x ≥ 0.
    block = next(b for b in blocks if isinstance(b.shortcut, nn.Identity))
    x = torch.rand(2, block.body[0].in_channels, 11, 11)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)


def test_resnet_conv_init_is_truncated_he_normal_fan_in():
    torch.manual_seed(0)
    enc = make_encoder("resnet34", 4, (84, 84))
    conv = enc.trunk[-1].body[3]  # 512 → 512, 3×3: 2.4M weights
    w = conv.weight.detach()
    std = math.sqrt(2.0 / (512 * 9))
    assert conv.bias is None
    assert abs(w.std().item() / std - 1) < 0.01
    assert abs(w.mean().item()) < 0.01 * std
    # Cut at ±2σ of the un-truncated normal (σ = std / 0.8796), as JAX's truncated_normal.
    assert w.abs().max().item() <= 2 * std / TRUNCATED_STD + 1e-7
    assert w.abs().max().item() > 0.99 * 2 * std / TRUNCATED_STD
    assert all(
        m.bias is None for m in enc.trunk.modules() if isinstance(m, nn.Conv2d)
    )  # every conv is followed by a GroupNorm


def test_spatial_kernel_init_is_lecun_over_hwc():
    torch.manual_seed(0)
    emb = SpatialEmbedding(height=11, width=11, channels=512, num_features=8)
    k = emb.kernel.detach()
    std = 1 / math.sqrt(11 * 11 * 512)
    assert abs(k.std().item() / std - 1) < 0.01
    assert k.abs().max().item() <= 2 * std / TRUNCATED_STD + 1e-7


def test_authors_layout_aligns_strided_windows_as_flax_same():
    # Flax "SAME" on an even side pads only after: the first window starts at pixel 0, where
    # PyTorch's symmetric padding would start it at −1.
    torch.manual_seed(0)
    enc = make_encoder("resnet18", 4, (84, 84), width=0.125)
    pool = enc.trunk[3]
    x = torch.rand(1, 8, 42, 42)
    out = pool(x)
    assert out.shape[-2:] == (21, 21)
    torch.testing.assert_close(out[0, :, 0, 0], x[0, :, 0:3, 0:3].amax((1, 2)))
    torch.testing.assert_close(out[0, :, 20, 20], x[0, :, 40:42, 40:42].amax((1, 2)))
    # A stride-2 3×3 conv on an even 16×16 input (64×64 frames reach stage 2 at 16×16).
    conv = BasicBlock(8, 8, 2, same_hw=(16, 16)).body[0]
    x = torch.rand(1, 8, 16, 16)
    with torch.no_grad():
        out = conv(x)
        weight = conv[1].weight
    assert out.shape[-2:] == (8, 8)
    torch.testing.assert_close(out[0, :, 0, 0], (weight * x[0, :, 0:3, 0:3]).sum((1, 2, 3)))
    # Odd sizes need no extra pad: symmetric padding is already "SAME" (84×84 stage 2: 21).
    assert isinstance(BasicBlock(8, 8, 2, same_hw=(21, 21)).body[0], nn.Conv2d)


def test_param_counts_grow_with_width_and_depth():
    for name in ("nature", "impala", "resnet18"):
        counts = [n_params(make_encoder(name, 4, (84, 84), w)) for w in (0.25, 0.5, 1.0)]
        assert counts == sorted(counts) and len(set(counts)) == 3, (name, counts)
    depth = [n_params(make_encoder(f"resnet{d}", 4, (84, 84), 0.25)) for d in (18, 34, 50, 101)]
    assert depth == sorted(depth) and len(set(depth)) == 4


def test_unknown_encoder_is_a_user_error():
    with pytest.raises(UserError, match="unknown encoder"):
        make_encoder("vgg16", 4, (84, 84))
    assert make_encoder("ResNet-18", 4, (10, 10), 0.125).output_shape[0] > 0


def test_spatial_embedding_by_hand():
    emb = SpatialEmbedding(height=2, width=2, channels=3, num_features=2)
    with torch.no_grad():
        emb.kernel.copy_(torch.arange(24, dtype=torch.float32).view(2, 2, 3, 2))
    x = torch.arange(12, dtype=torch.float32).view(1, 3, 2, 2)
    out = emb(x)
    expected = torch.zeros(3, 2)
    for c in range(3):
        for f in range(2):
            for h in range(2):
                for w in range(2):
                    expected[c, f] += x[0, c, h, w] * emb.kernel[h, w, c, f]
    torch.testing.assert_close(out, expected.flatten()[None])


def features_into_heads(net, obs, game_id):
    """Run the net and capture what the heads receive (the normalized features)."""
    captured = {}
    handle = net.heads.register_forward_hook(lambda m, args, out: captured.update(x=args[0]))
    out = net(obs, game_id)
    handle.remove()
    return out, captured["x"]


@pytest.mark.parametrize("encoder", ["nature", "resnet18"])
def test_feature_normalization_gives_unit_norm(encoder):
    torch.manual_seed(0)
    obs = torch.randint(0, 256, (5, *MINATAR), dtype=torch.uint8)
    gid = torch.zeros(5, dtype=torch.long)
    net = ScaledQNetwork(TorsoSpec(encoder, width=0.25, feature_dim=32, feature_norm=True),
                         MINATAR, [3])
    out, feats = features_into_heads(net, obs, gid)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(5))
    assert (out.feature_norm > 0).all() and not torch.allclose(out.feature_norm, torch.ones(5))
    net.torso.feature_norm = False
    out, feats = features_into_heads(net, obs, gid)
    torch.testing.assert_close(feats.norm(dim=1), out.feature_norm)


def test_head_routing_follows_game_id():
    torch.manual_seed(0)
    num_actions = [3, 5, 2]
    net = ScaledQNetwork(TorsoSpec("nature", width=0.25, feature_dim=16), MINATAR, num_actions,
                         num_atoms=7)
    obs = torch.randint(0, 256, (6, *MINATAR), dtype=torch.uint8)
    gid = torch.tensor([0, 1, 2, 1, 0, 2])
    out, feats = features_into_heads(net, obs, gid)
    assert out.values.shape == (6, 5, 7)
    assert out.action_mask.tolist()[0] == [True, True, True, False, False]
    assert out.action_mask.tolist()[2] == [True, True, False, False, False]
    for i, g in enumerate(gid.tolist()):
        a = num_actions[g]
        manual = net.heads.heads[g](feats[i]).view(a, 7)
        torch.testing.assert_close(out.values[i, :a], manual)
    # Perturb game 1's head only: exactly the game-1 samples change.
    with torch.no_grad():
        net.heads.heads[1].bias.add_(1.0)
    after = net(obs, gid).values
    changed = (after - out.values).abs().flatten(1).amax(1) > 1e-4
    assert changed.tolist() == [g == 1 for g in gid.tolist()]


def test_scalar_heads_for_mse_variant():
    net = ScaledQNetwork(TorsoSpec("nature", width=0.25, feature_dim=8), MINATAR, [3, 4],
                         num_atoms=None)
    out = net(torch.zeros(2, *MINATAR, dtype=torch.uint8), torch.tensor([0, 1]))
    assert out.values.shape == (2, 4)


def test_network_param_counts_add_up():
    net = ScaledQNetwork(TorsoSpec("resnet18", width=0.25, feature_dim=64), ATARI, [6, 18])
    counts = net.param_counts()
    assert counts["total"] == n_params(net)
    assert counts["heads"] == (64 + 1) * (6 + 18) * 51
    assert counts["projection"] == (128 * 8 + 1) * 64


def test_obs_scale_is_applied_to_uint8_input():
    torch.manual_seed(0)
    grid = torch.randint(0, 2, (3, *MINATAR), dtype=torch.uint8)  # 0/1 planes
    pixels = ScaledQNetwork(TorsoSpec("nature", width=0.25, feature_dim=8, obs_scale=1 / 255),
                            MINATAR, [3])
    ones = ScaledQNetwork(TorsoSpec("nature", width=0.25, feature_dim=8, obs_scale=1.0), MINATAR,
                          [3])
    ones.load_state_dict(pixels.state_dict())
    gid = torch.zeros(3, dtype=torch.long)
    torch.testing.assert_close(ones(grid, gid).values, pixels(grid * 255, gid).values)
    assert not torch.allclose(ones(grid, gid).values, pixels(grid, gid).values)


def test_feature_scale_fixed_or_learned_multiplies_the_unit_norm():
    from scaledql.errors import UserError
    from scaledql.models.torso import Torso

    torch.manual_seed(0)
    obs = torch.randint(0, 256, (4, 10, 10, 10), dtype=torch.uint8)
    plain = Torso(TorsoSpec("nature", feature_dim=16), (10, 10, 10))
    fixed = Torso(TorsoSpec("nature", feature_dim=16, feature_scale=16.0), (10, 10, 10))
    fixed.load_state_dict(plain.state_dict())  # the same keys: no parameter for a fixed scale
    torch.testing.assert_close(fixed(obs).features, 16.0 * plain(obs).features)
    learned = Torso(TorsoSpec("nature", feature_dim=16, learn_feature_scale=True),
                    (10, 10, 10))
    assert isinstance(learned.feature_scale, torch.nn.Parameter)
    assert "feature_scale" in dict(learned.named_parameters())
    learned(obs).features.sum().backward()
    assert learned.feature_scale.grad is not None
    from scaledql.agents.configs import ScaledQLConfig

    with pytest.raises(UserError, match="feature_scale must be > 0"):
        ScaledQLConfig(feature_scale=0.0).validate()


def test_torso_spec_is_the_configs_torso_options():
    """One spelling of the torso's options: every ``TorsoSpec`` field is a ``TorsoConfig``
    field with the same default, and a config's spec carries its values."""
    import dataclasses

    from scaledql.agents.configs import ScaledQLConfig, TorsoConfig

    config_defaults = {f.name: f.default for f in dataclasses.fields(TorsoConfig)}
    for f in dataclasses.fields(TorsoSpec):
        assert f.name in config_defaults
        if f.name != "encoder":  # the spec has no default encoder: a network names one
            assert f.default == config_defaults[f.name], f.name
    cfg = ScaledQLConfig(encoder="nature", width=0.5, feature_dim=24, feature_scale=2.0,
                         learn_feature_scale=True, channels_last=True, obs_scale=1.0,
                         feature_norm=False, encoder_layout=None)
    spec = cfg.torso_spec()
    assert spec == TorsoSpec("nature", width=0.5, feature_dim=24, feature_norm=False,
                             channels_last=True, obs_scale=1.0, feature_scale=2.0,
                             learn_feature_scale=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.width = 1.0  # type: ignore[misc]
    net = ScaledQNetwork(spec, MINATAR, [3])
    assert net.torso.spec is spec and net.torso.feature_dim == 24
