"""The value-target seam: the registry against its classes, every target through the learner's
objective (CQL, double-Q, the bootstrap discount), each loss minimized by its own target, and
C51 and mse computing what they computed before the seam existed, bit for bit.

The pure functions behind the targets are checked by hand in ``tests/test_losses.py``; every
target also passes the learner conformance test (``tests/test_conformance.py``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from scaledql import losses
from scaledql.agents.base import Problem, as_tensors
from scaledql.agents.configs import ScaledQLConfig
from scaledql.agents.scaled_ql import ScaledQL, scaled_ql_loss
from scaledql.data.sampling.sampler import TransitionBatch
from scaledql.errors import UserError
from scaledql.models import NetworkOutput
from scaledql.value_targets import (
    VALUE_TARGETS,
    make_value_target,
    register_value_target,
    value_target_class,
    value_target_names,
    value_target_summary,
)
from scaledql.value_targets.base import ValueTarget
from scaledql.value_targets.categorical import HistogramTarget

torch.set_num_threads(1)

TARGETS = list(VALUE_TARGETS)
B, A, N = 6, 3, 11


def options(loss: str, **kw) -> ScaledQLConfig:
    return ScaledQLConfig(loss=loss, num_atoms=N, v_min=-2.0, v_max=2.0, **kw)


def outputs(loss: str, seed: int, scale: float = 1.0) -> NetworkOutput:
    """Random network outputs of the shape the target asks for: [B, A, N] or [B, A]."""
    g = torch.Generator().manual_seed(seed)
    n = value_target_class(loss).outputs_per_action(options(loss))
    shape = (B, A) if n is None else (B, A, n)
    mask = torch.ones(B, A, dtype=torch.bool)
    mask[0, 2] = False  # a game with fewer actions
    return NetworkOutput(torch.randn(shape, generator=g) * scale, mask,
                         torch.rand(B, generator=g) + 0.5)


def batch(seed: int = 0) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    return as_tensors(TransitionBatch(
        obs=np.zeros((B, 1, 1, 1), np.uint8), action=rng.integers(0, 2, B),
        reward=rng.uniform(-1, 1, B).astype(np.float32),
        discount=np.full(B, 0.97, np.float32),
        done=np.array([0, 1, 0, 0, 1, 0], np.float32),
        next_obs=np.zeros((B, 1, 1, 1), np.uint8), game_id=np.zeros(B, np.int64)),
        torch.device("cpu"))


# -- the registry --------------------------------------------------------------------------
@pytest.mark.parametrize("name", TARGETS)
def test_table_row_matches_the_class(name):
    cls = value_target_class(name)
    assert cls.name == name and issubclass(cls, ValueTarget)
    assert cls.__module__ == f"scaledql.value_targets.{VALUE_TARGETS[name].module}"
    assert cls.summary == value_target_summary(name) == VALUE_TARGETS[name].summary


def test_names_and_unknown_target():
    assert value_target_names()[:4] == ["c51", "hl-gauss", "two-hot", "mse"]
    assert ScaledQLConfig().loss == "c51"  # the paper's
    with pytest.raises(UserError, match=r"unknown loss 'nope' \(choose from c51, hl-gauss"):
        value_target_class("nope")
    with pytest.raises(UserError, match="unknown loss 'nope'"):
        ScaledQLConfig(loss="nope").validate()


@pytest.mark.parametrize("ratio", [0.0, -0.5, float("nan"), float("inf")])
def test_an_invalid_sigma_ratio_is_refused(ratio):
    with pytest.raises(UserError, match="hl_gauss_sigma_ratio must be"):
        ScaledQLConfig(loss="hl-gauss", hl_gauss_sigma_ratio=ratio).validate()


@pytest.fixture
def plugin_registry(monkeypatch):
    import scaledql.value_targets as registry

    monkeypatch.setattr(registry, "_PLUGINS", {})


def _plugin_target(name: str, module: str = "user_code") -> type:
    def scalar_to_probs(self, target):  # all mass on the nearest centre
        nearest = (target[:, None] - self.centres).abs().argmin(-1)
        return torch.nn.functional.one_hot(nearest, len(self.centres)).float()

    return type("Nearest", (HistogramTarget,), {"name": name, "__module__": module,
                                                "__doc__": "One-hot on the nearest centre.\n\n.",
                                                "scalar_to_probs": scalar_to_probs})


def test_a_plugin_target_registers_and_trains(plugin_registry):
    cls = register_value_target(_plugin_target("nearest"))
    assert register_value_target(cls) is cls  # again: a no-op
    assert value_target_class("nearest") is cls and "nearest" in value_target_names()
    assert value_target_summary("nearest") == "One-hot on the nearest centre."
    cfg = replace(ScaledQL.tiny_config(), loss="nearest").validate()
    problem = Problem((4, 10, 10), (3,), ("g",), frame_channels=1)
    agent = ScaledQL(cfg, problem)
    rng = np.random.default_rng(0)
    data = TransitionBatch(obs=rng.integers(0, 256, (8, 4, 10, 10), dtype=np.uint8),
                           action=rng.integers(0, 3, 8), reward=np.ones(8, np.float32),
                           discount=np.full(8, 0.9, np.float32), done=np.zeros(8, np.float32),
                           next_obs=rng.integers(0, 256, (8, 4, 10, 10), dtype=np.uint8),
                           game_id=np.zeros(8, np.int64))
    assert np.isfinite(float(agent.update(data)["loss"]))


def test_register_refuses_what_it_cannot_take(plugin_registry):
    register_value_target(_plugin_target("nearest"))
    with pytest.raises(ValueError, match="'c51' is a built-in value target"):
        register_value_target(_plugin_target("c51"))
    with pytest.raises(ValueError, match="two value targets named 'nearest'"):
        register_value_target(_plugin_target("nearest", module="elsewhere"))
    with pytest.raises(ValueError, match="lower-case name"):
        register_value_target(_plugin_target("Bad Name"))
    with pytest.raises(TypeError, match="not a subclass"):
        register_value_target(type("NotATarget", (), {"name": "x"}))
    with pytest.raises(ValueError, match="no matching row"):  # inside the package: a row needed
        register_value_target(_plugin_target("stray", module="scaledql.value_targets.stray"))


# -- every target through the objective -----------------------------------------------------
@pytest.mark.parametrize("name", TARGETS)
def test_cql_acts_on_the_targets_q_values(name):
    cfg = options(name, cql_alpha=0.3)
    online, target, next_online = outputs(name, 0), outputs(name, 1), outputs(name, 2)
    t = batch()
    loss, m = scaled_ql_loss(online, target, next_online, t, cfg)
    q = make_value_target(cfg).q_values(online.values)
    cql = losses.cql_term(q, t.action, online.action_mask).mean()
    torch.testing.assert_close(m["cql_loss"], cql)
    torch.testing.assert_close(loss, m["td_loss"] + 0.3 * cql)
    torch.testing.assert_close(m["mean_q"], q[torch.arange(B), t.action].mean())


@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("double_q", [True, False])
def test_the_bootstrap_action_and_discount_reach_every_target(name, double_q):
    """Double-Q: the online net at s' picks a*, the target net's outputs at a* are bootstrapped
    with ``γ^k (1 − done)``; without it the target net picks. Outputs are made so that the two
    nets prefer different actions."""
    cfg = options(name, cql_alpha=0.0, double_q=double_q)
    vt = make_value_target(cfg)
    online, target, next_online = outputs(name, 0), outputs(name, 1), outputs(name, 2)
    t = batch()
    rows = torch.arange(B)
    chooser = next_online if double_q else target
    a_star = losses.masked_argmax(vt.q_values(chooser.values), target.action_mask)
    other = losses.masked_argmax(vt.q_values((target if double_q else next_online).values),
                                 target.action_mask)
    assert (a_star != other).any()  # the choice matters on this batch
    want = vt.td_target(t.reward, t.discount * (1 - t.done), target.values[rows, a_star])
    td = vt.td_loss(online.values[rows, t.action], want).mean()
    _, m = scaled_ql_loss(online, target, next_online, t, cfg)
    torch.testing.assert_close(m["td_loss"], td)


@pytest.mark.parametrize("name", TARGETS)
def test_a_terminal_transition_targets_the_reward_alone(name):
    cfg = options(name)
    vt = make_value_target(cfg)
    reward = torch.tensor([0.25, -0.7])
    a = vt.td_target(reward, torch.zeros(2), outputs(name, 1).values[:2, 0])
    b = vt.td_target(reward, torch.zeros(2), outputs(name, 2).values[:2, 0] * 5)
    torch.testing.assert_close(a, b)  # the next state's outputs do not matter
    # its mean is the reward (the reward lies inside every target's support here)
    mean = a if a.dim() == 1 else a @ (vt.support if name == "c51" else vt.centres)
    torch.testing.assert_close(mean, reward, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", TARGETS)
def test_each_loss_is_minimized_by_its_own_target(name):
    """The outputs that represent the target (the target itself, or its log-probabilities)
    have zero gradient and a lower loss than any nearby outputs; their Q is the target's mean."""
    cfg = options(name, hl_gauss_sigma_ratio=0.75)
    vt = make_value_target(cfg)
    g = torch.Generator().manual_seed(3)
    next_outputs = outputs(name, 4).values[:, 0]
    reward, discount = torch.rand(B, generator=g) - 0.5, torch.full((B,), 0.9)
    target = vt.td_target(reward, discount, next_outputs)
    best = target.clone() if target.dim() == 1 else target.clamp(min=1e-30).log()
    best.requires_grad_(True)
    loss = vt.td_loss(best, target)
    (grad,) = torch.autograd.grad(loss.sum(), best)
    torch.testing.assert_close(grad, torch.zeros_like(grad), atol=1e-6, rtol=0)
    for seed in range(5):
        nudge = torch.randn(best.shape, generator=torch.Generator().manual_seed(seed)) * 0.05
        assert (vt.td_loss(best.detach() + nudge, target) > loss.detach()).all()
    q = vt.q_values(best.detach()[:, None])[:, 0]
    mean = target if target.dim() == 1 else target @ (vt.support if name == "c51" else vt.centres)
    torch.testing.assert_close(q, mean, atol=1e-5, rtol=0)


