"""The run session's shared phases (``training.session``), the checkpoint's run payload and
``resumable`` (``checkpoint``), the store opened once per ``scaledql train``, and a resumed
run's config (``training.resume_config``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_tiny_minatar_store
from scaledql.agents.scaled_ql import ScaledQL, ScaledQLConfig
from scaledql.checkpoint import (
    RESUME_KEYS,
    load_checkpoint,
    missing_resume_state,
    resumable,
    run_payload,
)
from scaledql.errors import UserError
from scaledql.training.session import RunSession

TINY = dict(encoder="nature", width=0.25, feature_dim=16, batch_size=8)


def _learner() -> ScaledQL:
    from scaledql.agents.base import Problem

    problem = Problem(obs_shape=(10, 10, 10), num_actions=(3,), games=("breakout",),
                      frame_channels=10)
    return ScaledQL(ScaledQLConfig(**TINY), problem, "cpu")


def test_run_payload_keeps_the_state_in_order_and_refuses_unknown_keys():
    payload = run_payload(_learner(), "minatar", {}, run_config={"a": 1}, prefetch=[], rng={})
    assert list(payload)[-3:] == ["run_config", "prefetch", "rng"]
    assert payload["algo"] == "scaled-ql" and payload["suite"] == "minatar"
    assert resumable(payload) and missing_resume_state(payload) is None
    with pytest.raises(ValueError, match="optimizer"):
        run_payload(_learner(), "minatar", {}, optimizer={})


def test_resumable_needs_every_resume_key():
    full = {k: {} for k in RESUME_KEYS}
    assert resumable(full)
    for key in RESUME_KEYS:
        partial = {k: v for k, v in full.items() if k != key}
        assert not resumable(partial) and missing_resume_state(partial) == key
    assert not resumable({"seed": 0})  # a collected game's learner


def test_session_phases_write_log_checkpoint_and_resume(tmp_path):
    run, rows = tmp_path / "run", []
    learner = _learner()
    with RunSession(run, lock="test run", callbacks=[rows.append]) as session:
        assert (run / ".lock").exists()
        assert session.resume_or_start(False) is None
        session.start({"algo": "scaled-ql"}, learner, learner.device, 0, params=True)
        session.log({"step": 1, "loss": 0.5})
        session.write_checkpoint(run_payload(learner, "minatar", {}, seed=3), keep_step=1)
    assert rows == [{"kind": "train", "step": 1, "loss": 0.5}]
    assert json.loads((run / "config.json").read_text())["algo"] == "scaled-ql"
    assert load_checkpoint(run)["seed"] == 3
    assert (run / "checkpoints").is_dir()
    with pytest.raises(UserError, match="already holds a run"):
        RunSession(run).resume_or_start(False)
    seen = []
    assert RunSession(run).resume_or_start(True, seen.append)["seed"] == 3
    assert RunSession(run).resume_or_start(None)["seed"] == 3
    assert len(seen) == 1
    with pytest.raises(UserError, match="no checkpoint"):
        RunSession(tmp_path / "none").resume_or_start(True)
    assert RunSession(tmp_path / "none").resume_or_start(None) is None


def test_a_failed_session_leaves_no_empty_run_folder(tmp_path):
    with pytest.raises(UserError), RunSession(tmp_path / "a" / "run", lock="test run"):
        raise UserError("refused")
    assert not (tmp_path / "a").exists()


def test_scaledql_train_opens_its_store_once(tmp_path, monkeypatch):
    import scaledql.data.store.dataset as store
    from scaledql.cli import main

    data = write_tiny_minatar_store(tmp_path / "data")
    opened: list[Path] = []
    real = store._open_dataset
    monkeypatch.setattr(store, "_open_dataset", lambda root, games: opened.append(root)
                        or real(root, games))
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2",
            "--eval-every", "0", "--eval-episodes", "1", "--batch-size", "8", "--width", "0.25",
            "--feature-dim", "16", "--encoder", "nature", "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    assert len(opened) == 1
    opened.clear()
    assert main([*args[:5], "--steps", "3", "--resume", *args[7:]]) == 0
    assert len(opened) == 1


def test_resume_config_layers_the_saved_run_under_the_flags(tmp_path):
    from scaledql.training.resume_config import resume_config, resumed_data

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(
        {"algo": "scaled-ql", "data": "data", "out": str(run), "steps": 4, "seed": 2,
         "learner": {"batch_size": 8}}))
    (tmp_path / "data").mkdir()
    assert resumed_data(Path("data"), run) in (Path("data"), tmp_path / "data")
    cfg = resume_config(run, {"steps": 9}, {"lr": 1})
    assert (cfg.steps, cfg.seed, cfg.learner.batch_size, cfg.learner.lr) == (9, 2, 8, 1.0)
    with pytest.raises(UserError, match="holds no run"):
        resume_config(tmp_path / "empty", {}, {})
