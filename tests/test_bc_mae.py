"""Behaviour cloning and MAE pretraining: their losses by hand, masking, learning, exact resume,
encoder transfer shapes, policies, DDP."""

import io
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scaledql import losses
from scaledql.agents import Problem, learner_class
from scaledql.agents.bc import BCConfig, BehaviourCloning
from scaledql.agents.mae import MAE, MAEConfig, auto_patch_size
from scaledql.data.sampling.sampler import TransitionBatch
from scaledql.errors import UserError
from scaledql.models import ScaledQNetwork, TorsoSpec
from scaledql.models.decoder import num_masked, pixel_mask
from scaledql.policies import RandomPolicy

# Small tensors: one thread avoids OpenMP contention on the shared 2-core machine.
torch.set_num_threads(1)

OBS_SHAPE = (4, 10, 10)
NUM_ACTIONS = (3, 6)
PROBLEM = Problem(obs_shape=OBS_SHAPE, num_actions=NUM_ACTIONS, games=("a", "b"), frame_channels=1)


def random_batch(size: int, seed: int = 0, num_actions=NUM_ACTIONS,
                 obs_shape=OBS_SHAPE) -> TransitionBatch:
    rng = np.random.default_rng(seed)
    game_id = rng.integers(0, len(num_actions), size)
    return TransitionBatch(
        obs=rng.integers(0, 256, (size, *obs_shape), dtype=np.uint8),
        action=np.array([rng.integers(0, num_actions[g]) for g in game_id], dtype=np.int64),
        reward=rng.uniform(-1, 1, size).astype(np.float32),
        discount=np.full(size, 0.99, np.float32),
        done=(rng.random(size) < 0.2).astype(np.float32),
        next_obs=rng.integers(0, 256, (size, *obs_shape), dtype=np.uint8),
        game_id=game_id.astype(np.int64),
    )


def make(cls, cfg=None, seed=0, problem=PROBLEM, **kw):
    torch.manual_seed(seed)
    return cls(cfg or cls.tiny_config(), problem, **kw)


# -- losses ------------------------------------------------------------------------------------
def test_bc_loss_by_hand_two_actions():
    logits = torch.tensor([[1.0, 3.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    # −log softmax at action 0 = log(e + e³) − 1.
    got = losses.bc_loss(logits, torch.tensor([0]), mask)
    assert got.item() == pytest.approx(math.log(math.e + math.e**3) - 1.0)
    p = 1 / (1 + math.e**2)  # probability of action 0
    ent = losses.masked_entropy(logits, mask).item()
    assert ent == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)))


def test_bc_loss_ignores_padding_actions():
    # Game with 2 valid actions padded to 4: the padding logits (huge) must not matter.
    logits = torch.tensor([[1.0, 3.0, 50.0, -7.0]], requires_grad=True)
    mask = torch.tensor([[True, True, False, False]])
    loss = losses.bc_loss(logits, torch.tensor([1]), mask)
    assert loss.item() == pytest.approx(math.log(math.e + math.e**3) - 3.0)
    loss.backward()
    assert torch.equal(logits.grad[0, 2:], torch.zeros(2)) and torch.isfinite(logits.grad).all()
    ent = losses.masked_entropy(logits.detach(), mask)
    assert torch.isfinite(ent).all() and ent.item() < math.log(2) + 1e-6


def test_masked_patch_mse_sees_masked_patches_only():
    target = torch.rand(2, 3, 4, 6)
    mask = torch.zeros(2, 2, 3, dtype=torch.bool)  # 2×2 patches → grid 2×3
    mask[0, 1, 2] = mask[1, 0, 0] = True
    pm = pixel_mask(mask, 2)
    assert pm.shape == (2, 1, 4, 6) and pm.sum() == 2 * 4
    wrong = target + 1.0
    perfect_on_masked = torch.where(pm, target, wrong)  # perfect where masked, wrong elsewhere
    assert losses.masked_patch_mse(perfect_on_masked, target, mask, 2).item() == 0.0
    # Error 0.5 on one masked patch (sample 0), 0 on the other: mean over the 2 patches.
    pred = target.clone()
    pred[0, :, 2:4, 4:6] += 0.5
    assert losses.masked_patch_mse(pred, target, mask, 2).item() == pytest.approx(0.25 / 2)


def test_patch_normalize_inverts():
    x = torch.rand(2, 3, 4, 4)
    normed, mean, std = losses.patch_normalize(x, 2)
    assert torch.allclose(normed * std + mean, x, atol=1e-6)
    patch = normed[0, :, :2, :2]
    assert patch.mean().abs() < 1e-5 and patch.var(unbiased=False) == pytest.approx(1.0, abs=1e-3)


# -- behaviour cloning -------------------------------------------------------------------------
def test_registry_finds_both():
    assert learner_class("bc") is BehaviourCloning and learner_class("mae") is MAE


