"""``agents.optimization.gradient_step``: the learners' one optimizer step equals the sequence
each learner wrote out before (zero, backward, clip, schedule, step), bit for bit."""

from __future__ import annotations

import math

import pytest
import torch

from scaledql.agents.optimization import gradient_step


def _model_and_loss(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.Tensor]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(4, 5)
    return model, optimizer, (model(x) ** 2).mean()


@pytest.mark.parametrize(("grad_clip", "lr"), [(None, None), (0.01, None), (None, 3e-3),
                                               (0.5, 1e-4)])
def test_gradient_step_is_the_written_out_sequence(grad_clip, lr):
    model, optimizer, loss = _model_and_loss(0)
    norm = gradient_step(optimizer, loss, model.parameters(), grad_clip, lr=lr)

    ref, ref_optimizer, ref_loss = _model_and_loss(0)
    ref_optimizer.zero_grad(set_to_none=True)
    ref_loss.backward()
    ref_norm = torch.nn.utils.clip_grad_norm_(
        ref.parameters(), grad_clip if grad_clip is not None else math.inf)
    if lr is not None:
        for group in ref_optimizer.param_groups:
            group["lr"] = lr
    ref_optimizer.step()

    assert torch.equal(norm, ref_norm)
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    assert optimizer.param_groups[0]["lr"] == (lr if lr is not None else 1e-2)


def test_gradient_step_clears_old_gradients():
    model, optimizer, loss = _model_and_loss(1)
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e6)  # stale: must not leak into the step
    norm = gradient_step(optimizer, loss, model.parameters(), None)
    assert float(norm) < 1e3
