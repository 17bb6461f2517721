"""Transfer: a pretrained run's encoder (or torso) in a new network with fresh heads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scaledql.agents.base import Problem
from scaledql.agents.registry import learner_class
from scaledql.checkpoint import load_checkpoint
from scaledql.cli import main
from scaledql.data.store.writer import GameWriter
from scaledql.errors import UserError
from scaledql.training.config import RunConfig
from scaledql.training.offline_loop import train
from scaledql.transfer import transfer_torso

TINY = learner_class("scaled-ql").tiny_config()


def write_store(root: Path, games: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for game, actions in games.items():
        with GameWriter(root, suite="minatar", game=game, num_actions=actions,
                        frame_shape=(10, 10, 10), stack=1, provenance={"source": "test"}) as w:
            for length in (6, 9, 4):
                w.add_episode(255 * rng.integers(0, 2, (length + 1, 10, 10, 10), dtype=np.uint8),
                              rng.integers(0, actions, length),
                              rng.integers(0, 2, length).astype(np.float32), True, False)
    return root


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pretrain")
    data = write_store(tmp / "data", {"breakout": 3, "asterix": 5})
    run = tmp / "run"
    train(RunConfig(data=str(data), out=str(run), steps=4, device="cpu", learner=TINY),
          progress=False)
    return run


def source_torso(run: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run)["learner"]["online"]
    return {k[len("torso."):]: v for k, v in state.items() if k.startswith("torso.")}


def new_learner(games=("freeway",), actions=(3,), cfg=TINY, name="scaled-ql"):
    torch.manual_seed(99)
    problem = Problem((10, 10, 10), tuple(actions), tuple(games), 10)
    return learner_class(name)(cfg, problem, "cpu")


@pytest.mark.parametrize("parts", ["encoder", "torso"])
def test_weights_land_in_the_torso_and_heads_are_new(pretrained, parts, capsys):
    target = new_learner()
    fresh = {k: v.clone() for k, v in target.online.state_dict().items()}
    report = transfer_torso(target, pretrained, parts=parts)
    src = source_torso(pretrained)
    mine = target.online.state_dict()
    for k, v in src.items():
        same = torch.equal(mine[f"torso.{k}"], v)
        assert same == (k.startswith("encoder.") or parts == "torso"), k
    for k, v in mine.items():
        if k.startswith("heads."):
            assert torch.equal(v, fresh[k]), k  # heads keep their fresh initialisation
    for k, v in target.target.state_dict().items():  # the target network follows
        assert torch.equal(v, mine[k])
    assert report.loaded and all(n.startswith("torso.") for n in report.loaded)
    assert "heads.heads" in report.new
    assert ("torso.projection" in report.new) == (parts == "encoder")
    assert "[transfer] from scaled-ql run" in capsys.readouterr().err


def test_frozen_encoder_stays_unchanged_while_the_rest_learns(pretrained, tmp_path):
    data = write_store(tmp_path / "new", {"freeway": 3}, seed=1)
    run = tmp_path / "ft"
    train(RunConfig(data=str(data), out=str(run), steps=5, device="cpu", learner=TINY,
                    init_from=str(pretrained), freeze_encoder=True), progress=False)
    src = source_torso(pretrained)
    after = load_checkpoint(run)["learner"]["online"]
    for k, v in src.items():
        if k.startswith("encoder."):
            assert torch.equal(after[f"torso.{k}"], v), k
    assert not torch.equal(after["torso.projection.weight"], src["projection.weight"])
    # resume keeps the encoder frozen
    train(RunConfig(data=str(data), out=str(run), steps=8, device="cpu", learner=TINY,
                    init_from=str(pretrained), freeze_encoder=True), resume=True, progress=False)
    after = load_checkpoint(run)["learner"]["online"]
    assert all(torch.equal(after[f"torso.{k}"], v) for k, v in src.items()
               if k.startswith("encoder."))


def test_unfrozen_encoder_moves(pretrained, tmp_path):
    data = write_store(tmp_path / "new", {"freeway": 3}, seed=1)
    run = tmp_path / "ft"
    train(RunConfig(data=str(data), out=str(run), steps=3, device="cpu", learner=TINY,
                    init_from=str(pretrained)), progress=False)
    after = load_checkpoint(run)["learner"]["online"]
    src = source_torso(pretrained)
    assert not all(torch.equal(after[f"torso.{k}"], v) for k, v in src.items())


def test_mismatched_networks_are_one_clear_error(pretrained):
    from dataclasses import replace

    with pytest.raises(UserError, match="has shape"):
        transfer_torso(new_learner(cfg=replace(TINY, width=0.5)), pretrained)
    with pytest.raises(UserError, match="the pretrained encoder is 'nature', this network's is 'impala'"):
        transfer_torso(new_learner(cfg=replace(TINY, encoder="impala")), pretrained)
    with pytest.raises(UserError, match="has no torso"):
        transfer_torso(new_learner(name="dt", cfg=learner_class("dt").tiny_config()), pretrained)
    with pytest.raises(UserError, match="does not exist"):
        transfer_torso(new_learner(), pretrained / "nope")


def test_cli_init_from(pretrained, tmp_path, capsys):
    data = write_store(tmp_path / "new", {"freeway": 3}, seed=1)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "ft"), "--steps", "2",
                 "--encoder", "nature", "--width", "0.25", "--feature-dim", "16",
                 "--batch-size", "8", "--set", "learner.num_atoms=11", "--init-from",
                 str(pretrained), "--freeze-encoder", "--eval-episodes", "1", "--no-progress",
                 "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "[transfer] from scaled-ql run" in err and "encoder frozen" in err
