"""Learning diagnostics the training loop logs, on by default (``docs/diagnostics.md``).

Each update's value metrics (Q spread, action gap, CQL per game) come from the loss
(``losses.value_diagnostics``). What needs the optimizer or a fixed set of states is here, and
knows learners only through the interface (``optimizer``, ``parts()``, ``features()``):

- ``UpdateProbe``: on a logged step, the weights before the update and, after it, per part
  (encoder, projection, heads, head biases): the update-to-weight ratio ‖Δw‖ / ‖w‖ and the
  share of weights whose Adam step is ε-dominated (√v̂ < ε: Adam then takes a step of about
  lr·m̂/ε, an SGD step scaled by lr/ε, instead of a normalized one).
- ``representation_metrics``: at each evaluation, on a fixed probe batch drawn once per run,
  the effective rank (srank, Kumar et al. 2021, δ = 0.01) and the dead-unit share of the
  features *before* normalization (ReLU(projection): the same quantity with or without feature
  normalization, so arms compare), and DR3's co-adaptation (Kumar et al. 2022) on the features
  the heads read: the mean dot product φ(s)·φ(s′) of consecutive states' features, and its
  cosine.

Cost: the probe copies the weights once per log row (every ``log_every`` steps); the
representation metrics run one forward pass of ``PROBE_SIZE`` states per evaluation.
"""

from __future__ import annotations

import math

import torch

from scaledql.agents.base import Learner

PROBE_SIZE = 512  # states whose features srank and DR3 are measured on
SRANK_DELTA = 0.01  # Kumar et al. (2021)


def _adam_eps_share(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter]
                    ) -> float | None:
    """Share of the elements of ``params`` whose bias-corrected √v̂ is below Adam's ε; None if
    the optimizer is not Adam-like or has not stepped yet."""
    below, total = 0, 0
    for group in optimizer.param_groups:
        if "eps" not in group or "betas" not in group:
            return None
        eps, beta2 = group["eps"], group["betas"][1]
        ids = {id(p) for p in params}
        for p in group["params"]:
            state = optimizer.state.get(p)
            if id(p) not in ids or not state or "exp_avg_sq" not in state:
                continue
            step = float(state["step"])
            v_hat = state["exp_avg_sq"].float() / (1.0 - beta2 ** step)
            below += int((v_hat.sqrt() < eps).sum())
            total += p.numel()
    return below / total if total else None


class UpdateProbe:
    """Weights before one update; ``after()`` says what the update did, per part."""

    def __init__(self, learner: Learner) -> None:
        self.learner = learner
        self.parts = {name: ps for name, ps in learner.parts().items()
                      if any(p.requires_grad for p in ps)}
        self.before = {name: [p.detach().clone() for p in ps] for name, ps in self.parts.items()}

    @torch.no_grad()
    def after(self) -> dict[str, float]:
        """``update_ratio/<part>`` and ``eps_dominated/<part>`` as floats."""
        row: dict[str, float] = {}
        optimizer = self.learner.optimizer
        for name, params in self.parts.items():
            delta = sum(float((p.detach().float() - b.float()).pow(2).sum())
                        for p, b in zip(params, self.before[name], strict=True))
            norm = sum(float(b.float().pow(2).sum()) for b in self.before[name])
            if norm > 0:
                row[f"update_ratio/{name}"] = math.sqrt(delta / norm)
            share = _adam_eps_share(optimizer, params) if optimizer is not None else None
            if share is not None:
                row[f"eps_dominated/{name}"] = share
        return row


def srank(features: torch.Tensor, delta: float = SRANK_DELTA) -> int:
    """Effective rank of float[B, D] features: the fewest singular values whose sum reaches
    1 − δ of the total (Kumar et al. 2021, "Implicit Under-Parameterization")."""
    sv = torch.linalg.svdvals(features.double())
    if float(sv.sum()) <= 0:
        return 0
    cumulative = torch.cumsum(sv, 0) / sv.sum()
    return int(torch.searchsorted(cumulative, torch.tensor(1.0 - delta, dtype=cumulative.dtype))
               ) + 1


@torch.no_grad()
def representation_metrics(learner: Learner, obs: torch.Tensor, next_obs: torch.Tensor,
                           game_id: torch.Tensor) -> dict[str, float]:
    """On a probe batch (uint8 obs/next_obs[B, ...], game_id int64[B]): srank of the
    pre-normalization features ReLU(projection(s)) and ``dead_units``, the share of their units
    that are zero on every probe state (dead ReLUs: no gradient reaches their weights); DR3's
    mean φ(s)·φ(s′) and mean cos(φ(s), φ(s′)) on the features the heads read. {} for a learner
    without features."""
    raw = learner.features(obs, game_id, pre_norm=True)
    if raw is None:
        return {}
    phi = learner.features(obs, game_id)
    phi_next = learner.features(next_obs, game_id)
    dots = (phi * phi_next).sum(1)
    cos = dots / (phi.norm(dim=1) * phi_next.norm(dim=1)).clamp(min=1e-12)
    return {"srank": float(srank(raw)), "srank_of": float(min(raw.shape)),
            "dead_units": float((raw <= 0).all(dim=0).float().mean()),
            "dr3_dot": float(dots.mean()), "dr3_cos": float(cos.mean())}

