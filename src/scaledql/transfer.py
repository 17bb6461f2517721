"""Transfer: a new learner's torso initialised from a pretrained run, with fresh heads.

The paper's fine-tuning reuses the pretrained *encoder* and re-initialises the dense layers and
the heads (``parts="encoder"``); ``parts="torso"`` also keeps the dense projection;
``parts="network"`` keeps the whole network — torso and, for each of the new run's games that
the source was trained on, that game's head (a variant of a pretraining game starts from the
policy it had). Other heads start fresh. The source may be any
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
from scaledql.models.heads import MultiGameHeads

PARTS = ("encoder", "torso", "network")


def _heads(learner: Learner) -> MultiGameHeads | None:
    """The learner's per-game heads (on the network that holds its torso), or None."""
    for module in learner.modules().values():
        heads = getattr(module, "heads", None)
        if isinstance(heads, MultiGameHeads):
            return heads
    return None


def _copy_heads(target: Learner, src: Learner, source: Path) -> list[str]:
    """Copy each target game's head from the source's head of the same game; returns the
    copied games. Both must make the same outputs per action (atoms)."""
    ours, theirs = _heads(target), _heads(src)
    if ours is None or theirs is None:
        raise UserError(f"{source}: --init-parts network needs per-game heads on both networks")
    copied = []
    for j, game in enumerate(target.problem.games):
        if game not in src.problem.games:
            continue
        i = src.problem.games.index(game)
        mine, given = ours.heads[j], theirs.heads[i]
        if mine.weight.shape != given.weight.shape:
            raise UserError(f"{source}: the {game} head has shape {tuple(given.weight.shape)}, "
                            f"this network's {tuple(mine.weight.shape)} (other atoms or actions?)")
        with torch.no_grad():
            mine.weight.copy_(given.weight)
            mine.bias.copy_(given.bias)
        copied.append(game)
    if not copied:
        raise UserError(f"{source}: none of {', '.join(target.problem.games)} was among its "
                        f"games ({', '.join(src.problem.games)}): no head to keep")
    return copied


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
    if parts not in PARTS:
        raise UserError(f"init parts must be one of {', '.join(PARTS)}, got {parts!r}")
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
    heads = _copy_heads(target, src, source) if parts == "network" else []
    if hasattr(target, "sync_target"):  # a target network starts equal to the online one
        target.sync_target()
    if freeze:
        target.freeze_encoder()
    loaded = sorted(f"torso.{k}" for k in wanted) + [f"heads.{g}" for g in heads]
    kept = tuple(f"torso.{p}" for p in prefixes) + (("heads.",) if heads else ())
    new = sorted({".".join(name.split(".")[:2]) for module in target.modules().values()
                  for name, _ in module.named_parameters() if not name.startswith(kept)})
    report = TransferReport(f"{payload['algo']} run {source}", loaded, new, freeze)
    if verbose:
        print(report.describe(), file=sys.stderr)
    return report
