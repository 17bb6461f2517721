"""The one gradient step every learner takes: clear, backpropagate, clip, (schedule), step.

Written once so that the learners cannot drift apart in the order of these operations (the
order fixes the numbers: a resumed or DDP run must match an uninterrupted one bit for bit).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def gradient_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                  params: Iterable[torch.nn.Parameter], grad_clip: float | None,
                  lr: float | None = None) -> torch.Tensor:
    """One optimizer step on ``loss``: zero the gradients, backpropagate, clip their global
    norm to ``grad_clip`` (None: no clipping, the norm is still measured), set every parameter
    group's learning rate to ``lr`` when given (a schedule), then step. Returns the gradients'
    global norm before clipping (a 0-d tensor)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    max_norm = grad_clip if grad_clip is not None else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    optimizer.step()
    return grad_norm
