"""The multi-game Decision Transformer: attention mask, patching, tokenization, the loss by hand,
expert-return sampling, learning, checkpoint round trips and the policy's histories."""

from __future__ import annotations

import io
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scaledql import losses
from scaledql.agents.base import Problem
from scaledql.agents.decision_transformer import DecisionTransformer, DecisionTransformerConfig
from scaledql.agents.dt_policy import (
    expert_return_logits,
    keep_top_percentile,
    sample_actions,
    sample_expert_returns,
)
from scaledql.agents.registry import learner_class
from scaledql.data.sampling.sampler import TrajectoryBatch, TrajectorySampler
from scaledql.data.store.dataset import open_dataset
from scaledql.errors import UserError
from scaledql.models.transformer import (
    DecisionTransformerNet,
    default_patch_size,
    dt_attention_mask,
    token_keep,
)

torch.set_num_threads(1)  # tiny tensors; the machine is shared

MINATAR = Problem((10, 10, 10), (3, 6), ("breakout", "asterix"), frame_channels=10)
ATARI = Problem((4, 84, 84), (4, 18), ("Breakout", "Alien"), frame_channels=1)


def make_batch(problem: Problem, size: int = 8, length: int = 3, seed: int = 0) -> TrajectoryBatch:
    rng = np.random.default_rng(seed)
    game = rng.integers(0, len(problem.num_actions), size)
    n = np.array(problem.num_actions)[game][:, None]
    mask = np.ones((size, length), np.float32)
    mask[0, length - 1:] = 0  # one episode ended inside its window
    return TrajectoryBatch(
        obs=rng.integers(0, 2, (size, length, *problem.obs_shape), dtype=np.uint8) * 255,
        action=(rng.integers(0, 1000, (size, length)) % n).astype(np.int64) * mask.astype(np.int64),
        reward=rng.integers(-1, 2, (size, length)).astype(np.float32) * mask,
        return_to_go=rng.integers(-3, 8, (size, length)).astype(np.float32) * mask,
        timestep=np.tile(np.arange(length), (size, 1)),
        terminal=np.zeros((size, length), np.float32),
        mask=mask, game_id=game.astype(np.int64))


def make_learner(problem: Problem = MINATAR, seed: int = 0, **overrides) -> DecisionTransformer:
    torch.manual_seed(seed)
    return DecisionTransformer(replace(DecisionTransformer.tiny_config(), **overrides), problem)


# -- attention mask ------------------------------------------------------------------------------
def test_attention_mask_by_hand():
    # 2 steps × (2 patches, R, a, r): tokens 0 1 | 2 | 3 | 4 || 5 6 | 7 | 8 | 9
    m = dt_attention_mask(2, 2)
    assert m.shape == (10, 10) and m.dtype == torch.bool
    assert m[0, 1] and m[1, 0]  # the patches of one step see each other
    assert m[2, 0] and m[2, 1] and m[2, 2]  # the return token sees its step's patches
    assert not m[2, 3] and not m[3, 4]  # ...but not the action and reward that follow it
    for q in range(5):  # nothing of step 0 sees step 1
        assert not m[q, 5:].any()
    assert m[5:, :5].all()  # step 1 sees all of step 0
    assert m[5, 6] and not m[6, 7]  # step 1's patches see each other, not its return
    # Exactly causal plus the two patch blocks.
    want = torch.tril(torch.ones(10, 10, dtype=torch.bool))
    want[0, 1] = want[5, 6] = True
    assert torch.equal(m, want)


def test_single_return_token_hides_later_returns():
    m = dt_attention_mask(3, 2, single_return_token=True)
    keep = token_keep(3, 2, True)
    assert keep.tolist().count(False) == 2 and not keep[7] and not keep[12] and keep[2]
    assert not m[:, 7].any() and not m[:, 12].any()  # nobody sees the returns of steps 1, 2
    assert m[3:, 2].all()  # everybody after it sees the window's first return
    assert m[7, 5] and m[7, 6]  # the hidden return token still reads its step's patches


def test_shorter_windows_use_the_top_left_block():
    full = dt_attention_mask(4, 3, single_return_token=True)
    assert torch.equal(dt_attention_mask(2, 3, single_return_token=True), full[:12, :12])