# -- C51 and mse compute what they computed before the seam, bit for bit ----------------------
def _before_the_seam(online, target_out, next_online_out, t, cfg):
    """The objective's TD and Q exactly as ``scaled_ql_loss`` wrote them before value targets
    (the ``cfg.loss == "c51"`` branch and its ``else``), kept as the reference they must meet."""
    rows = torch.arange(t.action.shape[0])
    bootstrap = t.discount * (1.0 - t.done)
    values = online.values.float()
    if cfg.loss == "c51":
        support = losses.make_support(cfg.v_min, cfg.v_max, cfg.num_atoms)
        q = losses.expected_q(values, support)
        chooser = next_online_out if cfg.double_q else target_out
        next_q = losses.expected_q(chooser.values.float(), support)
        next_action = losses.masked_argmax(next_q, target_out.action_mask)
        next_probs = torch.softmax(target_out.values.float()[rows, next_action], dim=-1)
        # losses.categorical_projection as it was written then
        v_min, v_max = support[0], support[-1]
        delta_z = (v_max - v_min) / (support.numel() - 1)
        shifted = (t.reward[:, None] + bootstrap[:, None] * support[None, :]).clamp(v_min, v_max)
        weight = (1.0 - (shifted[:, :, None] - support[None, None, :]).abs() / delta_z).clamp(min=0.0)
        target_probs = torch.einsum("bi,bij->bj", next_probs, weight)
        return q, losses.cross_entropy_td_loss(values[rows, t.action], target_probs)
    target_q = target_out.values.float()
    chooser_q = next_online_out.values.float() if cfg.double_q else target_q
    next_action = losses.masked_argmax(chooser_q, target_out.action_mask)
    target = losses.scalar_td_target(t.reward, bootstrap, target_q[rows, next_action])
    return values, losses.mse_td_loss(values[rows, t.action], target, cfg.huber_delta)