def test_bc_accuracy_and_metrics():
    bc = make(BehaviourCloning)
    batch = random_batch(32)
    t = torch.from_numpy(batch.obs)
    logits = bc.action_logits(t, torch.from_numpy(batch.game_id))  # what the update sees
    m = bc.update(batch)
    assert set(m) == {"loss", "accuracy", "entropy", "feature_norm", "grad_norm"}
    assert all(v.dim() == 0 for v in m.values())
    want = (logits.argmax(1).numpy() == batch.action).mean()
    assert m["accuracy"].item() == pytest.approx(want)
    masked = torch.from_numpy(np.array([[a < NUM_ACTIONS[g] for a in range(6)]
                                        for g in batch.game_id]))
    ce = losses.bc_loss(logits.masked_fill(~masked, 0.0), torch.from_numpy(batch.action), masked)
    assert m["loss"].item() == pytest.approx(ce.mean().item(), rel=1e-5)


# With normalized features the logits of a linear head move by at most ~lr·‖f‖₁ per Adam step,
# so BC's loss falls slowly at the tiny config's lr 1e-3; 1e-2 shows learning within 30 steps.
FAST_LR = {BehaviourCloning: 1e-2, MAE: 1e-3}


@pytest.mark.parametrize("cls", [BehaviourCloning, MAE])
def test_loss_falls_on_a_fixed_batch(cls):
    learner = make(cls, replace(cls.tiny_config(), lr=FAST_LR[cls]))
    batch = random_batch(16)
    first = learner.update(batch)["loss"].item()
    for _ in range(29):
        last = learner.update(batch)
    assert last["loss"].item() < 0.7 * first, (first, last["loss"])
    if cls is BehaviourCloning:
        assert last["accuracy"].item() >= 0.75  # from chance (~1/4) on random labels


@pytest.mark.parametrize("cls", [BehaviourCloning, MAE])
def test_bf16_and_channels_last_paths(cls):
    learner = make(cls, replace(cls.tiny_config(), bf16=True, channels_last=True, lr=FAST_LR[cls]))
    batch = random_batch(16)
    first = learner.update(batch)
    for _ in range(9):
        last = learner.update(batch)
    assert all(math.isfinite(v.item()) for v in last.values())
    assert last["loss"].item() < first["loss"].item()


@pytest.mark.parametrize("cls", [BehaviourCloning, MAE])
def test_state_dict_round_trip_continues_identically(cls):
    a = make(cls, seed=0)
    for s in range(3):
        a.update(random_batch(8, seed=s))
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = make(cls, seed=123)  # different weights (and mask seed), overwritten by the load
    b.load_state_dict(torch.load(buffer, weights_only=True))
    assert b.step == 3
    for s in (9, 10):
        ma, mb = a.update(random_batch(8, seed=s)), b.update(random_batch(8, seed=s))
        assert all(torch.equal(ma[k], mb[k]) for k in ma)
    for (k, va), vb in zip(a.network.state_dict().items(), b.network.state_dict().values(),
                           strict=True):
        assert torch.equal(va, vb), k


@pytest.mark.parametrize("cls", [BehaviourCloning, MAE])
def test_policy_plays_valid_actions(cls):
    learner = make(cls)
    policy = learner.policy()
    obs = random_batch(50).obs
    for game, count in zip(PROBLEM.games, NUM_ACTIONS, strict=True):
        policy.reset(game, len(obs))
        actions = policy.act(obs)
        assert actions.shape == (50,) and actions.min() >= 0 and actions.max() < count
    if cls is MAE:
        assert isinstance(policy, RandomPolicy)


def test_bc_greedy_never_picks_padding():
    bc = make(BehaviourCloning)
    with torch.no_grad():  # make the head's first columns (the padding's source) attractive
        bc.network.heads.heads[0].bias.fill_(100.0)
    logits = bc.action_logits(torch.from_numpy(random_batch(5).obs), 0)
    assert torch.isinf(logits[:, 3:]).all() and torch.isfinite(logits[:, :3]).all()


def test_bc_bad_config_is_a_user_error():
    with pytest.raises(UserError):
        replace(BCConfig(), lr_scaling="cubic").validate()
    with pytest.raises(UserError):
        replace(MAEConfig(), mask_ratio=1.0).validate()
    with pytest.raises(UserError, match="does not divide"):
        make(MAE, replace(MAE.tiny_config(), patch_size=3))


# -- MAE -----------------------------------------------------------------------------------
def test_auto_patch_sizes():
    assert auto_patch_size(84, 84) == 12 and auto_patch_size(10, 10) == 2
    assert auto_patch_size(7, 7) == 1 and auto_patch_size(64, 64) == 8
    assert num_masked(49, 0.75) == 37 and num_masked(25, 0.75) == 19


def test_mae_masks_the_ratio_and_zeroes_masked_input():
    mae = make(MAE)
    mask = mae.draw_mask(64)
    assert mask.shape == (64, 5, 5) and mask.dtype == torch.bool
    assert (mask.flatten(1).sum(1) == num_masked(25, 0.75)).all()  # exactly per sample
    assert mask.float().mean().item() == pytest.approx(0.75, abs=0.02)
    assert not torch.equal(mask[0], mask[1])  # different patches per sample
    assert torch.equal(mask, mae.draw_mask(64)) and not torch.equal(mask, mae.draw_mask(64, 1))
    obs = torch.full((64, *OBS_SHAPE), 255, dtype=torch.uint8)
    x = mae.network.masked_input(obs, mask)
    hidden = pixel_mask(mask, 2).expand_as(x)
    assert (x[hidden] == 0).all() and (x[~hidden] == 1).all()  # all frames of a masked patch


