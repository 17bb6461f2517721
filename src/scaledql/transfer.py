"""Transfer: a new learner's torso initialised from a pretrained run, with fresh heads.

The paper's fine-tuning reuses the pretrained *encoder* and re-initialises the dense layers and
the heads (``parts="encoder"``); ``parts="torso"`` also keeps the dense projection. Heads never
transfer: the new run's games may differ in number and action counts. The source may be any
learner with a torso (Scaled QL, DQN, BC, MAE) — their encoders share parameter names — and
the target any learner with a torso of the same encoder, width and input shape.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from scaledql.agents.base import Learner
from scaledql.checkpoint import load_learner
from scaledql.errors import UserError


@dataclass
class TransferReport:
    source: str  # the checkpoint's learner name and path
    loaded: list[str]  # parameter names (in the target's torso) taken from the source
    new: list[str]  # the target's parameters that start fresh (heads, and more)
    frozen: bool

    def describe(self) -> str:
        groups = sorted({".".join(n.split(".")[:2]) for n in self.loaded})
        return (f"[transfer] from {self.source}: loaded {len(self.loaded)} tensors "
                f"({', '.join(groups)}); new: {', '.join(self.new) or 'nothing'}; encoder "
                f"{'frozen' if self.frozen else 'trainable'}")


def transfer_torso(target: Learner, source: Path, parts: str = "encoder", freeze: bool = False,
                   verbose: bool = True) -> TransferReport:
    """Copy the source run's ``torso.encoder`` (or the whole torso) into ``target``'s torso.

    Shapes must match exactly (same encoder, width, feature size and observation shape);
    ``UserError`` names the first mismatch. ``freeze`` stops gradients into the encoder.
    """
    if target.torso is None:
        raise UserError(f"learner {target.name} has no torso to initialise")
    src, payload = load_learner(source, "cpu")
    if src.torso is None:
        raise UserError(f"{source}: a {src.name} run has no torso to transfer")
    theirs, ours = getattr(src.cfg, "encoder", None), getattr(target.cfg, "encoder", None)
    if theirs != ours:
        raise UserError(f"{source}: the pretrained encoder is {theirs!r}, this network's is "
                        f"{ours!r}")
    prefixes = ("encoder.",) if parts == "encoder" else ("encoder.", "projection.")
    wanted = {k: v for k, v in src.torso.state_dict().items() if k.startswith(prefixes)}
    mine = target.torso.state_dict()
    for key, value in wanted.items():
        if key not in mine:
            raise UserError(f"{source}: torso parameter {key} has no counterpart here")
        if mine[key].shape != value.shape:
            raise UserError(f"{source}: {key} has shape {tuple(value.shape)}, this network "
                            f"needs {tuple(mine[key].shape)} (same encoder, width and input?)")
    missing = [k for k in mine if k.startswith(prefixes) and k not in wanted]
    if missing:
        raise UserError(f"{source}: the pretrained torso lacks {missing[0]}")
    with torch.no_grad():
        for key, value in wanted.items():
            mine[key].copy_(value)
    if hasattr(target, "sync_target"):  # a target network starts equal to the online one
        target.sync_target()
    if freeze:
        target.freeze_encoder()
    loaded = sorted(f"torso.{k}" for k in wanted)
    new = sorted({".".join(name.split(".")[:2]) for module in target.modules().values()
                  for name, _ in module.named_parameters()
                  if not name.startswith(tuple(f"torso.{p}" for p in prefixes))})
    report = TransferReport(f"{payload['algo']} run {source}", loaded, new, freeze)
    if verbose:
        print(report.describe(), file=sys.stderr)
    return report