def test_network_is_causal_across_steps_and_patches_mix():
    torch.manual_seed(0)
    net = DecisionTransformerNet((1, 4, 4), (3,), num_returns=5, d_model=16, num_layers=2,
                                 num_heads=2, context=2, patch_size=2, dropout=0.0,
                                 single_return_token=False).eval()
    frames = torch.randint(0, 256, (1, 2, 1, 4, 4), dtype=torch.uint8)
    ret, act, rew = torch.tensor([[1, 2]]), torch.tensor([[0, 1]]), torch.tensor([[1, 0]])
    base = net(frames, ret, act, rew)
    later = frames.clone()
    later[:, 1] = 255 - later[:, 1]
    out = net(later, ret, act, torch.tensor([[1, 3]]))
    # Step 0's predictions cannot see step 1.
    for a, b in zip(base, out, strict=True):
        assert torch.equal(a[:, 0], b[:, 0]) and not torch.equal(a[:, 1], b[:, 1])
    # The action read at step 0's return token ignores step 0's own action and reward.
    assert torch.equal(net(frames, ret, torch.tensor([[2, 1]]), rew).action_logits[:, 0],
                       base.action_logits[:, 0])
    # The return logits (last patch token) see the step's first patch.
    first_patch = frames.clone()
    first_patch[0, 0, 0, :2, :2] ^= 255
    assert not torch.equal(net(first_patch, ret, act, rew).return_logits[:, 0],
                           base.return_logits[:, 0])


def test_without_action_inputs_past_actions_change_nothing():
    """action_inputs=False: the predictions of step 1 cannot depend on step 0's action (nothing
    to copy); with the release's action inputs they do."""
    torch.manual_seed(0)
    kw = dict(num_returns=5, d_model=16, num_layers=2, num_heads=2, context=2, patch_size=2,
              dropout=0.0, single_return_token=True)
    frames = torch.randint(0, 256, (1, 2, 1, 4, 4), dtype=torch.uint8)
    ret, rew = torch.tensor([[1, 0]]), torch.tensor([[0, 0]])
    for action_inputs in (True, False):
        torch.manual_seed(0)
        net = DecisionTransformerNet((1, 4, 4), (3,), **kw, action_inputs=action_inputs).eval()
        a = net(frames, ret, torch.tensor([[0, 0]]), rew).action_logits[:, 1]
        b = net(frames, ret, torch.tensor([[2, 0]]), rew).action_logits[:, 1]
        assert torch.equal(a, b) is (not action_inputs)


# -- patching -------------------------------------------------------------------------------------
def test_patching_atari_and_minatar():
    assert default_patch_size(84, 84) == 14 and default_patch_size(10, 10) == 5
    atari = make_learner(ATARI)
    assert atari.model.num_patches == 36  # 6 × 6 patches of 14 × 14
    tokens = atari.model.embed_frames(torch.zeros(2, 3, 1, 84, 84, dtype=torch.uint8))
    assert tokens.shape == (2, 3, 36, 32)
    minatar = make_learner(MINATAR).model
    assert minatar.num_patches == 4  # 2 × 2 patches of 10 × 5 × 5 values
    frame = torch.zeros(1, 1, 10, 10, 10, dtype=torch.uint8)
    corner = frame.clone()
    corner[..., 5:, 5:] = 255  # the bottom-right patch only
    diff = (minatar.embed_frames(corner) - minatar.embed_frames(frame)).abs().sum(-1)[0, 0]
    assert diff[:3].eq(0).all() and diff[3] > 0  # row-major patch order
    with pytest.raises(UserError, match="patch"):
        make_learner(MINATAR, patch_size=3)


def test_only_the_newest_frame_of_a_stack_is_read():
    learner = make_learner(ATARI)
    batch = make_batch(ATARI, size=4)
    other = replace(batch, obs=batch.obs.copy())
    other.obs[:, :, :3] = 0  # the three older frames of each stack
    a, b = learner.evaluate_loss(batch), learner.evaluate_loss(other)
    assert a["loss"].item() == b["loss"].item()


# -- tokenization ---------------------------------------------------------------------------------
def test_return_tokens_clip_and_offset():
    rtg = torch.tensor([-25.0, -20.0, 0.0, 3.0000002, 2.9999998, 100.0, 150.0])
    tokens = losses.encode_returns(rtg, -20, 100)
    assert tokens.tolist() == [0, 0, 20, 23, 23, 120, 120] and tokens.dtype == torch.int64
    assert losses.encode_returns(torch.tensor([7.0, -1.0]), 0, 50).tolist() == [7, 0]


def test_reward_classes():
    reward = torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.0, 0.0, -1.0])
    terminal = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    z, p, t, n = (losses.REWARD_ZERO, losses.REWARD_POSITIVE, losses.REWARD_TERMINAL,
                  losses.REWARD_NEGATIVE)
    assert losses.encode_rewards(reward, terminal).tolist() == [n, n, z, p, t, t, t]
    assert losses.encode_rewards(reward).tolist() == [n, n, z, p, p, z, n]


