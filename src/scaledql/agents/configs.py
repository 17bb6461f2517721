"""Every learner's typed configuration, in one torch-free module.

A learner's config dataclass (its options, defaults and ``validate``) lives here rather than in
the learner's module so that what only *describes* a run — ``scaledql train --help`` showing
defaults, ``--print-config``, reading a saved ``config.json`` — does not import torch (about a
second of start-up). Each learner module re-exports its config (``agents.scaled_ql.ScaledQLConfig``
is this ``ScaledQLConfig``), and the registry's static table names the class
(``agents/registry.py``; a test checks it against each learner's ``config_class``).

Defaults and their sources: ``docs/defaults.md`` (Scaled QL, DQN), ``docs/defaults_bc_mae.md``
(BC, MAE), the Decision Transformer's module docstring (``agents/decision_transformer.py``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from scaledql.errors import UserError

if TYPE_CHECKING:  # reading a config must not import torch (models does)
    from scaledql.models.torso import TorsoSpec


@dataclass
class LearnerConfig:
    """Base of every learner's config. ``batch_size`` is the global batch over all processes."""

    batch_size: int = 512

    def validate(self) -> LearnerConfig:
        """Check values; ``UserError`` naming the first bad one. Returns self."""
        if self.batch_size < 1:
            raise UserError(f"batch_size must be positive, got {self.batch_size}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


LR_SCALINGS = {"sqrt": 0.5, "linear": 1.0, "none": 0.0}  # exponent p of (batch / lr_batch)


@dataclass
class TorsoConfig(LearnerConfig):
    """Options every learner built on the shared torso has (Scaled QL, DQN, BC, MAE): the
    network, Adam, learning-rate scaling and execution switches. Defaults are the paper's
    Scaled QL ones (docs/defaults.md); one learner's config adds its own options.

    ``batch_size`` is the global batch; ``effective_lr = lr · (batch_size / lr_batch_size) ** p``
    with p = 0.5 (``sqrt``), 1 (``linear``) or 0 (``none``).
    """

    encoder: str = "resnet34"
    width: float = 1.0  # channel multiplier of the encoder
    encoder_layout: str | None = None  # ResNets: "authors" / "torchvision" / "small"; None: by input
    feature_dim: int = 512  # width of the dense projection before the heads
    feature_norm: bool = True  # divide the penultimate features by their L2 norm
    # Ours, not the paper's (docs/defaults.md): unit-norm features × this number, or × a learned
    # scalar starting at it (learn_feature_scale). 1.0 and False: the paper's unit norm.
    feature_scale: float = 1.0
    learn_feature_scale: bool = False
    obs_scale: float = 1.0 / 255.0  # uint8 obs × this (both suites store 0..255)
    lr: float = 2e-4  # at lr_batch_size
    lr_batch_size: int = 512
    lr_scaling: str = "sqrt"
    batch_size: int = 512
    adam_eps: float = 3.125e-4
    grad_clip: float | None = None  # max global grad norm; None = no clipping
    channels_last: bool = False  # NHWC convolutions (can be faster on CPU/GPU)
    # None (default): on where bf16 is native (CUDA, CPUs with AVX512-BF16/AMX), off elsewhere;
    # True/False force it (docs/defaults.md).
    bf16: bool | None = None  # bf16 autocast of forward passes
    compile: bool | None = None  # torch.compile the training forward (a C++ compiler on CPU)

    @property
    def effective_lr(self) -> float:
        return self.lr * (self.batch_size / self.lr_batch_size) ** LR_SCALINGS[self.lr_scaling]

    def torso_spec(self) -> TorsoSpec:
        """The torso these options build (``models.Torso`` and ``ScaledQNetwork`` take it)."""
        from scaledql.models.torso import TorsoSpec

        return TorsoSpec(encoder=self.encoder, width=self.width, feature_dim=self.feature_dim,
                         feature_norm=self.feature_norm, channels_last=self.channels_last,
                         obs_scale=self.obs_scale, encoder_layout=self.encoder_layout,
                         feature_scale=self.feature_scale,
                         learn_feature_scale=self.learn_feature_scale)

    def validate(self) -> TorsoConfig:
        from scaledql.models.encoders import RESNET_LAYOUTS, canonical_encoder_name

        super().validate()
        self.encoder = canonical_encoder_name(self.encoder)
        if self.encoder_layout is not None and self.encoder_layout not in RESNET_LAYOUTS:
            raise UserError(f"unknown encoder_layout {self.encoder_layout!r} (choose from "
                            f"{', '.join(RESNET_LAYOUTS)})")
        if self.lr_scaling not in LR_SCALINGS:
            raise UserError(f"unknown lr_scaling {self.lr_scaling!r} ({', '.join(LR_SCALINGS)})")
        finite = all(math.isfinite(x) for x in (self.width, self.obs_scale, self.lr, self.adam_eps,
                                                 self.feature_scale))
        check([
            (finite, "width, obs_scale, lr, adam_eps and feature_scale must be finite"),
            (self.feature_scale > 0, "feature_scale must be > 0"),
            (self.width > 0, "width must be > 0"),
            (self.obs_scale > 0, "obs_scale must be > 0"),
            (self.feature_dim > 0, "feature_dim must be > 0"),
            (self.lr > 0 and self.lr_batch_size > 0 and self.adam_eps > 0,
             "lr, lr_batch_size and adam_eps must be > 0"),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0"),
        ])  # fmt: skip
        return self


def check(conditions: list[tuple[bool, str]], where: str = "learner config") -> None:
    """``UserError`` with the message of the first condition that does not hold."""
    for ok, message in conditions:
        if not ok:
            raise UserError(f"{where}: {message}")


@dataclass
class ScaledQLConfig(TorsoConfig):
    """Everything that defines the learner (saved with every run): the torso's options
    (``TorsoConfig``: encoder, width, feature norm, Adam, lr scaling, switches) and the
    distributional CQL objective's."""

    # The value target, by name (scaledql.value_targets: c51, hl-gauss, two-hot, mse, plugins').
    loss: str = "c51"
    num_atoms: int = 51  # outputs per action of the categorical targets (atoms, bins)
    v_min: float = -10.0
    v_max: float = 10.0
    gamma: float = 0.99
    n_step: int = 3  # returns summed over n steps by the sampler (stops at episode ends)
    reward_clip: float | None = 1.0  # clip each reward to [-c, c] for learning (DQN convention)
    cql_alpha: float = 0.1
    huber_delta: float | None = None  # mse only: None = squared error, a number = Huber loss
    hl_gauss_sigma_ratio: float = 0.75  # hl-gauss only: σ / bin width (Farebrother et al. 2024)
    double_q: bool = True  # bootstrap action = argmax of the *online* net at s'
    target_update_period: int = 2000  # gradient steps between hard target copies

    def validate(self) -> ScaledQLConfig:
        from scaledql.value_targets import check_value_target_name

        super().validate()
        check_value_target_name(self.loss)
        finite = all(math.isfinite(x) for x in (self.v_min, self.v_max, self.gamma, self.cql_alpha,
                                                 self.hl_gauss_sigma_ratio))
        check([
            (finite, "v_min, v_max, gamma, cql_alpha and hl_gauss_sigma_ratio must be finite"),
            (self.num_atoms >= 2, "num_atoms must be >= 2"),
            (self.v_max > self.v_min, "v_max must be > v_min"),
            (0 <= self.gamma <= 1, "gamma must be in [0, 1]"),
            (self.n_step >= 1, "n_step must be >= 1"),
            (self.reward_clip is None or self.reward_clip > 0, "reward_clip must be > 0 (or none)"),
            (self.cql_alpha >= 0, "cql_alpha must be >= 0"),
            (self.target_update_period >= 1, "target_update_period must be >= 1"),
            (self.huber_delta is None or self.huber_delta > 0, "huber_delta must be > 0"),
            (self.hl_gauss_sigma_ratio > 0, "hl_gauss_sigma_ratio must be > 0 (σ as a multiple "
             "of the bin width; 0.75 is Farebrother et al.'s)"),
        ])  # fmt: skip
        return self


@dataclass
class DQNConfig(ScaledQLConfig):
    """Double DQN defaults (Mnih et al. 2015 / Dopamine), scaled down for a CPU."""

    encoder: str = "nature"
    width: float = 0.5
    feature_dim: int = 256
    feature_norm: bool = False
    loss: str = "mse"
    huber_delta: float | None = 1.0
    cql_alpha: float = 0.0
    n_step: int = 1
    lr: float = 5e-4
    lr_batch_size: int = 32
    lr_scaling: str = "none"
    batch_size: int = 32
    adam_eps: float = 1.5e-4
    target_update_period: int = 1_000
    # float32 on every device: the online DQN makes the data, and its data stays the bytes it
    # was before bf16 became the default where native (data/minatar-200k, data/minatar-1m).
    bf16: bool | None = False


@dataclass
class BCConfig(TorsoConfig):
    """Behaviour cloning over all games: exactly Scaled QL's torso options and defaults
    (``TorsoConfig``), so the comparison is one of objectives only."""

    def validate(self) -> BCConfig:
        super().validate()
        return self


FILLS = ("zero", "learned")


@dataclass
class MAEConfig(TorsoConfig):
    """Masked-autoencoder pretraining. The torso options (``TorsoConfig``: encoder, width,
    encoder_layout, feature_dim, obs_scale) must equal those of the Scaled QL run the encoder is
    meant for (the torso is built the same way; MAE trains only the encoder's trunk).

    Optimizer defaults follow He et al. (2022): base lr 1.5e-4 at batch 256, scaled linearly.
    """

    mask_ratio: float = 0.75  # He et al. 2022
    patch_size: int | None = None  # pixels per patch side; None = auto_patch_size (12 / 2)
    norm_pix: bool = False  # per-patch normalized target (He et al.'s norm_pix_loss)
    mask_fill: str = "zero"  # masked input pixels: "zero" or a "learned" per-channel value
    decoder_width: int | None = None  # None: half the trunk's channels, in [16, 512]
    decoder_depth: int = 1  # 3×3 conv layers at the patch grid
    lr: float = 1.5e-4  # He et al.'s base lr, at lr_batch_size
    lr_batch_size: int = 256
    lr_scaling: str = "linear"
    adam_eps: float = 1e-8  # PyTorch's / MAE's

    def validate(self) -> MAEConfig:
        super().validate()
        if self.mask_fill not in FILLS:
            raise UserError(f"unknown mask_fill {self.mask_fill!r} ({', '.join(FILLS)})")
        check([
            (math.isfinite(self.mask_ratio) and 0 < self.mask_ratio < 1,
             "mask_ratio must be in (0, 1)"),
            (self.patch_size is None or self.patch_size >= 1, "patch_size must be >= 1 (or none)"),
            ((self.decoder_width is None or self.decoder_width >= 1) and self.decoder_depth >= 0,
             "decoder_width must be >= 1 (or none) and decoder_depth >= 0"),
        ])  # fmt: skip
        return self


ATARI_RTG_RANGE = (-20, 100)  # the release's ATARI_RETURN_RANGE
MINATAR_RTG_RANGE = (0, 50)  # chosen: see agents/decision_transformer.py's docstring


@dataclass
class DecisionTransformerConfig(LearnerConfig):
    """The Decision Transformer's knobs (saved with every run); sources in the docstring of
    ``agents/decision_transformer.py``."""

    d_model: int = 128
    num_layers: int = 2
    num_heads: int | None = None  # None: d_model // 64 (key size 64, the release), at least 1
    context: int = 4  # steps per window (paper)
    patch_size: int | None = None  # None: 14 for 84×84, 5 for 10×10 (default_patch_size)
    dropout: float = 0.1
    rtg_min: int = ATARI_RTG_RANGE[0]
    rtg_max: int = ATARI_RTG_RANGE[1]
    single_return_token: bool = True  # only the window's first return-to-go (the release)
    # Past actions as inputs (the release); False: a constant in their place, so that the
    # model cannot copy the previous action (ours; docs/defaults.md, "DT").
    action_inputs: bool = True
    obs_scale: float = 1.0 / 255.0
    batch_size: int = 128
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 500  # linear warm-up of the learning rate from lr/warmup to lr
    adam_eps: float = 1e-8
    grad_clip: float | None = 1.0  # max global grad norm; None = no clipping
    # Expert-action inference (the policy).
    kappa: float = 0.0  # optimality bias κ·(R − R_low)/(R_high − R_low) on the return logits
    return_inverse_temperature: float = 0.75
    return_samples: int = 128  # returns drawn per step; the largest is kept
    return_top_percentile: float | None = None  # keep return logits above this percentile
    action_inverse_temperature: float = 1.0
    action_top_percentile: float | None = 50.0  # keep action logits above this percentile
    seed: int = 0  # the policy's sampling generator
    bf16: bool | None = None  # None: on where bf16 is native (as TorsoConfig)
    compile: bool | None = None

    @property
    def heads(self) -> int:
        return self.num_heads if self.num_heads is not None else max(1, self.d_model // 64)

    def validate(self) -> DecisionTransformerConfig:
        super().validate()
        floats = (self.dropout, self.obs_scale, self.lr, self.weight_decay, self.adam_eps,
                  self.kappa, self.return_inverse_temperature, self.action_inverse_temperature)
        check([
            (all(math.isfinite(x) for x in floats), "dropout, obs_scale, lr, weight_decay, "
             "adam_eps, kappa and the inverse temperatures must be finite"),
            (self.d_model > 0 and self.num_layers > 0, "d_model and num_layers must be > 0"),
            (self.heads > 0 and self.d_model % self.heads == 0,
             f"num_heads must divide d_model ({self.d_model})"),
            # With one step the reward token feeds nothing: its embedding would get no gradient.
            (self.context >= 2, "context must be >= 2"),
            (self.patch_size is None or self.patch_size >= 1, "patch_size must be >= 1"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (self.rtg_max > self.rtg_min, "rtg_max must be > rtg_min"),
            (self.obs_scale > 0 and self.lr > 0 and self.adam_eps > 0,
             "obs_scale, lr and adam_eps must be > 0"),
            (self.weight_decay >= 0 and self.warmup_steps >= 0,
             "weight_decay and warmup_steps must be >= 0"),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0"),
            (self.return_inverse_temperature >= 0 and self.action_inverse_temperature >= 0,
             "inverse temperatures must be >= 0"),
            (self.return_samples >= 1, "return_samples must be >= 1"),
            (all(p is None or 0 <= p < 100
                 for p in (self.return_top_percentile, self.action_top_percentile)),
             "top percentiles must be in [0, 100) (or none)"),
        ])  # fmt: skip
        return self

    @property
    def num_returns(self) -> int:
        return self.rtg_max - self.rtg_min + 1
