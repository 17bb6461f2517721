"""The conformance test every registered learner passes (one test module for all algorithms).

For each learner of the registry, built from its ``tiny_config()``:
- its loss falls when it trains on one fixed batch;
- a state round trip (through ``torch.save`` and a ``weights_only`` load) continues identically;
- kill -9 during training + ``--resume`` ends bit-identical to an uninterrupted run (CPU);
- a 2-process DDP step equals a single-process step on the union batch;
- its policy plays only valid actions in MinAtar and Atari games, through episode ends.
Batches come from a real (tiny) store through the sampler the learner's ``batch_spec`` asks for.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scaledql.agents.base import Learner, Problem
from scaledql.agents.registry import learner_class, learner_names
from scaledql.checkpoint import load_checkpoint
from scaledql.data.sampler import make_sampler
from scaledql.data.store import GameWriter, open_dataset
from scaledql.suites import EnvOptions, get_suite
from scaledql.training.config import RunConfig
from scaledql.training.offline import train

torch.set_num_threads(1)  # small tensors; avoid OpenMP contention on a 2-core machine
GAMES = {"breakout": 3, "asterix": 5}  # real MinAtar games and action counts
NAMES = learner_names()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Two MinAtar games with random 0/255 frames, actions, rewards; episodes of 5–14 steps."""
    root = tmp_path_factory.mktemp("conformance") / "data"
    rng = np.random.default_rng(0)
    for game, actions in GAMES.items():
        with GameWriter(root, suite="minatar", game=game, num_actions=actions,
                        frame_shape=(10, 10, 10), stack=1,
                        provenance={"source": "test", "env_options": {"max_episode_steps": 20}}) as w:
            for length in (7, 12, 5, 9, 14, 6):
                w.add_episode(255 * rng.integers(0, 2, (length + 1, 10, 10, 10), dtype=np.uint8),
                              rng.integers(0, actions, length),
                              rng.integers(0, 2, length).astype(np.float32),
                              terminated=bool(length % 2), truncated=not length % 2)
    return root


def problem_of(root: Path) -> Problem:
    data = open_dataset(root)
    return Problem((10, 10, 10), tuple(data.game(g).num_actions for g in data.games),
                   tuple(data.games), frame_channels=10)


def make(name: str, root: Path, seed: int = 0, **kw) -> Learner:
    torch.manual_seed(seed)
    cls = learner_class(name)
    return cls(cls.tiny_config(), problem_of(root), "cpu", **kw)


def batches(learner: Learner, root: Path, count: int, seed: int = 0, batch_size: int | None = None):
    spec = learner.batch_spec()
    data = open_dataset(root)
    sampler = make_sampler(data, data.games, spec, batch_size or spec.batch_size, seed)
    return [sampler.sample() for _ in range(count)]


def state_tensors(state, prefix="") -> dict[str, torch.Tensor]:
    """Every tensor of a (nested) state dict, by path."""
    out = {}
    if isinstance(state, dict):
        for k, v in state.items():
            out.update(state_tensors(v, f"{prefix}{k}."))
    elif isinstance(state, list | tuple):
        for i, v in enumerate(state):
            out.update(state_tensors(v, f"{prefix}{i}."))
    elif torch.is_tensor(state):
        out[prefix.rstrip(".")] = state
    return out


def assert_same_state(a, b) -> None:
    ta, tb = state_tensors(a), state_tensors(b)
    assert ta.keys() == tb.keys() and len(ta) > 4
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=0, atol=0, msg=k)