@pytest.mark.parametrize("variant", [
    {"loss": "c51"}, {"loss": "c51", "double_q": False}, {"loss": "mse"},
    {"loss": "mse", "huber_delta": 1.0, "double_q": False},
])
def test_c51_and_mse_are_unchanged_bit_for_bit(variant):
    cfg = options(**variant, cql_alpha=0.1)
    name = cfg.loss
    online = outputs(name, 0, scale=3.0)
    online = online._replace(values=online.values.requires_grad_(True))
    target, next_online, t = outputs(name, 1, scale=3.0), outputs(name, 2, scale=3.0), batch()
    q, td = _before_the_seam(online, target, next_online, t, cfg)
    want = td.mean() + 0.1 * losses.cql_term(q, t.action, online.action_mask).mean()
    (want_grad,) = torch.autograd.grad(want, online.values)
    loss, _ = scaled_ql_loss(online, target, next_online, t, cfg)
    (grad,) = torch.autograd.grad(loss, online.values)
    assert torch.equal(loss, want) and torch.equal(grad, want_grad)


def test_the_docs_describe_every_value_target():
    """docs/defaults.md's *Value targets* table has a row for every built-in target."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "defaults.md").read_text()
    section = doc[doc.index("## Value targets"):doc.index("## Optimization")]
    rows = [line.split("|")[1].strip() for line in section.splitlines()
            if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows][1:] == list(VALUE_TARGETS)  # after the header
