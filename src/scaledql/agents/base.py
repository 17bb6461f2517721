"""The learner interface: the one seam between algorithms and everything that runs them.

A learner (Scaled QL, online DQN, behaviour cloning, Decision Transformer, MAE) is one module in
``agents/`` that provides:

- a typed config dataclass (``config_class``, a subclass of ``LearnerConfig``), saved with every
  run and checked by ``training/config.py``; it is defined in the torch-free ``agents/configs.py``
  so that help, config printing and config files never load torch;
- ``batch_spec()``: the batches it learns from — n-step ``transitions`` or ``trajectories``
  (sub-trajectories with returns-to-go) — which the training loop asks the data layer for;
- ``update(batch) → metrics``: one gradient step on a batch whose fields are tensors already on
  the learner's device; metrics are 0-d tensors left on the device (the loop accumulates them
  and reads them back only when it logs) and always include ``loss``;
- ``state_dict()`` / ``load_state_dict()``: everything needed to continue exactly;
- ``policy()``: a ``scaledql.policies.Policy`` for evaluation and collection;
- ``torso``: the transferable part of its network (``None`` if nothing transfers) — see
  ``scaledql.transfer``;
- optionally, for the learning diagnostics (``training/diagnostics.py``): ``optimizer`` (its
  Adam, whose state says which steps ε dominates), ``parts()`` (parameters by part) and
  ``features(obs, game_id)`` (the representation the heads read).

The training loop, checkpoints, evaluation and the CLI know this interface and the registry
(``agents/registry.py``), never a learner by name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from scaledql.agents.configs import LearnerConfig
from scaledql.data.sampling.sampler import BatchSpec
from scaledql.errors import UserError
from scaledql.policies import Policy


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``module`` in eval mode (no dropout) inside the block, its own mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)

class GameLike(Protocol):
    """A game as a store (``data.store``) or a suite (``suites.GameSpec``) describes it."""

    suite: str
    name: str
    num_actions: int
    frame_shape: tuple[int, int, int]

    @property
    def obs_shape(self) -> tuple[int, int, int]: ...


@dataclass(frozen=True)
class Problem:
    """What the data defines for a learner: observation shape and the games' action counts.

    obs_shape: (S*C, H, W) of one stacked observation; frame_channels: C of one frame;
    num_actions[g]: action count of game g (its head index); games: their names.
    """

    obs_shape: tuple[int, int, int]
    num_actions: tuple[int, ...]
    games: tuple[str, ...]
    frame_channels: int

    @property
    def stack(self) -> int:
        return self.obs_shape[0] // self.frame_channels

    @classmethod
    def of(cls, games: Sequence[GameLike], where: str) -> Problem:
        """The problem of one network for ``games`` (a store's or a suite's, in head order);
        ``where`` names them in the one-line error when they cannot share a network."""
        if len({g.suite for g in games}) > 1:
            raise UserError(f"{where}: games from different suites cannot share a network")
        if len({tuple(g.obs_shape) for g in games}) > 1:
            raise UserError(f"{where}: observation shapes differ, one network cannot play them "
                            "all")
        first = games[0]
        return cls(obs_shape=tuple(int(s) for s in first.obs_shape),  # type: ignore[arg-type]
                   num_actions=tuple(int(g.num_actions) for g in games),
                   games=tuple(g.name for g in games), frame_channels=int(first.frame_shape[0]))



class Learner(ABC):
    """See the module docstring. Subclasses set ``name`` and ``config_class`` and register
    themselves with ``@register`` (``agents/registry.py``)."""

    name: ClassVar[str]
    config_class: ClassVar[type[LearnerConfig]]
    summary: ClassVar[str] = ""  # one line for --help; set by @register from LEARNERS
    optimizer: torch.optim.Optimizer | None = None  # read by the diagnostics only

    def __init__(self, cfg: LearnerConfig, problem: Problem, device: torch.device | str = "cpu",
                 distributed: bool = False) -> None:
        self.cfg = cfg.validate()
        self.problem = problem
        self.device = torch.device(device)
        self.distributed = distributed
        self.step = 0

    # -- what every learner implements ---------------------------------------------------------
    @abstractmethod
    def batch_spec(self) -> BatchSpec: ...

    @abstractmethod
    def update(self, batch: Any) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    @abstractmethod
    def policy(self) -> Policy: ...

    @classmethod
    @abstractmethod
    def tiny_config(cls) -> LearnerConfig:
        """The smallest config that still exercises every part (tests, ``--quick`` runs), in
        float32 on every machine: tests compare exact numerics (DDP against one process)."""

    # -- shared, overridable ---------------------------------------------------------------
    @property
    def torso(self) -> nn.Module | None:
        """The transferable part of the network (``encoder``, ``projection``), or None."""
        return None

    def modules(self) -> dict[str, nn.Module]:
        """The learner's networks by name (parameter counts, freezing)."""
        return {}

    def parts(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by part (diagnostics report each part): one per module."""
        return {name: list(m.parameters()) for name, m in self.modules().items()}

    @torch.no_grad()
    def features(self, obs: torch.Tensor, game_id: torch.Tensor, pre_norm: bool = False
                 ) -> torch.Tensor | None:
        """float32[B, D]: the torso's features (what the heads read; ``pre_norm``: before the
        feature normalization, ReLU(projection), the same quantity in every arm) for uint8
        obs[B, ...], no gradient; None for a learner without a torso (its srank/DR3 are not
        logged)."""
        torso = self.torso
        if torso is None:
            return None
        with eval_mode(torso), self._autocast():
            x = torch.as_tensor(obs).to(self.device)
            features = torso.projected(x) if pre_norm else torso(x).features
        return features.float()

    @torch.no_grad()
    def held_out_losses(self, batch: Any) -> dict[str, float]:
        """The training objective's terms on a batch the learner does not step on (a validation
        split, or fixed training batches to compare with): ``loss`` and the learner's parts of
        it (e.g. ``td_loss``, ``cql_loss``), as floats, networks in eval mode. {} for a learner
        that does not report them."""
        return {}

    def param_counts(self) -> dict[str, int]:
        """Trainable-network parameters by part, plus ``total``."""
        counts = {name: sum(p.numel() for p in m.parameters()) for name, m in self.modules().items()}
        counts["total"] = sum(counts.values())
        return counts

    @property
    def precision(self) -> str:
        """What the updates compute in: "bf16" (autocast, resolved on) or "float32"."""
        return "bf16" if getattr(self, "_bf16", False) else "float32"

    def _autocast(self):
        """bf16 autocast on the learner's device when the learner resolved bf16 on (``_bf16``)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=getattr(self, "_bf16", False))

    def freeze_encoder(self) -> None:
        """Stop gradients into the torso's encoder (transfer with a frozen representation)."""
        if self.torso is None:
            raise UserError(f"{self.name} has no encoder to freeze")
        self.torso.encoder.requires_grad_(False)


