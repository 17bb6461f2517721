"""The multi-game Decision Transformer backbone (Lee et al. 2022), sized by knobs.

Follows the authors' public release (google-research ``multi_game_dt``, the colab
``Multi_game_decision_transformers_public_colab.ipynb``: ``image_embedding``,
``Transformer``, ``DecisionTransformer.__call__``), re-implemented in PyTorch:

- per step, one frame cut into ``patch_size`` × ``patch_size`` patches (a convolution with
  kernel = stride = patch; 84×84 / 14 → 36 tokens) plus a learned patch-position encoding,
  then a return-to-go token, an action token and a reward token (embedding tables); a window of
  ``context`` steps is the sequence ``[patches_0, R_0, a_0, r_0, patches_1, ...]`` with a learned
  position embedding per token;
- a GPT decoder: pre-LayerNorm blocks, multi-head self-attention, GELU MLP ×4, dropout on both
  residual branches, final LayerNorm;
- attention is causal except that the patches of one step see each other
  (``dt_attention_mask``); with ``single_return_token`` (the release's setting) the return
  tokens after the window's first are removed: their inputs are zeroed and no token attends to
  them, as the release does with its token mask;
- ``action_inputs=False`` (ours, not the release) feeds one constant in place of every past
  action, so the model cannot predict an action by copying the previous one (the copycat
  problem of imitation from histories; see docs/defaults.md, "DT");
- heads: return logits at each step's last patch token (it has seen all the step's patches),
  action logits at the return token, reward logits at the action token.

Initialization as the release: attention and MLP weights truncated normal with fan-in variance
scaled by ``2 / num_layers`` (haiku ``VarianceScaling``), embeddings truncated normal σ = 0.02,
patch positions normal σ = 0.02, the other linear maps fan-in truncated normal, biases zero.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# Haiku's truncated normal divides σ by this so that the *truncated* distribution has σ.
_TRUNC_STD = 0.87962566103423978
NUM_REWARD_CLASSES = 4  # zero, positive, terminal, negative (see losses.encode_rewards)


class DTOutput(NamedTuple):
    """Logits per step: return_logits float[B, L, R]; action_logits float[B, L, A];
    reward_logits float[B, L, 4]."""

    return_logits: torch.Tensor
    action_logits: torch.Tensor
    reward_logits: torch.Tensor


def dt_attention_mask(num_steps: int, num_patches: int, single_return_token: bool = False,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """bool[T, T] with T = num_steps · (num_patches + 3); ``[q, k]`` True if token q may attend
    to token k. Tokens per step: patches, return, action, reward.

    Causal (k ≤ q), plus every patch of a step sees every patch of the same step. With
    ``single_return_token`` the return tokens of steps ≥ 1 are visible to no token (not even
    themselves; their queries still see the tokens before them). The mask for fewer steps is the
    top-left block of this one, so one table serves every window length.
    """
    per_step = num_patches + 3
    total = num_steps * per_step
    pos = torch.arange(total, device=device)
    step = pos // per_step
    is_patch = (pos % per_step) < num_patches
    allowed = pos[None, :] <= pos[:, None]
    allowed |= (step[:, None] == step[None, :]) & is_patch[:, None] & is_patch[None, :]
    if single_return_token:
        allowed &= token_keep(num_steps, num_patches, True, device)[None, :]
    return allowed


def token_keep(num_steps: int, num_patches: int, single_return_token: bool,
               device: torch.device | str | None = None) -> torch.Tensor:
    """bool[T]: tokens that are inputs (False: the return tokens of steps ≥ 1 when only the
    window's first return is used)."""
    per_step = num_patches + 3
    pos = torch.arange(num_steps * per_step, device=device)
    keep = torch.ones_like(pos, dtype=torch.bool)
    if single_return_token:
        keep &= ~((pos % per_step == num_patches) & (pos >= per_step))
    return keep


def patch_grid(frame_shape: tuple[int, int, int], patch_size: int) -> int:
    """Number of patch tokens of one C×H×W frame; ValueError if the patches do not tile it."""
    _, h, w = frame_shape
    if patch_size < 1 or h % patch_size or w % patch_size:
        raise ValueError(f"patch size {patch_size} does not tile a {h}×{w} frame")
    return (h // patch_size) * (w // patch_size)


def default_patch_size(height: int, width: int) -> int:
    """14 for 84×84 Atari frames (the release); otherwise the largest common divisor of the sides
    that leaves at least a 2×2 grid (10×10 MinAtar → 5: 4 tokens of 10·5·5 values)."""
    if (height, width) == (84, 84):
        return 14
    g = math.gcd(height, width)
    return max(d for d in range(1, g // 2 + 1) if g % d == 0) if g >= 2 else 1


def _trunc_normal_(w: torch.Tensor, std: float) -> None:
    nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)


def _fan_in_init_(linear: nn.Linear | nn.Conv2d, scale: float = 1.0) -> None:
    fan_in = linear.weight[0].numel()
    _trunc_normal_(linear.weight, math.sqrt(scale / fan_in) / _TRUNC_STD)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


class Block(nn.Module):
    """Pre-LayerNorm transformer block (GPT-2 layout, as the release)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float, init_scale: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln_2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.fc_out = nn.Linear(4 * d_model, d_model)
        self.drop = nn.Dropout(dropout)
        for m in (self.qkv, self.proj, self.fc, self.fc_out):
            _fan_in_init_(m, init_scale)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        q, k, v = self.qkv(self.ln_1(h)).view(b, t, 3, self.num_heads, d // self.num_heads) \
            .permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, T, d/H]
        h = h + self.drop(self.proj(att.transpose(1, 2).reshape(b, t, d)))
        return h + self.drop(self.fc_out(F.gelu(self.fc(self.ln_2(h)))))


class DecisionTransformerNet(nn.Module):
    """frames uint8[B, L, C, H, W] (one frame per step), return tokens, actions and reward
    tokens int64[B, L] (L ≤ context) → ``DTOutput``. See the module docstring.

    ``num_actions``: the per-game action counts; the action vocabulary is their maximum and
    ``action_mask[g]`` (bool[G, A]) marks the actions game g has.
    """

    def __init__(self, frame_shape: tuple[int, int, int], num_actions: tuple[int, ...], *,
                 num_returns: int, d_model: int, num_layers: int, num_heads: int, context: int,
                 patch_size: int, dropout: float, single_return_token: bool,
                 obs_scale: float = 1.0 / 255.0, action_inputs: bool = True) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not a multiple of num_heads {num_heads}")
        c = frame_shape[0]
        self.frame_shape = tuple(frame_shape)
        self.num_patches = patch_grid(frame_shape, patch_size)
        self.context = context
        self.obs_scale = obs_scale
        self.single_return_token = single_return_token
        self.action_inputs = action_inputs
        self.vocab = max(num_actions)
        per_step = self.num_patches + 3
        self.patch_embed = nn.Conv2d(c, d_model, kernel_size=patch_size, stride=patch_size)
        self.patch_pos = nn.Parameter(torch.empty(self.num_patches, d_model))
        self.return_embed = nn.Embedding(num_returns, d_model)
        self.action_embed = nn.Embedding(self.vocab, d_model)
        self.reward_embed = nn.Embedding(NUM_REWARD_CLASSES, d_model)
        self.seq_pos = nn.Parameter(torch.empty(context * per_step, d_model))
        self.blocks = nn.ModuleList(
            Block(d_model, num_heads, dropout, 2.0 / num_layers) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.return_head = nn.Linear(d_model, num_returns)
        self.action_head = nn.Linear(d_model, self.vocab)
        self.reward_head = nn.Linear(d_model, NUM_REWARD_CLASSES)
        _fan_in_init_(self.patch_embed)
        nn.init.normal_(self.patch_pos, std=0.02)
        for p in (self.return_embed.weight, self.action_embed.weight, self.reward_embed.weight,
                  self.seq_pos):
            _trunc_normal_(p, 0.02)
        for head in (self.return_head, self.action_head, self.reward_head):
            _fan_in_init_(head)
        # Constant tables (not saved: rebuilt from the config).
        self.register_buffer("attn_mask", dt_attention_mask(
            context, self.num_patches, single_return_token), persistent=False)
        self.register_buffer("token_keep", token_keep(
            context, self.num_patches, single_return_token).float()[:, None], persistent=False)
        mask = torch.zeros(len(num_actions), self.vocab, dtype=torch.bool)
        for g, n in enumerate(num_actions):
            mask[g, :n] = True
        self.register_buffer("action_mask", mask, persistent=False)

    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8[B, L, C, H, W] → float[B, L, P, D] patch tokens with patch positions."""
        b, n = frames.shape[:2]
        x = frames.reshape(b * n, *frames.shape[2:]).float() * self.obs_scale
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # [B·L, P, D], row-major patches
        return x.reshape(b, n, self.num_patches, -1) + self.patch_pos

    def forward(self, frames: torch.Tensor, returns: torch.Tensor, actions: torch.Tensor,
                rewards: torch.Tensor) -> DTOutput:
        b, n = actions.shape
        if n > self.context:
            raise ValueError(f"window of {n} steps exceeds the context of {self.context}")
        p = self.num_patches
        if not self.action_inputs:  # every action token the same: nothing to copy from
            actions = torch.zeros_like(actions)
        tokens = torch.cat([
            self.embed_frames(frames),
            self.return_embed(returns)[:, :, None],
            self.action_embed(actions)[:, :, None],
            self.reward_embed(rewards)[:, :, None],
        ], dim=2)  # [B, L, P+3, D]
        t = n * (p + 3)
        h = (tokens.reshape(b, t, -1) + self.seq_pos[:t]) * self.token_keep[:t].to(tokens.dtype)
        mask = self.attn_mask[:t, :t]
        for block in self.blocks:
            h = block(h, mask)
        h = self.ln_f(h).reshape(b, n, p + 3, -1)
        return DTOutput(return_logits=self.return_head(h[:, :, p - 1]),
                        action_logits=self.action_head(h[:, :, p]),
                        reward_logits=self.reward_head(h[:, :, p + 1]))
