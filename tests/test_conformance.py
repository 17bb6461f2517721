"""The conformance test every registered learner passes (one test module for all algorithms).

For each learner of the registry, built from its ``tiny_config()``, and for Scaled QL with each
other value target of its registry (``scaled-ql:hl-gauss``: the tiny config with that ``loss``):
- its loss falls when it trains on one fixed batch;
- a state round trip (through ``torch.save`` and a ``weights_only`` load) continues identically;
- kill -9 during training + ``--resume`` ends bit-identical to an uninterrupted run (CPU);
- a 2-process DDP step equals a single-process step on the union batch;
- its policy plays only valid actions in MinAtar and Atari games, through episode ends;
- ``scaledql export`` → load gives the same networks and the same actions (and scores, for
  policies that have them) as the checkpoint, and ``scaledql play`` records it.
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
from scaledql.agents.configs import LearnerConfig
from scaledql.agents.registry import learner_class, learner_names
from scaledql.checkpoint import learner_payload, load_checkpoint, load_learner, save_checkpoint
from scaledql.data.sampling.sampler import make_sampler
from scaledql.data.store.dataset import open_dataset
from scaledql.data.store.writer import GameWriter
from scaledql.training.config import RunConfig
from scaledql.training.offline_loop import train
from scaledql.value_targets import value_target_names

torch.set_num_threads(1)  # small tensors; avoid OpenMP contention on a 2-core machine
GAMES = {"breakout": 3, "asterix": 5}  # real MinAtar games and action counts
# Every learner, then Scaled QL with every value target its tiny config does not already use.
NAMES = [*learner_names(), *(f"scaled-ql:{t}" for t in value_target_names()
                             if t != learner_class("scaled-ql").tiny_config().loss)]


def learner_of(case: str) -> tuple[type[Learner], LearnerConfig]:
    """A case's learner class and config: ``NAME`` (its tiny config) or ``NAME:TARGET``."""
    name, _, target = case.partition(":")
    cls = learner_class(name)
    cfg = cls.tiny_config()
    return cls, dataclasses.replace(cfg, loss=target).validate() if target else cfg


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
    cls, cfg = learner_of(name)
    return cls(cfg, problem_of(root), "cpu", **kw)


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
    cls, cfg = learner_of(name)
    return RunConfig(data=str(root), out=str(out), algo=cls.name, steps=6, checkpoint_every=3,
                     log_every=2, seed=5, device="cpu", learner=cfg)


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
        from test_conformance import learner_of, run_config
        from scaledql.training.offline_loop import train
        cls, _ = learner_of({name!r})
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
        torch.save({"grads": gradients(learner), "state": learner.state_dict()},
                   f"{out_dir}/rank{rank}.pt")
        # Neither rank tears gloo down while the other is still in a collective: on a loaded
        # machine a rank that left early aborted its slower peer (SIGABRT).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def gradients(learner: Learner) -> dict[str, torch.Tensor]:
    """The gradients the last update stepped on (learners zero them at the *start* of a step)."""
    return {f"{m}.{n}": p.grad.clone() for m, module in learner.modules().items()
            for n, p in module.named_parameters() if p.grad is not None}


def _union_batch(learner: Learner, root: Path):
    spec = learner.batch_spec()
    return batches(learner, root, 1, seed=11, batch_size=max(8, spec.batch_size))[0]


@pytest.mark.parametrize("name", NAMES)
def test_two_process_ddp_step_equals_single_process_step(name, store, tmp_path):
    mp.spawn(_ddp_worker, args=(name, str(store), str(tmp_path / "init"), str(tmp_path)),
             nprocs=WORLD, join=True)
    single = make(name, store, seed=0)
    torch.manual_seed(0)
    single.update(_union_batch(single, store))
    want = gradients(single)
    assert len(want) > 4 and max(g.abs().max().item() for g in want.values()) > 0
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    for rank, result in enumerate(ranks):
        # DDP's invariant: every rank steps on the gradient of the union batch. (Weights after
        # an Adam step are compared across ranks only: Adam's first step is g/|g|, which
        # turns rounding noise on a zero gradient into a full step.)
        assert result["grads"].keys() == want.keys()
        for k, g in want.items():
            torch.testing.assert_close(result["grads"][k], g, atol=1e-6, rtol=1e-4,
                                       msg=f"rank {rank}: {k}")
    assert_same_state(ranks[0]["state"], ranks[1]["state"])


def _trained_checkpoint(name: str, store: Path, path: Path) -> Learner:
    """A learner a few updates away from its initial weights, saved as a checkpoint."""
    learner = make(name, store)
    for batch in batches(learner, store, 3):
        learner.update(batch)
    save_checkpoint(learner_payload(learner, "minatar", {"max_episode_steps": 20}), path)
    return learner


def _acts(policy, game: str, obs: np.ndarray, rewards: np.ndarray) -> list:
    """Actions (and scores, where the policy has them) over a short made-up rollout."""
    policy.reset(game, len(obs[0]))
    out = []
    for t in range(len(obs)):
        actions = policy.act(obs[t])
        if hasattr(policy, "scores"):
            out.append(policy.scores(torch.from_numpy(obs[t]), policy.game_id))
        out.append(torch.from_numpy(actions))
        policy.observe(actions, rewards[t], np.array([t == 3] * len(actions)))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_export_round_trip_acts_identically(name, store, tmp_path):
    from scaledql.export import export_agent

    ckpt = tmp_path / "ckpt.pt"
    _trained_checkpoint(name, store, ckpt)
    sizes = export_agent(ckpt, tmp_path / "exported")
    assert set(sizes) == {"model.safetensors", "config.json", "README.md"}
    a, pa = load_learner(ckpt, "cpu")
    b, pb = load_learner(tmp_path / "exported", "cpu")
    assert pb["weights_only"] and b.step == a.step == 3
    assert {k: pb[k] for k in ("games", "num_actions", "env_options")} == \
        {k: pa[k] for k in ("games", "num_actions", "env_options")}
    for module in a.modules():  # every network, bit for bit
        assert_same_state(a.modules()[module].state_dict(), b.modules()[module].state_dict())
    rng = np.random.default_rng(4)
    obs = 255 * rng.integers(0, 2, (6, 3, 10, 10, 10), dtype=np.uint8)
    rewards = rng.integers(0, 2, (6, 3)).astype(np.float64)
    for game in GAMES:
        torch.manual_seed(1)  # a sampling policy (DT) draws the same numbers for both
        want = _acts(a.policy(), game, obs, rewards)
        torch.manual_seed(1)
        got = _acts(b.policy(), game, obs, rewards)
        assert len(want) == len(got) >= 6
        for x, y in zip(want, got, strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_play_records_any_learner(name, store, tmp_path):
    from PIL import Image

    from scaledql.checkpoint import load_policy
    from scaledql.play import PlayConfig, record
    from scaledql.suites import EnvOptions

    ckpt = tmp_path / "ckpt.pt"
    _trained_checkpoint(name, store, ckpt)
    policy, _ = load_policy(ckpt, "cpu")
    video = tmp_path / "v.gif"
    episodes = record(video, "minatar", "breakout", policy, EnvOptions(max_episode_steps=20),
                      PlayConfig(episodes=2, max_steps=4, epsilon=0.0))
    assert [e["episode"] for e in episodes] == [1, 2]
    assert all(1 <= e["steps"] <= 4 for e in episodes)
    with Image.open(video) as gif:
        assert gif.n_frames == sum(e["steps"] + 1 for e in episodes)
