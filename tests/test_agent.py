"""The Scaled QL agent: the update math, the update step, target schedule, checkpoints, acting."""

import io
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from scaledql.agents.base import Problem, as_tensors
from scaledql.agents.scaled_ql import ScaledQL, ScaledQLConfig, scaled_ql_loss
from scaledql.checkpoint import build_learner
from scaledql.data.sampling.sampler import TransitionBatch
from scaledql.errors import UserError
from scaledql.models import NetworkOutput
from scaledql.policies import epsilon_greedy
from scaledql.value_targets import VALUE_TARGETS

# Small tensors: one thread avoids OpenMP contention on the shared 2-core machine.
torch.set_num_threads(1)

OBS_SHAPE = (4, 10, 10)
NUM_ACTIONS = [3, 6]
TINY = ScaledQLConfig(encoder="nature", width=0.25, feature_dim=32, num_atoms=11, batch_size=16,
                   lr=1e-3, lr_scaling="none", bf16=False)  # exact numerics on any machine


Batch = TransitionBatch  # the sampler's batch layout, as the trainer passes it
PROBLEM = Problem(OBS_SHAPE, tuple(NUM_ACTIONS), ("g0", "g1"), frame_channels=1)


def batch_to_tensors(batch: Batch, device: str) -> Batch:
    return as_tensors(batch, torch.device(device))