# -- the loss by hand ------------------------------------------------------------------------------
def test_dt_loss_by_hand():
    # B=1, L=2; step 1 is padding (mask 0) with wild logits that must not count.
    ret_logits = torch.tensor([[[0.0, 0.0, 0.0], [50.0, -9.0, 3.0]]])
    act_logits = torch.tensor([[[0.0, math.log(3.0), 99.0], [9.0, -9.0, 0.0]]])  # action 2 invalid
    rew_logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [7.0, 0.0, 0.0, -7.0]]])
    targets = dict(return_targets=torch.tensor([[2, 1]]), actions=torch.tensor([[1, 1]]),
                   reward_targets=torch.tensor([[3, 3]]))
    loss, m = losses.dt_loss(ret_logits, act_logits, rew_logits, mask=torch.tensor([[1.0, 0.0]]),
                             action_mask=torch.tensor([[True, True, False]]), **targets)
    action_ce, return_ce, reward_ce = -math.log(3 / 4), math.log(3), math.log(4)
    assert m["action_loss"].item() == pytest.approx(action_ce)
    assert m["return_loss"].item() == pytest.approx(return_ce)
    assert m["reward_loss"].item() == pytest.approx(reward_ce)
    assert loss.item() == pytest.approx((action_ce + return_ce + reward_ce) / 3)
    assert m["action_accuracy"].item() == 1.0  # the invalid 99 is not the argmax


def test_dt_loss_is_a_mean_over_samples_and_single_return_token():
    # Sample 0: one valid step; sample 1: two. Each sample's mean, then the batch mean.
    ret = torch.zeros(2, 2, 2)
    ret[1, 1] = torch.tensor([0.0, math.log(3.0)])  # step 1 of sample 1: CE of class 0 = log 4
    act, rew = torch.zeros(2, 2, 2), torch.zeros(2, 2, 4)
    zeros = torch.zeros(2, 2, dtype=torch.int64)
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    args = (ret, act, rew, zeros, zeros, zeros, mask, torch.ones(2, 2, dtype=torch.bool))
    _, every = losses.dt_loss(*args, single_return_token=False)
    assert every["return_loss"].item() == pytest.approx(
        (math.log(2) + (math.log(2) + math.log(4)) / 2) / 2)
    _, first = losses.dt_loss(*args, single_return_token=True)
    assert first["return_loss"].item() == pytest.approx(math.log(2))
    assert every["action_loss"].item() == pytest.approx(math.log(2))


# -- expert-return and action sampling -------------------------------------------------------------
def test_expert_return_logits_by_hand():
    # 3 return classes, flat logits, κ = 2, β = 0.5: β·κ·(R − R_low)/(R_high − R_low) = 0, .5, 1.
    got = expert_return_logits(torch.zeros(1, 3), kappa=2.0, inverse_temperature=0.5)
    assert torch.allclose(got, torch.tensor([[0.0, 0.5, 1.0]]))
    kept = keep_top_percentile(torch.tensor([[0.0, 1.0, 2.0, 3.0]]), 50.0)
    assert kept.tolist() == [[-math.inf, -math.inf, 2.0, 3.0]]  # above the median 1.5


def test_max_of_sampled_returns_matches_its_distribution():
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([0.5, 0.3, 0.2])
    logits = probs.log().repeat(20000, 1)
    one = sample_expert_returns(logits, kappa=0.0, inverse_temperature=1.0, num_samples=1,
                                top_percentile=None, generator=g)
    assert torch.allclose(torch.bincount(one, minlength=3) / 20000.0, probs, atol=0.015)
    # The largest of 4 draws is the top class with probability 1 − 0.8⁴, the lowest 0.5⁴.
    four = sample_expert_returns(logits, kappa=0.0, inverse_temperature=1.0, num_samples=4,
                                 top_percentile=None, generator=g)
    freq = torch.bincount(four, minlength=3) / 20000.0
    assert freq[2].item() == pytest.approx(1 - 0.8**4, abs=0.015)
    assert freq[0].item() == pytest.approx(0.5**4, abs=0.01)
    # κ shifts the odds: with κ = ln 4 on 2 flat classes, the top one has probability 4/5.
    two = sample_expert_returns(torch.zeros(20000, 2), kappa=math.log(4.0),
                                inverse_temperature=1.0, num_samples=1, top_percentile=None,
                                generator=g)
    assert two.float().mean().item() == pytest.approx(0.8, abs=0.015)
    # With 128 draws (the release) a class of probability 0.2 is kept all but 0.8¹²⁸ of the time.
    many = sample_expert_returns(probs.log()[None], kappa=0.0, inverse_temperature=1.0,
                                 num_samples=128, top_percentile=None, generator=g)
    assert many.tolist() == [2]