# -- helpers several learners share ----------------------------------------------------------
def wrap_distributed(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``module`` (the process group must exist). DDP broadcasts
    rank 0's weights here, so every rank starts equal."""
    if not torch.distributed.is_initialized():
        raise RuntimeError("distributed=True needs torch.distributed.init_process_group first")
    ids = None
    if device.type == "cuda":
        ids = [device.index if device.index is not None else torch.cuda.current_device()]
    # No buffer broadcast: the only buffers are constant tables (action columns, masks).
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


def compile_supported(device: torch.device) -> bool:
    # Inductor on CPU generates C++; without a compiler the first call would crash mid-run.
    return device.type == "cuda" or shutil.which("g++") is not None or shutil.which("c++") is not None


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # CPUs with AVX512-BF16/AMX run bf16 convolutions natively; elsewhere it is emulated and slow.
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and \
        torch.ops.mkldnn._is_mkldnn_bf16_supported()


def maybe_compile(module: nn.Module, enabled: bool | None, device: torch.device) -> nn.Module:
    """``enabled`` None: compile on CUDA (the update is launch- and memory-bound there: fusing
    GroupNorm, casts and activations is where its time goes), eager elsewhere."""
    if enabled is None:
        enabled = device.type == "cuda"
    if not enabled:
        return module
    if compile_supported(device):
        return torch.compile(module)
    warnings.warn("compile=True ignored: no C++ compiler for torch.compile on CPU", stacklevel=3)
    return module


def resolve_bf16(requested: bool | None, device: torch.device) -> bool:
    """``requested`` None: bf16 wherever it is native — CUDA devices that support it and CPUs
    with AVX512-BF16/AMX (2.1x the float32 samples/s of the MinAtar preset on one thread here,
    and the same learning: the tuning study's float32 twin, docs/defaults.md) — float32
    elsewhere, where bf16 would be emulated and slow."""
    if requested is None:
        return bf16_supported(device)
    ok = requested and bf16_supported(device)
    if requested and not ok:
        warnings.warn(f"bf16=True ignored: no bf16 support on {device}", stacklevel=3)
    return ok


def make_adam(params, lr: float, eps: float, device: torch.device) -> torch.optim.Adam:
    # The fused kernel makes one pass over the parameters instead of ~10 (several ms per step on
    # CPU for a Nature CNN); same math as the default implementation.
    return torch.optim.Adam(params, lr=lr, eps=eps, fused=device.type in ("cpu", "cuda"))


def as_tensors(batch: Any, device: torch.device) -> Any:
    """A batch dataclass with numpy or tensor fields → the same dataclass of tensors on
    ``device`` (dtypes kept; uint8 frames stay uint8). Tensors already there pass through."""
    fields = {}
    for f in dataclasses.fields(batch):
        x = getattr(batch, f.name)
        t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
        fields[f.name] = t.to(device, non_blocking=True)
    return type(batch)(**fields)
