"""Loss functions of Scaled Q-Learning, as pure functions of tensors.

Nothing here knows about networks, optimizers or games: every function takes tensors and returns
tensors, so each can be checked by hand (see ``tests/test_losses.py``).

Conventions: ``B`` batch, ``A`` actions (padded to the largest action count of all games; the
padding is marked invalid in ``action_mask``), ``N`` atoms of the categorical support (or bins
of a histogram target; ``scaledql.value_targets`` puts these functions together as targets).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def make_support(v_min: float, v_max: float, num_atoms: int, device=None) -> torch.Tensor:
    """The C51 support ``z``: float32[N], ``num_atoms`` evenly spaced values from v_min to v_max."""
    return torch.linspace(v_min, v_max, num_atoms, dtype=torch.float32, device=device)


def expected_q(logits: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Q-values as expectations of categorical distributions: ``Σ_i z_i · softmax(logits)_i``.

    logits: float[..., N]; support: float32[N] → float[...].
    """
    return torch.softmax(logits, dim=-1) @ support


def masked_argmax(q: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """Greedy action among the valid ones. q: float[B, A]; action_mask: bool[B, A] → int64[B]."""
    return q.masked_fill(~action_mask, float("-inf")).argmax(dim=-1)


def categorical_projection(
    next_probs: torch.Tensor,
    reward: torch.Tensor,
    discount: torch.Tensor,
    support: torch.Tensor,
) -> torch.Tensor:
    """Project the distribution of ``reward + discount · Z`` onto the fixed support (C51).

    next_probs: float[B, N], probabilities of Z (the target network's at the bootstrap action);
    reward: float[B]; discount: float[B], the bootstrap factor ``γ^k · (1 − done)`` (0 when the
    episode terminated, so the target collapses to ``reward``); support: float32[N], evenly spaced.
    Returns float[B, N], rows summing to 1 (up to rounding).

    Each shifted atom ``Tz_i = clip(r + d·z_i, v_min, v_max)`` spreads its probability over its
    two neighbouring atoms in proportion to closeness: atom ``j`` receives
    ``p_i · max(0, 1 − |Tz_i − z_j| / Δz)``. This one formula also covers an atom landing exactly
    on a support point (all its mass goes there) and the clipped edges.
    """
    shifted = (reward[:, None] + discount[:, None] * support[None, :]).clamp(support[0], support[-1])
    # weight[b, i, j]: share of shifted atom i that goes to support atom j.
    weight = hat_weights(shifted, support)  # [B, N, N]
    return torch.einsum("bi,bij->bj", next_probs, weight)


def hat_weights(points: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """How each point splits between its two neighbouring support atoms, in proportion to
    closeness: ``max(0, 1 − |x − z_j| / Δz)`` for atom ``j``.

    points: float[...], each within [z_0, z_{N−1}]; support: float32[N], evenly spaced →
    float[..., N], each row summing to 1, with mean ``Σ_j w_j z_j`` equal to the point. A point
    on an atom puts all its weight there.
    """
    delta_z = (support[-1] - support[0]) / (support.numel() - 1)
    return (1.0 - (points[..., None] - support).abs() / delta_z).clamp(min=0.0)


def histogram_edges(v_min: float, v_max: float, num_bins: int, device=None) -> torch.Tensor:
    """Edges of ``num_bins`` equal bins covering [v_min, v_max]: float32[num_bins + 1]."""
    return torch.linspace(v_min, v_max, num_bins + 1, dtype=torch.float32, device=device)


def bin_centres(edges: torch.Tensor) -> torch.Tensor:
    """The middle of each bin: edges float32[N + 1] → float32[N]."""
    return (edges[:-1] + edges[1:]) / 2


def hl_gauss_probs(target: torch.Tensor, edges: torch.Tensor, sigma: float) -> torch.Tensor:
    """HL-Gauss (Farebrother et al. 2024): the probability a Gaussian N(y, σ²) puts in each bin,
    ``Φ((e_{i+1} − y)/σ) − Φ((e_i − y)/σ)``, renormalized over [e_0, e_N] (the mass beyond the
    support is dropped, not piled on the end bins).

    target: float[B], clipped to [e_0, e_N] first; edges: float32[N + 1]; sigma > 0 →
    float[B, N], rows summing to 1. ``2Φ(x) − 1 = erf(x/√2)``: differences of erf, halved in
    numerator and denominator alike.
    """
    y = target.clamp(edges[0], edges[-1])
    cdf = torch.special.erf((edges - y[:, None]) / (sigma * math.sqrt(2.0)))  # [B, N+1]
    return (cdf[:, 1:] - cdf[:, :-1]) / (cdf[:, -1:] - cdf[:, :1])


def two_hot_probs(target: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Two-hot: the scalar target split between its two nearest bin centres (``hat_weights``),
    so that the distribution's mean is exactly the target, clipped to [c_0, c_{N−1}].

    target: float[B]; centres: float32[N], evenly spaced → float[B, N].
    """
    return hat_weights(target.clamp(centres[0], centres[-1]), centres)


def cross_entropy_td_loss(logits_at_action: torch.Tensor, target_probs: torch.Tensor
                          ) -> torch.Tensor:
    """Cross-entropy of a (fixed) target distribution against the online logits at the data
    action: the TD loss of every categorical value target (C51's projection, HL-Gauss, two-hot).

    logits_at_action: float[B, N]; target_probs: float[B, N] (no gradient flows into it) → float[B].
    """
    log_probs = F.log_softmax(logits_at_action, dim=-1)
    return -(target_probs.detach() * log_probs).sum(dim=-1)


def cql_term(q: torch.Tensor, action: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """The CQL regularizer per sample: ``logsumexp_{a valid} Q(s, a) − Q(s, a_data)``.

    q: float[B, A]; action: int64[B]; action_mask: bool[B, A] (True = the game has this action).
    Padded actions of games with fewer actions are left out of the logsumexp. → float[B] (≥ 0).
    """
    logsumexp = torch.logsumexp(q.masked_fill(~action_mask, float("-inf")), dim=-1)
    q_data = q.gather(1, action[:, None]).squeeze(1)
    return logsumexp - q_data


def value_diagnostics(q: torch.Tensor, action_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a batch's Q-values say about learning, detached (``docs/diagnostics.md``).

    q: float[B, A]; action_mask: bool[B, A]. → 0-d tensors: ``q_spread``, the standard deviation
    over the batch of V(s) = max_a Q(s, a) (near 0: every state looks alike to the network);
    ``action_gap``, the mean of the best minus the second-best valid Q (near 0: the greedy
    action is decided by noise). A game with one action contributes a gap of 0.
    """
    q = q.detach().masked_fill(~action_mask, float("-inf"))
    top = q.topk(min(2, q.shape[1]), dim=-1).values  # [B, ≤2]
    best = top[:, 0]
    second = top[:, -1]
    gap = torch.where(torch.isfinite(second), best - second, torch.zeros_like(best))
    spread = best.std(unbiased=False) if best.numel() > 1 else best.new_zeros(())
    return {"q_spread": spread, "action_gap": gap.mean()}


def group_means(values: torch.Tensor, groups: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Mean of ``values`` per group, detached. values: float[B]; groups: int64[B] in
    [0, num_groups) → float[num_groups] (0 for a group absent from the batch)."""
    values = values.detach().float()
    sums = values.new_zeros(num_groups).index_add_(0, groups, values)
    counts = values.new_zeros(num_groups).index_add_(0, groups, torch.ones_like(values))
    return sums / counts.clamp(min=1.0)


def scalar_td_target(
    reward: torch.Tensor, discount: torch.Tensor, next_q_at_action: torch.Tensor
) -> torch.Tensor:
    """The scalar TD target ``reward + discount · Q_target(s', a*)``, with no gradient.

    reward, discount (``γ^k · (1 − done)``), next_q_at_action: float[B] → float[B].
    """
    return (reward + discount * next_q_at_action).detach()


def mse_td_loss(
    q_at_action: torch.Tensor, target: torch.Tensor, huber_delta: float | None = None
) -> torch.Tensor:
    """Scalar regression TD loss per sample.

    q_at_action, target: float[B] → float[B]. ``huber_delta=None``: ``0.5 · (q − target)²``;
    a number δ: Huber loss, ``0.5·e²`` for ``|e| ≤ δ`` and ``δ·(|e| − 0.5·δ)`` beyond (DQN's loss,
    with δ = 1). The ½ makes both agree for small errors.
    """
    if huber_delta is None:
        return 0.5 * (q_at_action - target.detach()).square()
    return F.huber_loss(q_at_action, target.detach(), reduction="none", delta=huber_delta)


# =============================================================================================
# Decision Transformer (multi-game DT, Lee et al. 2022): tokenization and the sequence loss.
# Conventions: B batch, L window steps, R return classes, A the shared action vocabulary.
# =============================================================================================

# Reward classes, numbered as the release's ``encode_reward`` (multi_game_dt colab).
REWARD_ZERO, REWARD_POSITIVE, REWARD_TERMINAL, REWARD_NEGATIVE = 0, 1, 2, 3


def encode_returns(returns_to_go: torch.Tensor, rtg_min: int, rtg_max: int) -> torch.Tensor:
    """Return-to-go values → class indices: rounded to integers, clipped to [rtg_min, rtg_max],
    offset by −rtg_min. float[...] → int64[...] in [0, rtg_max − rtg_min].

    The values are expected to be sums of clipped (unit) rewards, hence integers; rounding only
    absorbs float error (the release truncates with ``astype(int32)``, the same on integers).
    The release sizes its table ``rtg_max − rtg_min`` (120 for Atari), one short of the clipped
    range; we use ``rtg_max − rtg_min + 1`` classes.
    """
    r = torch.round(returns_to_go.float()).clamp(rtg_min, rtg_max)
    return (r - rtg_min).long()


def encode_rewards(reward: torch.Tensor, terminal: torch.Tensor | None = None) -> torch.Tensor:
    """Rewards → 4 classes: ``REWARD_ZERO``, ``REWARD_POSITIVE``, ``REWARD_NEGATIVE`` by sign, and
    ``REWARD_TERMINAL`` where ``terminal`` is nonzero (it overrides the sign: the step that ended
    the episode). reward, terminal: float[...] → int64[...]. Only the sign is used, so clipped
    and raw rewards give the same classes."""
    classes = torch.where(reward > 0, REWARD_POSITIVE,
                          torch.where(reward < 0, REWARD_NEGATIVE, REWARD_ZERO))
    if terminal is not None:
        classes = torch.where(terminal > 0, REWARD_TERMINAL, classes)
    return classes.long()


def _per_sample_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid steps of each sample, then over the batch. x, mask: float[B, L] → 0-d.

    A batch mean (not a mean over all valid steps) keeps the per-process normalizer constant, so
    a DDP gradient average equals the gradient of one big batch."""
    return ((x * mask).sum(1) / mask.sum(1).clamp(min=1.0)).mean()


def dt_loss(
    return_logits: torch.Tensor,
    action_logits: torch.Tensor,
    reward_logits: torch.Tensor,
    return_targets: torch.Tensor,
    actions: torch.Tensor,
    reward_targets: torch.Tensor,
    mask: torch.Tensor,
    action_mask: torch.Tensor,
    single_return_token: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The Decision Transformer objective: the mean of three cross-entropies.

    return_logits: float[B, L, R]; action_logits: float[B, L, A]; reward_logits: float[B, L, 4];
    return_targets (``encode_returns``), actions, reward_targets (``encode_rewards``):
    int64[B, L]; mask: float[B, L] (0 on padding after the episode's end: it contributes
    nothing); action_mask: bool[B, A] (the sample's game has the action; the others are left out
    of the action softmax). ``single_return_token``: only the window's first return is a target
    (the release's setting), else every step's.

    Each cross-entropy is averaged over a sample's valid steps, then over the batch
    (``_per_sample_mean``). The release's ``cross_entropy`` also divides by the number of classes
    (``jnp.mean`` over the one-hot axis), which weights the three terms by 1/R, 1/A, 1/4; we use
    plain cross-entropies. Returns (loss, metrics: loss, action_loss, return_loss, reward_loss,
    action_accuracy, as detached 0-d tensors).
    """
    mask = mask.float()
    act_logits = action_logits.float().masked_fill(~action_mask[:, None, :], float("-inf"))
    act_logp = F.log_softmax(act_logits, dim=-1)
    action_ce = -act_logp.gather(-1, actions[..., None]).squeeze(-1)
    reward_ce = F.cross_entropy(reward_logits.float().transpose(1, 2), reward_targets,
                                reduction="none")
    steps = 1 if single_return_token else return_logits.shape[1]
    return_ce = F.cross_entropy(return_logits[:, :steps].float().transpose(1, 2),
                                return_targets[:, :steps], reduction="none")
    action_loss = _per_sample_mean(action_ce, mask)
    reward_loss = _per_sample_mean(reward_ce, mask)
    return_loss = _per_sample_mean(return_ce, mask[:, :steps])
    loss = (action_loss + return_loss + reward_loss) / 3.0
    correct = (act_logits.argmax(-1) == actions).float()
    metrics = {
        "loss": loss.detach(),
        "action_loss": action_loss.detach(),
        "return_loss": return_loss.detach(),
        "reward_loss": reward_loss.detach(),
        "action_accuracy": _per_sample_mean(correct, mask).detach(),
    }
    return loss, metrics


# ==============================================================================================
# Behaviour cloning and MAE
# (BC: ``agents/bc.py``; masked-autoencoder pretraining: ``agents/mae.py``.)
# ``P`` is the patch side in pixels; an image of H×W has a grid of ``Hp × Wp = H/P × W/P``.
# ==============================================================================================


def bc_loss(logits: torch.Tensor, action: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """Behaviour-cloning cross-entropy ``−log π(a_data | s)`` per sample, the softmax taken over
    the sample's game's valid actions only (padding logits are set to −inf first, so they get
    neither probability nor gradient).

    logits: float[B, A]; action: int64[B] (valid for its row); action_mask: bool[B, A] → float[B].
    """
    log_probs = F.log_softmax(logits.masked_fill(~action_mask, float("-inf")), dim=-1)
    return -log_probs.gather(1, action[:, None]).squeeze(1)


def masked_entropy(logits: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of the softmax over the valid actions. logits: float[B, A];
    action_mask: bool[B, A] → float[B], in [0, log(valid actions)]."""
    log_probs = F.log_softmax(logits.masked_fill(~action_mask, float("-inf")), dim=-1)
    # Padding has p = 0 and log p = −inf; 0 · −inf would be NaN, so those terms are set to 0.
    return -(log_probs.exp() * log_probs.masked_fill(~action_mask, 0.0)).sum(dim=-1)


def _patch_view(x: torch.Tensor, patch: int) -> torch.Tensor:
    """float[B, C, H, W] → the same memory viewed as [B, C, Hp, P, Wp, P] (no copy)."""
    b, c, h, w = x.shape
    if h % patch or w % patch:
        raise ValueError(f"image {h}×{w} is not a whole number of {patch}×{patch} patches")
    return x.reshape(b, c, h // patch, patch, w // patch, patch)


def patch_normalize(
    x: torch.Tensor, patch: int, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-patch normalization of a reconstruction target (He et al. 2022, ``norm_pix_loss``):
    each P×P patch, over all its channels, minus its mean and divided by ``sqrt(var + eps)``.

    x: float[B, C, H, W] → (normalized float[B, C, H, W], mean, std), mean and std float[B, 1, H, W]
    (each patch's value at its pixels), so that ``normalized · std + mean == x``.
    """
    b, c, h, w = x.shape
    v = _patch_view(x, patch)
    mean = v.mean(dim=(1, 3, 5), keepdim=True)
    std = (v.var(dim=(1, 3, 5), unbiased=False, keepdim=True) + eps).sqrt()
    normalized = ((v - mean) / std).reshape(b, c, h, w)
    expand = (b, 1, h // patch, patch, w // patch, patch)
    return (normalized, mean.expand(expand).reshape(b, 1, h, w),
            std.expand(expand).reshape(b, 1, h, w))


def masked_patch_mse(
    pred: torch.Tensor, target: torch.Tensor, patch_mask: torch.Tensor, patch: int
) -> torch.Tensor:
    """MAE reconstruction loss: the mean squared error over the pixels (all channels) of the
    masked patches only; visible patches contribute nothing.

    pred, target: float[B, C, H, W]; patch_mask: bool[B, Hp, Wp] (True = masked); patch: P with
    H = Hp·P, W = Wp·P → float scalar. It is the mean over masked patches of each patch's
    mean squared error (every patch has C·P² pixels). With the same number of masked patches
    in every sample (the MAE's masks), it is also a mean over samples, so DDP's gradient
    average equals one big batch.
    """
    per_patch = _patch_view((pred - target).square(), patch).mean(dim=(1, 3, 5))  # [B, Hp, Wp]
    weight = patch_mask.to(per_patch.dtype)
    return (per_patch * weight).sum() / weight.sum().clamp(min=1.0)
