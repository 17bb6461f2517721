"""Checkpoint history (``train --keep-every K``): permanent copies every K steps, loadable
wherever a run is (evaluate, ``--init-from``, fine-tuning's ``--from``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import write_tiny_minatar_store
from scaledql.agents.scaled_ql import ScaledQLConfig
from scaledql.checkpoint import load_checkpoint
from scaledql.cli import main
from scaledql.finetune.common import read_run
from scaledql.training.config import RunConfig
from scaledql.training.offline_loop import train

TINY = dict(encoder="nature", width=0.25, feature_dim=16, batch_size=8, target_update_period=2,
            cql_alpha=0.5, n_step=2)
NET = ["--encoder", "nature", "--width", "0.25", "--feature-dim", "16", "--batch-size", "8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_tiny_minatar_store(tmp_path_factory.mktemp("history") / "data")


def config(data: Path, out: Path, **kw) -> RunConfig:
    base = dict(steps=6, checkpoint_every=3, log_every=2, seed=3, device="cpu", sample_workers=0)
    return RunConfig(data=str(data), out=str(out), learner=ScaledQLConfig(**TINY), **{**base, **kw})


def online(payload: dict) -> dict[str, torch.Tensor]:
    return payload["learner"]["online"]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    """6 steps, a checkpoint every 3, kept every 2 (cadences that do not divide each other)."""
    out = tmp_path_factory.mktemp("history") / "run"
    train(config(data, out, keep_every=2), progress=False)
    return out


def test_a_copy_every_k_steps_holds_that_step(run):
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == ["step_00000002.pt", "step_00000004.pt", "step_00000006.pt"]
    payloads = {s: load_checkpoint(run / "checkpoints" / f"step_{s:08d}.pt") for s in (2, 4, 6)}
    assert [p["step"] for p in payloads.values()] == [2, 4, 6]
    # the step-6 copy is the final checkpoint; earlier ones are earlier weights
    assert same(online(payloads[6]), online(load_checkpoint(run)))
    assert not same(online(payloads[2]), online(payloads[4]))
    assert json.loads((run / "config.json").read_text())["keep_every"] == 2


def test_no_history_by_default(data, tmp_path):
    train(config(data, tmp_path / "r", steps=3), progress=False)
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_resume_may_change_keep_every(data, tmp_path):
    out = tmp_path / "r"
    cfg = config(data, out, keep_every=2)
    assert train(cfg, stop_after=3, progress=False)["step"] == 3
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002.pt"]
    train(config(data, out, keep_every=5), resume=True, progress=False)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_00000002.pt", "step_00000005.pt"]
    assert load_checkpoint(out / "checkpoints" / "step_00000005.pt")["step"] == 5


def test_cli_keep_every_and_a_bad_value(data, tmp_path, capsys):
    base = ["train", "--data", str(data), "--steps", "2", *NET, "--eval-episodes", "1",
            "--no-progress", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "bad"), "--keep-every", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: keep_every must be >= 0") and len(err.splitlines()) == 1
    assert main([*base, "--out", str(tmp_path / "ok"), "--set", "keep_every=1"]) == 0
    assert (tmp_path / "ok" / "checkpoints" / "step_00000001.pt").is_file()


def test_an_earlier_step_evaluates_transfers_and_fine_tunes(run, data, tmp_path, capsys):
    early = run / "checkpoints" / "step_00000002.pt"
    assert main(["evaluate", "--checkpoint", str(early), "--games", "breakout", "--episodes",
                 "1", "--no-progress", "--json"]) == 0
    assert "breakout" in json.loads(capsys.readouterr().out)["games"]
    assert read_run(early, "--from", "scaled-ql")["step"] == 2
    out = tmp_path / "from-early"
    assert main(["train", "--data", str(data), "--out", str(out), "--steps", "1", *NET,
                 "--init-from", str(early), "--freeze-encoder", "--eval-episodes", "1",
                 "--no-progress", "--device", "cpu"]) == 0
    assert "[transfer] from scaled-ql run" in capsys.readouterr().err

    def encoder(payload: dict) -> dict[str, torch.Tensor]:
        return {k: v for k, v in online(payload).items() if k.startswith("torso.encoder.")}

    # the frozen encoder is step 2's, not the final one's
    assert encoder(load_checkpoint(early))
    assert same(encoder(load_checkpoint(out)), encoder(load_checkpoint(early)))
    assert not same(encoder(load_checkpoint(out)), encoder(load_checkpoint(run)))