def test_registry_lists_the_paper_learners():
    assert {"scaled-ql", "dqn"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_loss_falls_on_a_fixed_batch(name, store):
    learner = make(name, store)
    (batch,) = batches(learner, store, 1)
    # A short horizon: TD learners bootstrap from a target that moves every few tiny steps, so
    # their loss on one batch falls at first and need not keep falling.
    losses = [float(learner.update(batch)["loss"]) for _ in range(12)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < losses[0], losses


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_continues_identically(name, store):
    a = make(name, store, seed=0)
    todo = batches(a, store, 5)
    for b in todo[:3]:
        a.update(b)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = make(name, store, seed=123)  # other initial weights: the load must overwrite them all
    b.load_state_dict(torch.load(buffer, weights_only=True))
    assert b.step == a.step == 3
    for batch in todo[3:]:
        torch.manual_seed(7)  # any randomness inside an update draws the same numbers
        ma = {k: float(v) for k, v in a.update(batch).items()}
        torch.manual_seed(7)
        mb = {k: float(v) for k, v in b.update(batch).items()}
        assert ma == mb
    assert_same_state(a.state_dict(), b.state_dict())


def run_config(name: str, root: Path, out: Path) -> RunConfig:
    return RunConfig(data=str(root), out=str(out), algo=name, steps=6, checkpoint_every=3,
                     log_every=2, seed=5, device="cpu", learner=learner_class(name).tiny_config())


@pytest.mark.parametrize("name", NAMES)
def test_kill_and_resume_is_bit_identical(name, store, tmp_path):
    straight = tmp_path / "straight"
    train(run_config(name, store, straight), progress=False)

    killed = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os, sys
        import torch
        torch.set_num_threads({torch.get_num_threads()})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from scaledql.agents.registry import learner_class
        from test_conformance import run_config
        from scaledql.training.offline import train
        cls = learner_class({name!r})
        real = cls.update
        def update(self, batch):
            if self.step == 4:
                os._exit(9)  # no clean-up at all: what kill -9 leaves
            return real(self, batch)
        cls.update = update
        train(run_config({name!r}, {str(store)!r}, {str(killed)!r}), progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert load_checkpoint(killed)["step"] == 3
    train(run_config(name, store, killed), resume=True, progress=False)
    assert_same_state(load_checkpoint(straight)["learner"], load_checkpoint(killed)["learner"])


WORLD = 2


def _ddp_worker(rank: int, name: str, root: str, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        learner = make(name, Path(root), seed=rank, distributed=True)  # DDP broadcasts rank 0's
        union = _union_batch(learner, Path(root))
        half = len(union.game_id) // WORLD
        mine = type(union)(**{f.name: getattr(union, f.name)[rank * half:(rank + 1) * half]
                              for f in dataclasses.fields(union)})
        torch.manual_seed(0)
        learner.update(mine)
        torch.save(learner.state_dict(), f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _union_batch(learner: Learner, root: Path):
    spec = learner.batch_spec()
    return batches(learner, root, 1, seed=11, batch_size=max(8, spec.batch_size))[0]


@pytest.mark.parametrize("name", NAMES)
def test_two_process_ddp_step_equals_single_process_step(name, store, tmp_path):
    mp.spawn(_ddp_worker, args=(name, str(store), str(tmp_path / "init"), str(tmp_path)),
             nprocs=WORLD, join=True)
    single = make(name, store, seed=0)
    before = {k: v.clone() for k, v in state_tensors(single.state_dict()).items()}
    torch.manual_seed(0)
    single.update(_union_batch(single, store))
    want = state_tensors(single.state_dict())
    moved = max((want[k].float() - v.float()).abs().max().item() for k, v in before.items()
                if v.is_floating_point())
    assert moved > 1e-6  # the step really changed the weights
    for rank in range(WORLD):
        got = state_tensors(torch.load(tmp_path / f"rank{rank}.pt", weights_only=True))
        for k, v in want.items():
            if ".step" in k or not v.is_floating_point():
                continue
            torch.testing.assert_close(got[k], v, atol=1e-5, rtol=1e-4, msg=f"rank {rank}: {k}")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("suite_name", "games"), [("minatar", ["breakout", "asterix"]),
                                                   ("atari", ["Pong", "Breakout"])])
def test_policy_plays_only_valid_actions(name, suite_name, games):
    suite = get_suite(suite_name)
    options = EnvOptions(max_episode_steps=6)  # several episode ends in 20 steps
    specs = [suite.spec(g, options) for g in games]
    problem = Problem(specs[0].obs_shape, tuple(s.num_actions for s in specs), tuple(games),
                      specs[0].frame_shape[0])
    cls = learner_class(name)
    torch.manual_seed(0)
    policy = cls(cls.tiny_config(), problem, "cpu").policy()
    for game, spec in zip(games, specs, strict=True):
        envs = suite.make_vector_env(game, 2, options)
        try:
            obs, _ = envs.reset(seed=0)
            policy.reset(game, 2)
            for _ in range(20):
                actions = np.asarray(policy.act(obs))
                assert actions.shape == (2,) and actions.dtype.kind == "i"
                assert ((0 <= actions) & (actions < spec.num_actions)).all(), (game, actions)
                obs, rewards, terminated, truncated, _ = envs.step(actions)
                policy.observe(actions, rewards, np.logical_or(terminated, truncated))
        finally:
            envs.close()
