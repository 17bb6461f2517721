"""Run configuration as users meet it: preset layering, bad keys and types, --print-config,
--resume from the run's own config, a valid metrics.csv, exact resume after a signal."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_NET, write_tiny_minatar_store
from scaledql.agents.registry import learner_class, learner_names
from scaledql.checkpoint import load_checkpoint
from scaledql.cli import main
from scaledql.data.store.writer import GameWriter
from scaledql.training.config import RunConfig
from scaledql.training.offline_loop import train

TINY = [*TINY_NET, "--eval-episodes", "1", "--no-progress", "--device", "cpu"]


@pytest.fixture
def data(tmp_path) -> Path:
    return write_tiny_minatar_store(tmp_path / "data")


def printed_config(capsys, argv) -> str:
    assert main(["train", *argv, "--print-config"]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def toml(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


def test_user_file_changes_only_its_keys(data, tmp_path, capsys):
    preset = toml(printed_config(capsys, ["--data", str(data), "--out", str(tmp_path / "r")]))
    user = tmp_path / "user.toml"
    user.write_text("seed = 3\n[learner]\nlr = 0.01\n")
    merged = toml(printed_config(capsys, ["--data", str(data), "--out", str(tmp_path / "r"),
                                          "--config", str(user)]))
    assert merged["seed"] == 3 and merged["learner"]["lr"] == 0.01
    # everything else stays the suite preset's (steps, encoder, batch), not a fallback default
    changed = {k for k in preset if preset[k] != merged[k] and k != "learner"}
    changed |= {f"learner.{k}" for k in preset["learner"]
                if preset["learner"][k] != merged["learner"][k]}
    assert changed == {"seed", "learner.lr"}
    assert merged["steps"] == 8000 and merged["learner"]["encoder"] == "nature"


def test_print_config_round_trips(data, tmp_path, capsys):
    base = ["--data", str(data), "--out", str(tmp_path / "r"), "--algo", "dt"]
    first = printed_config(capsys, [*base, "--set", "learner.context=2", "--steps", "9"])
    saved = tmp_path / "saved.toml"
    saved.write_text(first)
    assert printed_config(capsys, [*base, "--config", str(saved)]) == first
    assert toml(first)["learner"]["context"] == 2 and toml(first)["algo"] == "dt"


@pytest.mark.parametrize(("text", "message"), [
    ("[learner]\nlrr = 1e-3\n", "unknown key 'lrr' (did you mean 'lr'?)"),
    ("stepz = 3\n", "unknown key 'stepz' (did you mean 'steps'?)"),
    ('steps = "many"\n', "steps must be int, got 'many'"),
    ("steps = 5.5\n", "steps must be int, got 5.5"),
    ("[learner]\nfeature_norm = 1\n", "feature_norm must be bool, got 1"),
    ("[learner]\nencoder = 5\n", "encoder must be str, got 5"),
    ("[agent]\nlr = 1.0\n", "the [agent] table is now [learner]"),
    ("[learner.frobnicate]\nlr = 1.0\n", "[learner.frobnicate] names no registered learner"),
    ("steps = \n", "not valid TOML"),
    ("eval_epsilon = nan\n", "eval_epsilon must be in [0, 1]"),
    ("[learner]\nlr = nan\n", "must be finite"),
])
def test_bad_config_files_are_one_line(data, tmp_path, capsys, text, message):
    user = tmp_path / "user.toml"
    user.write_text(text)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--config",
                 str(user)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_non_utf8_config_is_one_line(data, tmp_path, capsys):
    user = tmp_path / "user.toml"
    user.write_bytes(b"steps = 3\n\xff\xfe\n")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--config",
                 str(user)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_resume_needs_no_flags_and_refuses_changes(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--steps", "4",
                 "--checkpoint-every", "2", *TINY]) == 0
    assert main(["train", "--out", str(run), "--resume", "--lr", "0.5"]) == 2
    assert "options differ from the run's config (learner.lr)" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--resume", "--steps", "2"]) == 2
    assert "the run is at step 4" in capsys.readouterr().err
    # the saved config alone continues the run; only the run length changes
    assert main(["train", "--out", str(run), "--resume", "--steps", "6", "--no-progress"]) == 0
    assert load_checkpoint(run)["step"] == 6
    saved = json.loads((run / "config.json").read_text())
    assert saved["steps"] == 6 and saved["learner"]["feature_dim"] == 16
    # a moved run folder resumes (paths are compared resolved, the data by its own path)
    moved = tmp_path / "moved"
    run.rename(moved)
    assert main(["train", "--out", str(moved), "--resume", "--steps", "8", "--no-progress"]) == 0
    # resuming a finished run adds no second final evaluation
    assert main(["train", "--out", str(moved), "--resume", "--no-progress"]) == 0
    evals = [r["step"] for r in map(json.loads, (moved / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "eval"]
    assert evals == sorted(set(evals)) and evals[-1] == 8


def test_metrics_csv_stays_valid_after_evaluations(data, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--steps", "6",
                 "--log-every", "2", "--eval-every", "4", *TINY]) == 0
    table = pd.read_csv(run / "metrics.csv")
    assert list(table["kind"]) == ["train", "train", "eval", "train", "eval"]
    assert list(table["step"]) == [2, 4, 4, 6, 6]
    assert table.loc[table["kind"] == "eval", "iqm"].notna().all()
    assert table.loc[table["kind"] == "train", "loss"].notna().all()


def test_set_overrides_any_key_and_names_bad_ones(data, tmp_path, capsys):
    base = ["--data", str(data), "--out", str(tmp_path / "r")]
    cfg = toml(printed_config(capsys, [*base, "--set", "learner.v_max=5.0", "--set",
                                       "eval_episodes=3"]))
    assert cfg["learner"]["v_max"] == 5.0 and cfg["eval_episodes"] == 3
    assert main(["train", *base, "--set", "learner.nope=1"]) == 2
    assert "unknown key 'nope'" in capsys.readouterr().err
    assert main(["train", *base, "--set", "steps"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["train", *base, "--algo", "dt", "--encoder", "nature"]) == 2
    assert "unknown key 'encoder'" in capsys.readouterr().err


@pytest.mark.parametrize("name", learner_names())
def test_every_learner_trains_and_its_policy_is_evaluated(name, data, tmp_path, capsys):
    run = tmp_path / name
    tiny = learner_class(name).tiny_config().to_dict()
    sets = [x for k, v in tiny.items() for x in ("--set", f"learner.{k}={json.dumps(v)}")
            if v is not None]
    assert main(["train", "--data", str(data), "--out", str(run), "--algo", name, "--steps", "3",
                 "--eval-episodes", "1", "--no-progress", "--device", "cpu", *sets]) == 0
    assert json.loads((run / "config.json").read_text())["algo"] == name
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run), "--episodes", "2", "--no-progress",
                 "--json", "--max-episode-steps", "20"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["games"]) == {"asterix", "breakout"}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_resume_after_a_signal_is_bit_identical(data, tmp_path, monkeypatch, signum):
    from scaledql.agents.scaled_ql import ScaledQL

    def cfg(out):
        return RunConfig(data=str(data), out=str(out), steps=6, log_every=2, checkpoint_every=10,
                         seed=1, device="cpu", learner=learner_class("scaled-ql").tiny_config())

    train(cfg(tmp_path / "straight"), progress=False)
    real = ScaledQL.update

    def update(self, batch):  # the signal arrives in the middle of the fourth update
        if self.step == 3:
            os.kill(os.getpid(), signum)
        return real(self, batch)

    monkeypatch.setattr(ScaledQL, "update", update)
    summary = train(cfg(tmp_path / "stopped"), progress=False)
    assert summary["interrupted"] and summary["step"] == 4  # the update in flight completed
    monkeypatch.setattr(ScaledQL, "update", real)
    train(cfg(tmp_path / "stopped"), resume=True, progress=False)
    a = load_checkpoint(tmp_path / "straight")["learner"]
    b = load_checkpoint(tmp_path / "stopped")["learner"]
    for part in ("online", "target"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)


def test_resume_follows_the_data_by_content_not_path(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--steps", "2", *TINY]) == 0
    moved = tmp_path / "moved-data"
    data.rename(moved)  # the same store elsewhere: the run continues on it
    assert main(["train", "--out", str(run), "--resume", "--data", str(moved), "--steps", "4",
                 "--no-progress"]) == 0
    # a different store under the run's data path: refused, naming the reason
    rng = np.random.default_rng(1)
    with GameWriter(moved, suite="minatar", game="breakout", num_actions=3,
                    frame_shape=(10, 10, 10), stack=1, overwrite=True,
                    provenance={"source": "test"}) as w:
        w.add_episode(255 * rng.integers(0, 2, (6, 10, 10, 10), dtype=np.uint8),
                      rng.integers(0, 3, 5), np.zeros(5, np.float32), True, False)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--steps", "6", "--no-progress"]) == 2
    assert "is not the data this run trained on" in capsys.readouterr().err
