"""The Scaled Q-Learning agent: online network, target network, Adam, one update step.

The update math lives in ``scaled_ql_loss`` (a pure function of network outputs and batch
tensors); ``ScaledQLAgent`` adds the optimizer, the target-network schedule, devices and
DistributedDataParallel. With ``loss="mse"``, ``cql_alpha=0`` and ``huber_delta=1`` the same
agent is an online double DQN, used to collect DQN-Replay-style behaviour data.

Defaults and their sources: ``docs/defaults.md``.
"""

from __future__ import annotations

import copy
import math
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from scaledql import losses
from scaledql.errors import UserError
from scaledql.models import NetworkOutput, ScaledQNetwork, canonical_encoder_name

LOSSES = ("c51", "mse")
LR_SCALINGS = ("sqrt", "linear", "none")


@dataclass
class AgentConfig:
    """Everything that defines the learner (saved with every run).

    ``batch_size`` is the *global* batch (summed over DDP processes); it only sets the learning
    rate: ``effective_lr = lr · (batch_size / lr_batch_size) ** p`` with p = 0.5 for
    ``lr_scaling="sqrt"``, 1 for ``"linear"``, 0 for ``"none"``.
    """

    encoder: str = "resnet34"
    width: float = 1.0  # channel multiplier of the encoder
    feature_dim: int = 512  # width of the dense projection before the heads
    feature_norm: bool = True  # divide the penultimate features by their L2 norm
    obs_scale: float = 1.0 / 255.0  # uint8 obs × this (both suites store 0..255)
    loss: str = "c51"  # "c51" (distributional, cross-entropy) or "mse" (scalar Q regression)
    num_atoms: int = 51
    v_min: float = -10.0
    v_max: float = 10.0
    gamma: float = 0.99  # the sampler uses it for n-step discounts; batches carry gamma**k
    cql_alpha: float = 0.1
    huber_delta: float | None = None  # mse only: None = squared error, a number = Huber loss
    double_q: bool = True  # bootstrap action = argmax of the *online* net at s'
    lr: float = 2e-4  # at lr_batch_size
    lr_batch_size: int = 512
    lr_scaling: str = "sqrt"
    batch_size: int = 512
    adam_eps: float = 3.125e-4
    target_update_period: int = 2000  # gradient steps between hard target copies
    grad_clip: float | None = None  # max global grad norm; None = no clipping
    channels_last: bool = False  # NHWC convolutions (can be faster on CPU/GPU)
    bf16: bool = False  # bf16 autocast of forward passes (GPUs; CPUs with native bf16 support)
    compile: bool = False  # torch.compile the online forward (needs a C++ compiler on CPU)

    @property
    def effective_lr(self) -> float:
        power = {"sqrt": 0.5, "linear": 1.0, "none": 0.0}[self.lr_scaling]
        return self.lr * (self.batch_size / self.lr_batch_size) ** power

    def validate(self) -> AgentConfig:
        """Check values; ``UserError`` naming the first bad one. Returns self."""
        self.encoder = canonical_encoder_name(self.encoder)
        if self.loss not in LOSSES:
            raise UserError(f"unknown loss {self.loss!r} (choose from {', '.join(LOSSES)})")
        if self.lr_scaling not in LR_SCALINGS:
            raise UserError(f"unknown lr_scaling {self.lr_scaling!r} ({', '.join(LR_SCALINGS)})")
        checks = [
            (self.width > 0, "width must be > 0"),
            (self.obs_scale > 0, "obs_scale must be > 0"),
            (self.feature_dim > 0, "feature_dim must be > 0"),
            (self.num_atoms >= 2, "num_atoms must be >= 2"),
            (self.v_max > self.v_min, "v_max must be > v_min"),
            (0 <= self.gamma <= 1, "gamma must be in [0, 1]"),
            (self.cql_alpha >= 0, "cql_alpha must be >= 0"),
            (self.lr > 0 and self.batch_size > 0 and self.lr_batch_size > 0,
             "lr, batch_size and lr_batch_size must be > 0"),
            (self.target_update_period >= 1, "target_update_period must be >= 1"),
            (self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0"),
            (self.huber_delta is None or self.huber_delta > 0, "huber_delta must be > 0"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise UserError(f"agent config: {message}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BatchTensors(NamedTuple):
    """A sampled batch on the learner's device (fields as the sampler's batch)."""

    obs: torch.Tensor  # uint8[B, S*C, H, W]
    action: torch.Tensor  # int64[B]
    reward: torch.Tensor  # float32[B], n-step discounted sum of (clipped) rewards
    discount: torch.Tensor  # float32[B], gamma**k
    done: torch.Tensor  # float32[B], 1 = terminated within the k steps (no bootstrap)
    next_obs: torch.Tensor  # uint8[B, S*C, H, W]
    game_id: torch.Tensor  # int64[B], index of the game's head


def batch_to_tensors(batch: Any, device: torch.device | str) -> BatchTensors:
    """Move a sampler batch (numpy arrays or tensors under the field names above) to ``device``.

    uint8 observations travel as uint8 (4× less to copy) and become float inside the network.
    """
    def move(x: Any, dtype: torch.dtype) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
        return t.to(device=device, dtype=dtype, non_blocking=True)

    return BatchTensors(
        obs=move(batch.obs, torch.uint8),
        action=move(batch.action, torch.int64),
        reward=move(batch.reward, torch.float32),
        discount=move(batch.discount, torch.float32),
        done=move(batch.done, torch.float32),
        next_obs=move(batch.next_obs, torch.uint8),
        game_id=move(batch.game_id, torch.int64),
    )


def scaled_ql_loss(
    online_out: NetworkOutput,
    target_out: NetworkOutput,
    next_online_out: NetworkOutput | None,
    batch: BatchTensors,
    cfg: AgentConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The Scaled QL objective, averaged over the batch: ``mean(TD + α · CQL)``.

    online_out: online net at s (with gradient); target_out: target net at s'; next_online_out:
    online net at s' (picks the bootstrap action when ``cfg.double_q``; may be None otherwise).
    C51: TD = cross-entropy between the projected target distribution of
    ``r + γ^k (1 − done) z`` (target net, action a*) and the online logits at the data action;
    mse: TD = regression of Q(s, a) onto ``r + γ^k (1 − done) Q_target(s', a*)``.
    CQL = ``logsumexp_a Q(s, a) − Q(s, a_data)`` over the game's valid actions, on expected Qs.
    The mean over the batch (not a sum) makes DDP's gradient averaging equal one big batch.

    Returns (scalar loss, metrics as 0-d tensors: loss, td_loss, cql_loss, mean_q, feature_norm).
    """
    rows = torch.arange(batch.action.shape[0], device=batch.action.device)
    bootstrap = batch.discount * (1.0 - batch.done)  # [B]
    values = online_out.values.float()
    if cfg.loss == "c51":
        support = losses.make_support(cfg.v_min, cfg.v_max, cfg.num_atoms, device=values.device)
        q = losses.expected_q(values, support)  # [B, A]
        with torch.no_grad():
            target_logits = target_out.values.float()
            chooser = next_online_out if cfg.double_q else target_out
            next_q = losses.expected_q(chooser.values.float(), support)
            next_action = losses.masked_argmax(next_q, target_out.action_mask)
            next_probs = torch.softmax(target_logits[rows, next_action], dim=-1)
            target_probs = losses.categorical_projection(next_probs, batch.reward, bootstrap, support)
        td = losses.c51_td_loss(values[rows, batch.action], target_probs)
    else:
        q = values  # [B, A]
        with torch.no_grad():
            target_q = target_out.values.float()
            chooser_q = next_online_out.values.float() if cfg.double_q else target_q
            next_action = losses.masked_argmax(chooser_q, target_out.action_mask)
            target = losses.scalar_td_target(batch.reward, bootstrap, target_q[rows, next_action])
        td = losses.mse_td_loss(q[rows, batch.action], target, cfg.huber_delta)
    cql = losses.cql_term(q, batch.action, online_out.action_mask)
    td_loss, cql_loss = td.mean(), cql.mean()
    loss = td_loss + cfg.cql_alpha * cql_loss if cfg.cql_alpha > 0 else td_loss
    metrics = {
        "loss": loss.detach(),
        "td_loss": td_loss.detach(),
        "cql_loss": cql_loss.detach(),  # the unweighted CQL term (before × α)
        "mean_q": q.detach()[rows, batch.action].mean(),  # Q at the data actions
        "feature_norm": online_out.feature_norm.mean(),
    }
    return loss, metrics


def _compile_supported(device: torch.device) -> bool:
    # Inductor on CPU generates C++; without a compiler the first call would crash mid-run.
    return device.type == "cuda" or shutil.which("g++") is not None or shutil.which("c++") is not None


def _bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # CPUs with AVX512-BF16/AMX run bf16 convolutions natively; elsewhere it is emulated and slow.
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and \
        torch.ops.mkldnn._is_mkldnn_bf16_supported()


class ScaledQLAgent:
    """Online + target ScaledQNetwork and Adam; ``update`` does one gradient step.

    obs_shape: (S*C, H, W) of one observation; num_actions: action count of each game, indexed
    by game id. ``distributed=True`` wraps the online network in DistributedDataParallel; the
    caller must have called ``torch.distributed.init_process_group`` (gloo on CPU, NCCL on GPU)
    and gives each process its own share of the global batch.
    """

    def __init__(
        self,
        cfg: AgentConfig,
        obs_shape: Sequence[int],
        num_actions: Sequence[int],
        device: torch.device | str = "cpu",
        distributed: bool = False,
    ) -> None:
        self.cfg = cfg.validate()
        self.device = torch.device(device)
        self.num_actions = [int(a) for a in num_actions]
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.online = ScaledQNetwork(
            cfg.encoder, obs_shape, self.num_actions, width=cfg.width, feature_dim=cfg.feature_dim,
            feature_norm=cfg.feature_norm, num_atoms=cfg.num_atoms if cfg.loss == "c51" else None,
            channels_last=cfg.channels_last, obs_scale=cfg.obs_scale,
        ).to(self.device)  # fmt: skip
        self._train_forward: nn.Module = self.online
        if distributed:
            if not torch.distributed.is_initialized():
                raise RuntimeError("distributed=True needs torch.distributed.init_process_group first")
            ids = None
            if self.device.type == "cuda":
                ids = [self.device.index if self.device.index is not None
                       else torch.cuda.current_device()]
            # DDP broadcasts rank 0's weights here, so every rank (and its target) starts equal.
            # No buffer broadcast: the only buffers are constant action tables.
            self._train_forward = nn.parallel.DistributedDataParallel(
                self.online, device_ids=ids, broadcast_buffers=False
            )
        self.target = copy.deepcopy(self.online).requires_grad_(False).eval()
        # The fused kernel makes one pass over the parameters instead of ~10 (several ms per
        # step on CPU for a Nature CNN); same math as the default implementation.
        self.optimizer = torch.optim.Adam(
            self.online.parameters(), lr=cfg.effective_lr, eps=cfg.adam_eps,
            fused=self.device.type in ("cpu", "cuda"),
        )
        if cfg.compile:
            if _compile_supported(self.device):
                self._train_forward = torch.compile(self._train_forward)
            else:
                warnings.warn("compile=True ignored: no C++ compiler for torch.compile on CPU",
                              stacklevel=2)
        self._bf16 = cfg.bf16 and _bf16_supported(self.device)
        if cfg.bf16 and not self._bf16:
            warnings.warn(f"bf16=True ignored: no bf16 support on {self.device}", stacklevel=2)
        # Under bf16, autocast would re-cast the fixed target weights on every forward (a
        # fifth of a CPU step for the Nature CNN); a bf16 copy, refreshed whenever the target
        # changes, gives the same products. It only ever runs inside the update's autocast.
        self._target_bf16 = copy.deepcopy(self.target).to(torch.bfloat16) if self._bf16 else None
        self.step = 0

    # -- helpers -----------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._bf16)

    def param_counts(self) -> dict[str, int]:
        """Online-network parameters by part (encoder, projection, heads, total)."""
        return self.online.param_counts()

    # -- learning ------------------------------------------------------------------------------
    def update(self, batch: Any) -> dict[str, float]:
        """One gradient step on a sampled batch (numpy arrays or tensors; see ``BatchTensors``).

        Returns floats: loss, td_loss, cql_loss, mean_q, feature_norm (pre-normalization L2
        norm), grad_norm (before clipping), lr. Copies online → target every
        ``target_update_period`` steps.
        """
        t = batch_to_tensors(batch, self.device)
        self.online.train()
        with self._autocast():
            online_out = self._train_forward(t.obs, t.game_id)
            with torch.no_grad():
                # Plain module (not DDP) for the gradient-free passes: no collective needed.
                next_online_out = self.online(t.next_obs, t.game_id) if self.cfg.double_q else None
                target_net = self._target_bf16 if self._target_bf16 is not None else self.target
                target_out = target_net(t.next_obs, t.game_id)
        loss, metrics = scaled_ql_loss(online_out, target_out, next_online_out, t, self.cfg)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip is not None else math.inf
        metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.online.parameters(), max_norm)
        self.optimizer.step()
        self.step += 1
        if self.step % self.cfg.target_update_period == 0:
            self.sync_target()
        names = list(metrics)
        values = torch.stack([metrics[k].float() for k in names]).tolist()  # one device sync
        out = dict(zip(names, values, strict=True))
        out["lr"] = self.optimizer.param_groups[0]["lr"]
        return out

    def sync_target(self) -> None:
        """Hard copy of the online weights into the target network."""
        self.target.load_state_dict(self.online.state_dict())
        self._refresh_target_bf16()

    def _refresh_target_bf16(self) -> None:
        if self._target_bf16 is not None:
            self._target_bf16.load_state_dict(self.target.state_dict())  # casts to bf16

    # -- acting --------------------------------------------------------------------------------
    @torch.no_grad()
    def q_values(self, obs: torch.Tensor, game_id: int | torch.Tensor) -> torch.Tensor:
        """Expected Q-values of the online net. obs: uint8[B, S*C, H, W] → float32[B, A_max];
        actions the game lacks are -inf."""
        obs = torch.as_tensor(obs).to(self.device)
        ids = torch.as_tensor(game_id, dtype=torch.int64, device=self.device)
        ids = ids.expand(obs.shape[0]) if ids.dim() == 0 else ids
        was_training = self.online.training
        self.online.eval()
        with self._autocast():
            out = self.online(obs, ids)
        self.online.train(was_training)
        values = out.values.float()
        if self.cfg.loss == "c51":
            support = losses.make_support(
                self.cfg.v_min, self.cfg.v_max, self.cfg.num_atoms, device=self.device
            )
            values = losses.expected_q(values, support)
        return values.masked_fill(~out.action_mask, float("-inf"))

    def act(
        self,
        obs: np.ndarray,
        game_id: int,
        epsilon: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """ε-greedy actions for a batch of one game's observations.

        obs: uint8[B, S*C, H, W] → int64[B] in [0, num_actions[game_id]). With an ``rng`` the
        same random numbers are drawn whatever ε is, so runs stay reproducible from it;
        ``rng=None`` is for greedy use (ε = 0) and falls back to fresh entropy otherwise.
        """
        n = obs.shape[0]
        if rng is None and epsilon > 0:
            rng = np.random.default_rng()
        if rng is not None:
            random_actions = rng.integers(0, self.num_actions[game_id], size=n)
            explore = rng.random(n) < epsilon
        else:
            random_actions, explore = np.zeros(n, np.int64), np.zeros(n, bool)
        if explore.all():
            return random_actions.astype(np.int64)
        greedy = self.q_values(torch.from_numpy(np.ascontiguousarray(obs)), game_id).argmax(1)
        return np.where(explore, random_actions, greedy.cpu().numpy()).astype(np.int64)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Online and target weights, optimizer state and step (tensors; torch.save-able)."""
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self._refresh_target_bf16()
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])


def build_agent_from_checkpoint(payload: dict[str, Any], device: torch.device | str) -> ScaledQLAgent:
    """Rebuild an agent from a checkpoint dict holding ``agent_config`` (``AgentConfig.to_dict``),
    ``obs_shape``, ``num_actions`` and ``agent`` (``ScaledQLAgent.state_dict``)."""
    try:
        cfg = AgentConfig(**payload["agent_config"])
        obs_shape, num_actions, state = payload["obs_shape"], payload["num_actions"], payload["agent"]
    except (KeyError, TypeError) as exc:
        raise UserError(f"checkpoint does not describe a Scaled QL agent ({exc})") from None
    agent = ScaledQLAgent(cfg, obs_shape, num_actions, device)
    try:
        agent.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"checkpoint weights do not fit its agent config ({first})") from None
    return agent