def test_actions_are_valid_and_above_the_percentile():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0, 100.0, 100.0]]).repeat(2000, 1)
    valid = torch.tensor([True, True, True, True, False, False]).repeat(2000, 1)
    a = sample_actions(logits, valid, inverse_temperature=1.0, top_percentile=50.0, generator=g)
    assert set(a.tolist()) == {2, 3}  # valid and above the median 2.5 of the valid logits
    a = sample_actions(torch.zeros(500, 6), valid[:500], inverse_temperature=0.0,
                       top_percentile=None, generator=g)
    assert set(a.tolist()) == {0, 1, 2, 3}  # ties: uniform over the valid ones


# -- learning and checkpoints ----------------------------------------------------------------------
def test_registered_and_batch_spec():
    assert learner_class("dt") is DecisionTransformer
    spec = make_learner().batch_spec()
    assert (spec.kind, spec.batch_size, spec.length) == ("trajectories", 8, 3)
    assert make_learner().torso is None and set(make_learner().modules()) == {"model"}


@pytest.mark.parametrize("bad", [dict(context=1), dict(d_model=30, num_heads=4),
                                 dict(rtg_min=5, rtg_max=5), dict(dropout=1.0),
                                 dict(action_top_percentile=100.0), dict(return_samples=0)])
def test_config_validation(bad):
    with pytest.raises(UserError):
        replace(DecisionTransformerConfig(), **bad).validate()


def test_loss_falls_on_a_fixed_batch():
    learner = make_learner(dropout=0.0)
    batch = make_batch(MINATAR)
    metrics = [learner.update(batch) for _ in range(30)]
    assert all(v.dim() == 0 for v in metrics[0].values())
    assert {"loss", "action_loss", "return_loss", "reward_loss", "action_accuracy"} <= set(metrics[0])
    first, last = metrics[0]["loss"].item(), metrics[-1]["loss"].item()
    assert last < 0.6 * first, (first, last)


def test_state_round_trip_continues_identically():
    batch, other = make_batch(MINATAR, seed=1), make_batch(MINATAR, seed=2)
    a = make_learner(seed=0)
    for _ in range(3):
        a.update(batch)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    b = make_learner(seed=1)
    b.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert b.step == 3
    for learner in (a, b):
        torch.manual_seed(7)  # dropout draws from the global generator (the loop saves it)
        learner.metrics = [learner.update(other), learner.update(batch)]
    for ma, mb in zip(a.metrics, b.metrics, strict=True):
        assert all(torch.equal(ma[k], mb[k]) for k in ma)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # different local inits: DDP must broadcast rank 0's weights
        learner = DecisionTransformer(replace(DecisionTransformer.tiny_config(), dropout=0.0),
                                      MINATAR, distributed=True)
        half = {k: v[rank * 8:(rank + 1) * 8] for k, v in vars(make_batch(MINATAR, 16)).items()}
        metrics = learner.update(TrajectoryBatch(**half))
        grads = {n: p.grad for n, p in learner.model.named_parameters()}
        torch.save({"grads": grads, "grad_norm": metrics["grad_norm"]}, f"{out_dir}/rank{rank}.pt")
        dist.barrier()  # no rank tears gloo down while a slower one is in a collective
    finally:
        dist.destroy_process_group()