def floats(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


def act(agent: ScaledQL, obs: np.ndarray, game_id: int, epsilon: float = 0.0,
        rng: np.random.Generator | None = None) -> np.ndarray:
    policy = agent.policy()
    policy.reset(agent.problem.games[game_id], len(obs))
    rng = rng if rng is not None else np.random.default_rng(0)
    return epsilon_greedy(policy, obs, epsilon, NUM_ACTIONS[game_id], rng)


def random_batch(size: int, seed: int = 0, num_actions=NUM_ACTIONS, obs_shape=OBS_SHAPE) -> Batch:
    rng = np.random.default_rng(seed)
    game_id = rng.integers(0, len(num_actions), size)
    return Batch(
        obs=rng.integers(0, 256, (size, *obs_shape), dtype=np.uint8),
        action=np.array([rng.integers(0, num_actions[g]) for g in game_id], dtype=np.int64),
        reward=rng.uniform(-1, 1, size).astype(np.float32),
        discount=np.full(size, 0.99**3, np.float32),
        done=(rng.random(size) < 0.2).astype(np.float32),
        next_obs=rng.integers(0, 256, (size, *obs_shape), dtype=np.uint8),
        game_id=game_id.astype(np.int64),
    )


def make_agent(cfg=TINY, seed=0, **kw) -> ScaledQL:
    torch.manual_seed(seed)
    return ScaledQL(cfg, PROBLEM, **kw)


@torch.no_grad()
def loss_on(agent: ScaledQL, batch: Batch) -> float:
    t = batch_to_tensors(batch, "cpu")
    out = agent.online(t.obs, t.game_id)
    loss, _ = scaled_ql_loss(out, agent.target(t.next_obs, t.game_id),
                             agent.online(t.next_obs, t.game_id), t, agent.cfg)
    return loss.item()


def test_scaled_ql_loss_mse_by_hand():
    # One sample, 2 actions. Double Q: the online net at s' prefers action 0, whose target
    # value is 0.5, so the target is 1 + 0.5 · 0.5 = 1.25 (not 1 + 0.5 · 3).
    cfg = ScaledQLConfig(loss="mse", cql_alpha=0.1)
    mask = torch.ones(1, 2, dtype=torch.bool)
    one = torch.ones(1)
    online = NetworkOutput(torch.tensor([[1.0, 2.0]]), mask, 2 * one)
    target = NetworkOutput(torch.tensor([[0.5, 3.0]]), mask, one)
    next_online = NetworkOutput(torch.tensor([[5.0, 0.0]]), mask, one)
    t = batch_to_tensors(Batch(obs=np.zeros((1, 1, 1, 1), np.uint8), action=np.array([0]),
                               reward=np.array([1.0], np.float32), discount=np.array([0.5], np.float32),
                               done=np.array([0.0], np.float32), next_obs=np.zeros((1, 1, 1, 1), np.uint8),
                               game_id=np.array([0])), "cpu")
    loss, m = scaled_ql_loss(online, target, next_online, t, cfg)
    td = 0.5 * (1.0 - 1.25) ** 2
    cql = math.log(math.e + math.e**2) - 1.0
    assert m["td_loss"].item() == pytest.approx(td)
    assert m["cql_loss"].item() == pytest.approx(cql)
    assert loss.item() == pytest.approx(td + 0.1 * cql)
    assert m["mean_q"].item() == pytest.approx(1.0) and m["feature_norm"].item() == 2.0
    # done = 1: no bootstrap, the target is the reward alone.
    t_done = replace(t, done=torch.ones(1))
    _, m = scaled_ql_loss(online, target, next_online, t_done, replace(cfg, cql_alpha=0.0))
    assert m["td_loss"].item() == pytest.approx(0.0)


def test_scaled_ql_loss_c51_terminal_target_by_hand():
    # Support [-1, 0, 1]; terminal transition with r = 0.5: target mass ½ on 0 and ½ on 1,
    # whatever the target net says. Online logits uniform → TD = −log(1/3).
    cfg = ScaledQLConfig(num_atoms=3, v_min=-1.0, v_max=1.0, cql_alpha=0.0)
    mask = torch.ones(1, 2, dtype=torch.bool)
    uniform = NetworkOutput(torch.zeros(1, 2, 3), mask, torch.ones(1))
    peaked = NetworkOutput(torch.tensor([[[9.0, 0.0, 0.0], [0.0, 0.0, 9.0]]]), mask, torch.ones(1))
    t = batch_to_tensors(Batch(obs=np.zeros((1, 1, 1, 1), np.uint8), action=np.array([1]),
                               reward=np.array([0.5], np.float32), discount=np.array([0.99], np.float32),
                               done=np.array([1.0], np.float32), next_obs=np.zeros((1, 1, 1, 1), np.uint8),
                               game_id=np.array([0])), "cpu")
    loss, m = scaled_ql_loss(uniform, peaked, peaked, t, cfg)
    assert loss.item() == pytest.approx(math.log(3.0), abs=1e-6)
    assert m["mean_q"].item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("variant", [
    {},
    {"loss": "mse", "cql_alpha": 0.0, "huber_delta": 1.0},  # the online DQN collector
    {"feature_norm": False, "cql_alpha": 1.0},
    {"bf16": True, "channels_last": True},  # the fast CPU/GPU execution path
])
def test_one_update_decreases_loss_on_a_fixed_batch(variant):
    agent = make_agent(replace(TINY, **variant))
    batch = random_batch(16)
    before = loss_on(agent, batch)
    metrics = floats(agent.update(batch))
    # The update reports the loss it stepped on (bf16 forward passes round it a little).
    assert metrics["loss"] == pytest.approx(before, rel=1e-3 if agent._bf16 else 1e-5)
    assert loss_on(agent, batch) < before
    assert set(metrics) >= {"loss", "td_loss", "cql_loss", "mean_q", "feature_norm", "grad_norm"}
    assert all(math.isfinite(v) for v in metrics.values())


def test_cql_alpha_zero_means_pure_td():
    agent = make_agent(replace(TINY, cql_alpha=0.0))
    m = floats(agent.update(random_batch(8)))
    assert m["loss"] == pytest.approx(m["td_loss"]) and m["cql_loss"] > 0


@pytest.mark.parametrize("bf16", [False, True])
def test_target_network_updates_every_period(bf16):
    agent = make_agent(replace(TINY, target_update_period=3, bf16=bf16))
    initial = {k: v.clone() for k, v in agent.target.state_dict().items()}

    def target_equals(state):
        return all(torch.equal(v, state[k]) for k, v in agent.target.state_dict().items())

    for step in (1, 2):
        agent.update(random_batch(8, seed=step))
        assert agent.step == step and target_equals(initial)
        assert not target_equals(agent.online.state_dict())
    agent.update(random_batch(8, seed=3))
    assert target_equals(agent.online.state_dict())
    if agent._target_bf16 is not None:  # the bf16 copy the update reads follows the target
        for k, v in agent._target_bf16.state_dict().items():
            assert torch.equal(v, agent.target.state_dict()[k].to(v.dtype)), k
    agent.update(random_batch(8, seed=4))
    assert not target_equals(agent.online.state_dict())


@pytest.mark.parametrize("bf16", [False, True])
def test_state_dict_round_trip_continues_identically(bf16):
    cfg = replace(TINY, bf16=bf16)
    a = make_agent(cfg, seed=0)
    for s in range(3):
        a.update(random_batch(8, seed=s))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = make_agent(cfg, seed=123)  # different initial weights, overwritten by the load
    b.load_state_dict(torch.load(buffer))
    assert b.step == 3
    ma, mb = floats(a.update(random_batch(8, seed=9))), floats(b.update(random_batch(8, seed=9)))
    assert ma == mb
    for (k, va), vb in zip(a.online.state_dict().items(), b.online.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    for va, vb in zip(a.target.state_dict().values(), b.target.state_dict().values(), strict=True):
        assert torch.equal(va, vb)


def test_act_respects_epsilon_and_action_counts():
    agent = make_agent()
    obs = random_batch(200).obs
    rng = np.random.default_rng(0)
    explore = act(agent, obs, 0, 1.0, rng)
    assert explore.dtype == np.int64 and set(explore.tolist()) == {0, 1, 2}  # game 0 has 3 actions
    greedy = act(agent, obs, 1, 0.0, rng)
    q = agent.q_values(torch.from_numpy(obs), 1)
    assert np.array_equal(greedy, q.argmax(1).numpy())
    # Game 0 has 3 of the 6 padded actions: its padded Qs are -inf, so greedy never picks them.
    q0 = agent.q_values(torch.from_numpy(obs), 0)
    assert torch.isinf(q0[:, 3:]).all() and torch.isfinite(q0[:, :3]).all()
    with torch.no_grad():  # make the padding columns' source as attractive as possible
        agent.online.heads.heads[0].bias.fill_(0.0)
        agent.online.heads.heads[0].bias[:11].fill_(100.0)
    assert act(agent, obs, 0, 0.0, rng).max() <= 2
    mixed = act(agent, obs, 1, 0.5, np.random.default_rng(1))
    assert 0.2 < np.mean(mixed != greedy) < 0.6  # about ε·(1 − 1/6) differ from greedy


def test_learning_rate_scaling_rule():
    assert ScaledQLConfig(batch_size=512).effective_lr == pytest.approx(2e-4)
    assert ScaledQLConfig(batch_size=32).effective_lr == pytest.approx(5e-5)  # sqrt: the paper's pair
    assert ScaledQLConfig(batch_size=32, lr_scaling="linear").effective_lr == pytest.approx(1.25e-5)
    assert ScaledQLConfig(batch_size=32, lr_scaling="none").effective_lr == pytest.approx(2e-4)
    agent = make_agent(replace(TINY, lr=4e-4, lr_batch_size=64, batch_size=16, lr_scaling="sqrt"))
    assert agent.optimizer.param_groups[0]["lr"] == pytest.approx(2e-4)


@pytest.mark.parametrize(("field", "value"), [
    ("loss", "huber"), ("encoder", "vgg"), ("cql_alpha", -1.0), ("v_max", -20.0), ("lr_scaling", "cubic"),
])
def test_bad_config_is_a_user_error(field, value):
    with pytest.raises(UserError):
        replace(TINY, **{field: value}).validate()


def test_grad_clip_and_param_counts():
    agent = make_agent(replace(TINY, grad_clip=1e-3))
    before = [p.clone() for p in agent.online.parameters()]
    m = floats(agent.update(random_batch(8)))
    assert m["grad_norm"] > 1e-3  # reported before clipping
    counts = agent.param_counts()
    assert counts["total"] == sum(p.numel() for p in before)
    assert counts["heads"] == (32 + 1) * (3 + 6) * 11


def test_rebuild_from_checkpoint_payload_loaded_weights_only(tmp_path):
    from scaledql.checkpoint import learner_payload

    agent = make_agent()
    agent.update(random_batch(8))
    torch.save(learner_payload(agent, "minatar", {}), tmp_path / "ckpt.pt")
    loaded = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    rebuilt = build_learner(loaded, "cpu")
    obs = random_batch(5).obs
    assert rebuilt.step == 1 and rebuilt.cfg == agent.cfg
    assert np.array_equal(act(rebuilt, obs, 1), act(agent, obs, 1))
    with pytest.raises(UserError, match="do not fit"):
        build_learner({**loaded, "num_actions": [3, 7]}, "cpu")
    with pytest.raises(UserError, match="unknown key 'nope'"):
        build_learner({**loaded, "learner_config": {"nope": 1}}, "cpu")


@pytest.mark.parametrize("loss", list(VALUE_TARGETS))
def test_learns_a_two_game_contextual_bandit_from_random_data(loss):
    """Offline data from a uniform-random policy; reward 1 for the context's best action.

    Two games with different action counts and different best actions, mixed in every batch:
    the greedy policy must pick each game's best action in each context, which needs the
    per-game heads, the masks and the TD/CQL losses to work together.
    """
    best = {0: [2, 0], 1: [1, 4]}  # game → best action in context 0 / context 1
    rng = np.random.default_rng(0)

    def bandit_batch(size):
        game = rng.integers(0, 2, size)
        context = rng.integers(0, 2, size)
        action = np.array([rng.integers(0, NUM_ACTIONS[g]) for g in game])
        obs = np.zeros((size, *OBS_SHAPE), np.uint8)
        obs[context == 1] = 255
        reward = np.array([float(a == best[g][c]) for g, c, a in zip(game, context, action, strict=True)],
                          np.float32)
        return Batch(obs=obs, action=action, reward=reward, discount=np.full(size, 0.99, np.float32),
                     done=np.ones(size, np.float32), next_obs=obs.copy(), game_id=game)

    agent = make_agent(replace(TINY, loss=loss, v_min=-2.0, v_max=2.0, target_update_period=50))
    for _ in range(400):
        agent.update(bandit_batch(32))
    for game in (0, 1):
        for context in (0, 1):
            obs = np.zeros((1, *OBS_SHAPE), np.uint8)
            obs[:] = 255 * context
            assert act(agent, obs, game)[0] == best[game][context], (game, context)


def test_version_1_checkpoints_load(tmp_path):
    """Files written before the learner interface (a Scaled QL ``agent`` without a torso module)
    still evaluate: keys are mapped to the torso, n-step comes from the old train config."""
    from scaledql.checkpoint import load_learner

    agent = make_agent()
    agent.update(random_batch(8))
    old = {k.removeprefix("torso."): v for k, v in agent.online.state_dict().items()}
    cfg = {k: v for k, v in agent.cfg.to_dict().items() if k not in ("n_step", "reward_clip",
                                                                     "encoder_layout")}
    torch.save({"format": "scaledql-checkpoint", "version": 1, "step": 1, "suite": "minatar",
                "games": ["breakout", "asterix"], "num_actions": NUM_ACTIONS, "obs_shape": list(OBS_SHAPE),
                "agent_config": cfg, "train_config": {"n_step": 2, "reward_clip": 1.0},
                "agent": {"online": old, "target": old, "optimizer": agent.optimizer.state_dict(),
                          "step": 1}}, tmp_path / "v1.pt")
    learner, payload = load_learner(tmp_path / "v1.pt", "cpu")
    assert payload["version"] == 2 and learner.name == "scaled-ql" and learner.cfg.n_step == 2
    assert learner.problem.frame_channels == 10
    for k, v in agent.online.state_dict().items():
        assert torch.equal(learner.online.state_dict()[k], v), k


def test_bf16_where_native_and_compile_on_cuda_by_default(monkeypatch):
    """None ("auto"): bf16 wherever it is native (a CUDA GPU or a CPU with AVX512-BF16/AMX),
    compile on CUDA only; an explicit value wins; the data-collecting DQN stays float32."""
    from scaledql.agents import base

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(base, "bf16_supported", lambda device: True)
    assert base.resolve_bf16(None, cpu) is True and base.resolve_bf16(None, cuda) is True
    assert base.resolve_bf16(True, cpu) is True and base.resolve_bf16(False, cuda) is False
    monkeypatch.setattr(base, "bf16_supported", lambda device: device.type == "cpu")
    assert base.resolve_bf16(None, cuda) is False  # a GPU without bf16: float32, no warning
    monkeypatch.setattr(base, "bf16_supported", lambda device: False)
    assert base.resolve_bf16(None, cpu) is False  # emulated bf16 would be slow: float32
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module: compiled.append(module) or module)
    net = torch.nn.Linear(2, 2)
    base.maybe_compile(net, None, cpu)
    assert compiled == []
    base.maybe_compile(net, None, cuda)
    base.maybe_compile(net, False, cuda)
    assert compiled == [net]
    from scaledql.agents.configs import ScaledQLConfig

    assert ScaledQLConfig().bf16 is None and ScaledQLConfig().compile is None
    from scaledql.agents.configs import DQNConfig

    assert DQNConfig().bf16 is False  # collected stores keep their bytes


def test_train_flags_bf16_compile_tristate(tmp_path):
    from scaledql.cli import build_parser
    from scaledql.cli.train import _overrides

    parser = build_parser()
    base_argv = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    assert _overrides(parser.parse_args(base_argv))[1] == {}
    assert _overrides(parser.parse_args([*base_argv, "--no-bf16", "--compile"]))[1] == {
        "bf16": False, "compile": True}