def test_mae_learned_fill_gets_gradient_and_starts_at_zero():
    mae = make(MAE, replace(MAE.tiny_config(), mask_fill="learned", norm_pix=True))
    assert torch.equal(mae.network.fill.detach(), torch.zeros(OBS_SHAPE[0]))
    m = mae.update(random_batch(8))
    assert set(m) == {"loss", "masked_mse", "grad_norm"} and all(v.dim() == 0 for v in m.values())
    assert mae.network.fill.abs().sum() > 0
    assert math.isfinite(m["masked_mse"].item()) and m["masked_mse"] != m["loss"]


@pytest.mark.parametrize("encoder", ["nature", "impala", "resnet18"])
def test_mae_torso_matches_a_scaled_ql_torso(encoder):
    cfg = replace(MAE.tiny_config(), encoder=encoder)
    mae = make(MAE, cfg)
    net = ScaledQNetwork(TorsoSpec(encoder, width=cfg.width, feature_dim=cfg.feature_dim),
                         OBS_SHAPE, NUM_ACTIONS)
    ours = {k: v.shape for k, v in mae.torso.state_dict().items()}
    theirs = {k: v.shape for k, v in net.torso.state_dict().items()}
    assert ours == theirs
    # What transfer does: the MAE's encoder weights load into the Scaled QL network.
    encoder_state = {k.removeprefix("torso."): v for k, v in mae.state_dict()["network"].items()
                     if k.startswith("torso.encoder.")}
    net.torso.load_state_dict(encoder_state, strict=False)
    assert all(torch.equal(v, mae.torso.state_dict()[k]) for k, v in net.torso.state_dict().items()
               if k.startswith("encoder."))
    counts = mae.param_counts()
    assert counts["encoder"] == sum(p.numel() for p in net.torso.encoder.parameters())
    assert counts["total"] == sum(p.numel() for p in mae.network.parameters())


def test_mae_trains_the_trunk_not_the_readout():
    mae = make(MAE, replace(MAE.tiny_config(), encoder="resnet18", width=0.0625))
    trunk = [p.clone() for p in mae.torso.encoder.trunk.parameters()]
    frozen = [p.clone() for p in (*mae.torso.encoder.readout.parameters(),
                                  *mae.torso.projection.parameters())]
    mae.update(random_batch(8))
    assert any(not torch.equal(a, b) for a, b in zip(trunk, mae.torso.encoder.trunk.parameters(),
                                                      strict=True))
    assert all(torch.equal(a, b) for a, b in zip(frozen, (*mae.torso.encoder.readout.parameters(),
                                                           *mae.torso.projection.parameters()),
                                                  strict=True))


def test_mae_atari_frames_reconstruct_at_full_size():
    problem = Problem(obs_shape=(4, 84, 84), num_actions=(6,), games=("Pong",), frame_channels=1)
    mae = make(MAE, problem=problem)
    assert mae.patch == 12 and mae.network.grid == (7, 7)
    mask = mae.draw_mask(2)
    obs = torch.from_numpy(random_batch(2, num_actions=(6,), obs_shape=(4, 84, 84)).obs)
    assert mae.reconstruct(obs, mask).shape == (2, 4, 84, 84)


# -- DDP ---------------------------------------------------------------------------------------
def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        batch = random_batch(16, seed=7)
        half = TransitionBatch(**{k: v[rank * 8:(rank + 1) * 8] for k, v in vars(batch).items()})
        out = {}
        for cls in (BehaviourCloning, MAE):
            torch.manual_seed(rank)  # different local inits: DDP broadcasts rank 0's weights
            learner = cls(cls.tiny_config(), PROBLEM, distributed=True)
            metrics = learner.update(half)
            out[cls.name] = {"network": learner.network.state_dict(), "metrics": metrics,
                             "seed": getattr(learner, "mask_seed", None)}
        torch.save(out, f"{out_dir}/rank{rank}.pt")
        dist.barrier()  # no rank tears gloo down while a slower one is in a collective
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    # BC: the 2-process step equals the single-process step on the union batch.
    torch.manual_seed(0)
    single = BehaviourCloning(BehaviourCloning.tiny_config(), PROBLEM)
    single.update(random_batch(16, seed=7))
    for result in ranks:
        for k, want in single.network.state_dict().items():
            torch.testing.assert_close(result["bc"]["network"][k], want, atol=1e-6, rtol=0)
    # MAE: ranks share rank 0's mask seed, draw different masks, and end with equal weights.
    assert ranks[0]["mae"]["seed"] == ranks[1]["mae"]["seed"]
    assert ranks[0]["mae"]["metrics"]["loss"] != ranks[1]["mae"]["metrics"]["loss"]
    for k, v in ranks[0]["mae"]["network"].items():
        assert torch.equal(v, ranks[1]["mae"]["network"][k]), k
