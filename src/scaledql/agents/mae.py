"""Masked-autoencoder pretraining of the Scaled QL encoder on the dataset's frames (a ``Learner``).

The paper compares Scaled QL pretraining with MAE pretraining (He et al. 2022) for online
fine-tuning (its fine-tuning experiments, §6), without details. Here: random patches of
the stacked observation are blanked, the Scaled QL torso's encoder trunk encodes the masked
image, a light convolutional decoder (``models/decoder.py``) predicts the pixels, and the MSE on
the masked patches is minimized. Only frames are used: no actions, rewards or games.

``learner.torso`` is a ``models.torso.Torso`` built exactly as a Scaled QL torso with the same
encoder, width, feature_dim and observation shape, so ``torso.encoder.*`` loads into a Scaled QL
network. What MAE trains is the encoder's *trunk*; the ResNets' spatial-embedding readout and the
projection keep their initialization (see ``models.decoder.MAENetwork``).

An MAE has no actions: ``policy()`` plays uniformly random ones, so evaluating an MAE run
measures the random policy (it is a representation learner; fine-tune it to get a player).
Defaults and their sources: ``docs/defaults_bc_mae.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from scaledql import losses
from scaledql.agents.base import (
    BatchSpec,
    Learner,
    Problem,
    as_tensors,
    eval_mode,
    make_adam,
    maybe_compile,
    resolve_bf16,
    wrap_distributed,
)
from scaledql.agents.configs import MAEConfig
from scaledql.agents.optimization import gradient_step
from scaledql.agents.registry import register
from scaledql.data.sampling.sampler import TransitionBatch
from scaledql.errors import UserError
from scaledql.models import Torso
from scaledql.models.decoder import MAENetwork, random_patch_mask
from scaledql.policies import Policy, RandomPolicy

# Automatic patch sides: the target for large frames (84 → 7×7 patches) and for small grids
# (MinAtar 10 → 5×5); the largest divisor of both sides not above it is used.
LARGE_PATCH, SMALL_PATCH, SMALL_INPUT = 12, 2, 32


def auto_patch_size(height: int, width: int) -> int:
    """The patch side used when ``patch_size`` is None: 12 for 84×84, 2 for 10×10."""
    target = SMALL_PATCH if min(height, width) < SMALL_INPUT else LARGE_PATCH
    return max(p for p in range(1, target + 1) if height % p == 0 and width % p == 0)


@register
class MAE(Learner):
    """Masked reconstruction with the Scaled QL encoder; Adam on the trunk and the decoder.

    Masks: per step, the masks of the whole *global* batch are drawn from a torch generator
    seeded from (``mask_seed``, step), and each DDP rank takes its own rows — so K processes
    use exactly the masks one process would use on the union batch, and a resumed run draws
    exactly the masks of an uninterrupted one. The seed is drawn from torch's global RNG at
    construction (the run's seed fixes it; rank 0's is broadcast under DDP) and saved in
    ``state_dict``.
    """

    name = "mae"
    config_class = MAEConfig
    cfg: MAEConfig

    def __init__(self, cfg: MAEConfig, problem: Problem, device: torch.device | str = "cpu",
                 distributed: bool = False) -> None:
        super().__init__(cfg, problem, device, distributed)
        _, height, width = problem.obs_shape
        self.patch = cfg.patch_size or auto_patch_size(height, width)
        if height % self.patch or width % self.patch:
            raise UserError(f"patch_size {self.patch} does not divide the {height}×{width} frames")
        torso = Torso(cfg.torso_spec(), problem.obs_shape)
        self.network = MAENetwork(torso, problem.obs_shape, self.patch, cfg.decoder_width,
                                  cfg.decoder_depth, cfg.mask_fill == "learned").to(self.device)
        self._params = [p for p in self.network.parameters() if p.requires_grad]
        forward = wrap_distributed(self.network, self.device) if distributed else self.network
        self.optimizer = make_adam(self._params, cfg.effective_lr, cfg.adam_eps, self.device)
        self._train_forward = maybe_compile(forward, cfg.compile, self.device)
        self._bf16 = resolve_bf16(cfg.bf16, self.device)
        self.rank = torch.distributed.get_rank() if distributed else 0
        self.world_size = torch.distributed.get_world_size() if distributed else 1
        self.mask_seed = self._initial_seed(distributed)
        self._generator = torch.Generator(device=self.device)

    def _initial_seed(self, distributed: bool) -> int:
        seed = torch.randint(0, 2**62, (1,), dtype=torch.int64)
        if distributed:  # every rank uses rank 0's seed (plus its rank), as a resume would
            seed = seed.to(self.device)
            torch.distributed.broadcast(seed, src=0)
        return int(seed.item())

    @classmethod
    def tiny_config(cls) -> MAEConfig:
        return cls.config_class(encoder="nature", width=0.25, feature_dim=16, batch_size=8,
                                lr=1e-3, lr_scaling="none", bf16=False)

    # -- the interface -------------------------------------------------------------------------
    def batch_spec(self) -> BatchSpec:
        return BatchSpec("transitions", self.cfg.batch_size, n_step=1)  # only obs is read

    @property
    def torso(self) -> Torso:
        return self.network.torso

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"network": self.network}

    def param_counts(self) -> dict[str, int]:
        """encoder, projection (transferable; MAE trains the encoder's trunk only), decoder,
        total."""
        return self.network.param_counts()

    def draw_mask(self, batch_size: int, step: int | None = None) -> torch.Tensor:
        """bool[B, Hp, Wp] (True = masked) of ``step`` (default: the next update's): this rank's
        rows of the global batch's masks."""
        step = self.step if step is None else step
        seed = int(np.random.SeedSequence([self.mask_seed, step]).generate_state(1, np.uint64)[0] >> 1)
        self._generator.manual_seed(seed)
        every = random_patch_mask(batch_size * self.world_size, self.network.grid,
                                  self.cfg.mask_ratio, self._generator, self.device)
        return every[self.rank * batch_size:(self.rank + 1) * batch_size]

    def update(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        """One gradient step on the batch's ``obs`` (tensors on the device; numpy is moved).

        Returns 0-d tensors: loss (what is minimized: MSE on masked patches, of normalized
        patches when ``norm_pix``), masked_mse (MSE on masked patches in [0, 1] pixel units),
        grad_norm (before clipping). With ``norm_pix`` the prediction is mapped back to pixels
        with the target patches' own mean and std (as He et al.'s visualizations do), which
        tells it two statistics of each hidden patch: compare ``masked_mse`` only among runs
        with the same ``norm_pix``.
        """
        obs = as_tensors(batch, self.device).obs
        mask = self.draw_mask(obs.shape[0])
        self.network.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._bf16):
            pred = self._train_forward(obs, mask)
        pred = pred.float()  # the loss in float32 even under bf16
        pixels = obs.float() * self.cfg.obs_scale
        if self.cfg.norm_pix:
            target, mean, std = losses.patch_normalize(pixels, self.patch)
            loss = losses.masked_patch_mse(pred, target, mask, self.patch)
            with torch.no_grad():
                masked_mse = losses.masked_patch_mse(pred * std + mean, pixels, mask, self.patch)
        else:
            loss = losses.masked_patch_mse(pred, pixels, mask, self.patch)
            masked_mse = loss.detach()
        grad_norm = gradient_step(self.optimizer, loss, self._params, self.cfg.grad_clip)
        self.step += 1
        return {"loss": loss.detach(), "masked_mse": masked_mse, "grad_norm": grad_norm}

    @torch.no_grad()
    def reconstruct(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """obs uint8[B, C, H, W], mask bool[B, Hp, Wp] → float32[B, C, H, W] in pixel units
        ([0, 1]; per patch normalized when ``norm_pix``) — for inspection."""
        with eval_mode(self.network):
            return self.network(torch.as_tensor(obs).to(self.device), mask.to(self.device)).float()

    def policy(self) -> Policy:
        """Uniformly random actions (MAE learns no policy); seeded by the mask seed."""
        return RandomPolicy(self.problem.games, self.problem.num_actions, seed=self.mask_seed)

    def state_dict(self) -> dict[str, Any]:
        """Network (torso + decoder), optimizer state, step and mask seed."""
        return {"network": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                "step": self.step, "mask_seed": self.mask_seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.mask_seed = int(state["mask_seed"])