def test_two_process_step_equals_one_step_on_the_union(tmp_path):
    # Gradients, not updated weights: Adam's first step is lr·sign(g), which flips on the
    # rounding noise of gradients that are zero in exact arithmetic (the key biases).
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    single = make_learner(seed=0, dropout=0.0)
    metrics = single.update(make_batch(MINATAR, 16))
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["grad_norm"], metrics["grad_norm"], atol=1e-5, rtol=1e-5)
        for name, p in single.model.named_parameters():
            torch.testing.assert_close(got["grads"][name], p.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_update_on_a_sampled_store(tmp_path, write_game):
    write_game(tmp_path, "breakout", [(6, True, False), (2, True, False)], frame_shape=(10, 10, 10),
               stack=1, num_actions=3)
    sampler = TrajectorySampler(open_dataset(tmp_path), ["breakout"], batch_size=8, length=3)
    learner = make_learner(Problem((10, 10, 10), (3,), ("breakout",), 10))
    batch = sampler.sample()
    assert batch.mask.min() == 0  # the 2-step episode is padded
    assert torch.isfinite(learner.update(batch)["loss"])


# -- the policy ------------------------------------------------------------------------------------
def play(policy, game: str, steps: int, num_envs: int, seed: int = 0, done_at=()):
    rng = np.random.default_rng(seed)
    policy.reset(game, num_envs)
    chosen = []
    for t in range(steps):
        obs = rng.integers(0, 2, (num_envs, 10, 10, 10), dtype=np.uint8) * 255
        actions = policy.act(obs)
        chosen.append(actions)
        dones = np.array([t in done_at and i == 0 for i in range(num_envs)])
        policy.observe(actions, rng.integers(-1, 2, num_envs).astype(np.float32), dones)
    return np.stack(chosen)


def test_policy_plays_only_the_games_actions_and_is_reproducible():
    learner = make_learner(action_top_percentile=None)  # sample from all valid actions
    torch.nn.init.normal_(learner.model.action_head.weight, std=1.0)  # spread the logits
    actions = play(learner.policy(), "breakout", 25, 3)
    assert actions.dtype == np.int64 and set(np.unique(actions)) <= {0, 1, 2}  # 3 of the 6
    assert len(np.unique(actions)) > 1
    assert np.array_equal(play(learner.policy(), "breakout", 25, 3), actions)  # seeded
    single = make_learner(single_return_token=False)
    assert set(np.unique(play(single.policy(), "breakout", 6, 2))) <= {0, 1, 2}
    with pytest.raises(UserError):
        learner.policy().reset("pong", 1)


def test_teacher_forced_logits_are_what_action_accuracy_scores():
    learner = make_learner(dropout=0.5)  # no dropout in either: eval mode
    for _ in range(5):
        learner.update(make_batch(MINATAR, seed=3))
    batch = make_batch(MINATAR, seed=4)
    logits = learner.teacher_forced_logits(batch)
    assert logits.shape == (8, 3, 6) and logits.dtype == torch.float32
    n = torch.tensor(MINATAR.num_actions)[torch.from_numpy(batch.game_id)]
    assert torch.isinf(logits).sum() == (3 * (6 - n)).sum()  # the actions each game lacks
    assert learner.model.training  # left as it was
    right = (logits.argmax(-1) == torch.from_numpy(batch.action)).float()
    mask = torch.from_numpy(batch.mask)
    accuracy = ((right * mask).sum(1) / mask.sum(1)).mean()
    assert torch.allclose(accuracy, learner.evaluate_loss(batch)["action_accuracy"])


def test_policy_reads_an_inference_config_in_place_of_its_own():
    learner = make_learner(action_top_percentile=None)
    torch.nn.init.normal_(learner.model.action_head.weight, std=1.0)
    sampled = play(learner.policy(), "breakout", 25, 3)
    argmax = replace(learner.cfg, action_top_percentile=100.0)
    greedy = play(learner.policy(inference=argmax), "breakout", 25, 3)
    assert not np.array_equal(sampled, greedy)
    assert np.array_equal(play(learner.policy(inference=argmax), "breakout", 25, 3), greedy)
    assert learner.cfg.action_top_percentile is None  # the learner's own config unchanged


def test_policy_histories_hold_context_steps_and_reset_on_episode_end():
    policy = make_learner().policy()  # context 3
    policy.reset("asterix", 2)
    rng = np.random.default_rng(0)
    frames = []
    for t in range(5):
        obs = rng.integers(0, 256, (2, 10, 10, 10), dtype=np.uint8)
        frames.append(obs)
        a = policy.act(obs)
        policy.observe(a, np.array([1.0, -1.0], np.float32), np.array([t == 3, False]))
        want = [[1, 2, 3, 0, 1][t], min(t + 1, 3)]
        assert policy.length.tolist() == want
    # env 1 holds the last 3 steps (oldest first) with their executed actions and reward classes
    held = policy.frames[1].numpy()
    assert all(np.array_equal(held[i], frames[2 + i][1]) for i in range(3))
    assert policy.rewards[1].tolist() == [losses.REWARD_NEGATIVE] * 3
    # env 0's episode ended at t = 3: its history restarted with the one step since
    assert policy.length[0] == 1 and np.array_equal(policy.frames[0, 0].numpy(), frames[4][0])
    assert policy.frames[0, 1:].eq(0).all() and policy.rewards[0].tolist() == [1, 0, 0]
