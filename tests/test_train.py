"""The training loop: CLI, logs, checkpoint/resume after a hard kill, non-finite loss."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from scaledql.agents.scaled_ql import ScaledQL, ScaledQLConfig
from scaledql.checkpoint import load_checkpoint
from scaledql.cli import main
from scaledql.data.store.writer import GameWriter
from scaledql.training.config import RunConfig
from scaledql.training.device_window import NonFiniteLoss
from scaledql.training.offline_loop import train

TINY_AGENT = dict(encoder="nature", width=0.25, feature_dim=16, batch_size=8,
                  target_update_period=2, cql_alpha=0.5, n_step=2)


@pytest.fixture
def minatar_data(tmp_path) -> Path:
    """Two real MinAtar game names (so evaluation can play them), random frames and actions."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for game, actions in (("breakout", 3), ("asterix", 5)):
        with GameWriter(root, suite="minatar", game=game, num_actions=actions,
                        frame_shape=(10, 10, 10), stack=1,
                        provenance={"source": "test", "env_options": {"max_episode_steps": 50}}) as w:
            for length in (7, 12, 5, 9):
                w.add_episode(rng.integers(0, 2, (length + 1, 10, 10, 10), dtype=np.uint8),
                              rng.integers(0, actions, length),
                              rng.integers(0, 2, length).astype(np.float32),
                              terminated=True, truncated=False)
    return root


def tiny_config(data: Path, out: Path, steps: int = 6, **kw) -> RunConfig:
    kw.setdefault("sample_workers", 1)  # the threaded pipeline (a CPU run's default is 0)
    return RunConfig(data=str(data), out=str(out), steps=steps, checkpoint_every=3,
                     log_every=2, seed=7, device="cpu", learner=ScaledQLConfig(**TINY_AGENT), **kw)


def weights(run: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run)["learner"]
    out = {f"online.{k}": v for k, v in state["online"].items()}
    out.update({f"target.{k}": v for k, v in state["target"].items()})
    for i, s in state["optimizer"]["state"].items():
        out.update({f"adam.{i}.{k}": v for k, v in s.items() if torch.is_tensor(v)})
    return out


def test_train_returns_its_final_evaluation(minatar_data, tmp_path):
    from scaledql.api.functions import train_run

    summary = train_run(tiny_config(minatar_data, tmp_path / "run", steps=4), progress=False)
    evaluation = summary["evaluation"]
    assert evaluation["step"] == 4 and {"iqm", "breakout/return", "asterix/normalized"} <= set(
        evaluation)


def test_an_evaluation_comes_before_its_steps_checkpoint(minatar_data, tmp_path):
    """A checkpoint written before the evaluation of its step let a kill between them resume
    past that step with no evaluation logged: a hole in the learning curve (and in an AUC)."""
    run = tmp_path / "run"
    seen: list[tuple[int, int | None]] = []

    def evaluate(policy, games, step):  # the checkpoint on disk when step is evaluated
        saved = load_checkpoint(run)["step"] if (run / "checkpoint.pt").exists() else None
        seen.append((step, saved))
        return {}

    train(tiny_config(minatar_data, run, steps=6, eval_every=3, sample_workers=0),
          evaluate_fn=evaluate, progress=False)
    assert seen == [(3, None), (6, 6)]  # step 3 (checkpoint due too) before its checkpoint


def test_train_run_quiet_prints_nothing(minatar_data, tmp_path, capfd):
    from scaledql.api.functions import train_run
    from scaledql.progress import is_quiet

    capfd.readouterr()
    summary = train_run(tiny_config(minatar_data, tmp_path / "run", steps=4), quiet=True)
    out = capfd.readouterr()
    assert out.out == "" and out.err == "" and summary["evaluation"]["step"] == 4
    assert not is_quiet()  # the process's own setting is given back


def test_resume_after_hard_kill_matches_uninterrupted(minatar_data, tmp_path):
    straight = tmp_path / "straight"
    train(tiny_config(minatar_data, straight), progress=False)

    # A separate process dies without any clean-up (os._exit) during step 5, after the
    # checkpoint of step 3 was written: exactly what a kill -9 leaves behind. It runs with this
    # process's thread count, since CPU kernels sum in a thread-dependent order.
    killed = tmp_path / "killed"
    script = textwrap.dedent(f"""
        import os
        import torch
        torch.set_num_threads({torch.get_num_threads()})  # same kernels as this process: bitwise
        from scaledql.agents.scaled_ql import ScaledQL, ScaledQLConfig
        from scaledql.training.config import RunConfig
        from scaledql.training.offline_loop import train
        real = ScaledQL.update
        def update(self, batch):
            if self.step == 4:
                os._exit(9)
            return real(self, batch)
        ScaledQL.update = update
        cfg = RunConfig(data={str(minatar_data)!r}, out={str(killed)!r}, steps=6,
                        checkpoint_every=3, log_every=2, seed=7, device="cpu", sample_workers=1,
                        learner=ScaledQLConfig(**{TINY_AGENT!r}))
        train(cfg, progress=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert load_checkpoint(killed)["step"] == 3
    train(tiny_config(minatar_data, killed), resume=True, progress=False)

    a, b = weights(straight), weights(killed)
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # the resumed log has each step once
    rows = [json.loads(line) for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6] and {r["kind"] for r in rows} == {"train"}


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(minatar_data, tmp_path, monkeypatch):
    real = ScaledQL.update

    def poisoned(self, batch):
        if self.step == 4:  # corrupt the weights: the next loss is NaN
            with torch.no_grad():
                next(self.online.parameters()).fill_(float("nan"))
        return real(self, batch)

    monkeypatch.setattr(ScaledQL, "update", poisoned)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match="loss became nan at step 5"):
        train(tiny_config(minatar_data, run), progress=False)
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["learner"]["online"].values())


def test_cli_train_writes_run_folder_and_evaluates(minatar_data, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--data", str(minatar_data), "--out", str(run), "--steps", "4",
                 "--encoder", "nature", "--width", "0.25", "--feature-dim", "16",
                 "--batch-size", "8", "--eval-episodes", "1", "--log-every", "2",
                 "--no-progress", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    for name in ("checkpoint.pt", "config.json", "params.json", "metrics.jsonl", "metrics.csv"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["learner"]["encoder"] == "nature" and cfg["learner"]["feature_norm"] is True
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["kind"] for r in rows][-1] == "eval"
    for key in ("loss", "td_loss", "cql_loss", "mean_q", "feature_norm", "grad_norm",
                "steps_per_second", "samples_per_second"):
        assert np.isfinite(train_rows[-1][key]), key
    evals = sorted((run / "eval").glob("step_*.json"))
    report = json.loads(evals[-1].read_text())
    assert set(report["games"]) == {"asterix", "breakout"}
    out, err = capsys.readouterr()
    assert params_printed(err)
    # the results where the user is: the final evaluation's table on stdout
    table = out.split("[evaluate step 4]", 1)[1].splitlines()
    assert table[1].split() == ["game", "episodes", "mean", "return", "normalized"]
    assert {line.split()[0] for line in table[2:4]} == {"asterix", "breakout"}
    assert table[4].startswith("IQM") and "95% CI [" in table[4]
    # the checkpoint plays through `evaluate`
    assert main(["evaluate", "--checkpoint", str(run), "--episodes", "1", "--no-progress",
                 "--json"]) == 0


def params_printed(stderr: str) -> bool:
    return "parameters (encoder" in stderr


def test_cli_train_ablation_switches(minatar_data, tmp_path):
    run = tmp_path / "mse"
    assert main(["train", "--data", str(minatar_data), "--out", str(run), "--steps", "2",
                 "--encoder", "nature", "--width", "0.25", "--feature-dim", "16",
                 "--batch-size", "8", "--loss", "mse", "--no-feature-norm", "--cql-alpha", "0",
                 "--eval-episodes", "1", "--no-progress", "--device", "cpu"]) == 0
    agent = json.loads((run / "config.json").read_text())["learner"]
    assert (agent["loss"], agent["feature_norm"], agent["cql_alpha"]) == ("mse", False, 0.0)


@pytest.mark.parametrize("loss", ["hl-gauss", "two-hot"])
def test_cli_trains_resumes_and_evaluates_each_value_target(minatar_data, tmp_path, capsys, loss):
    run = tmp_path / loss
    base = ["train", "--data", str(minatar_data), "--out", str(run), "--encoder", "nature",
            "--width", "0.25", "--feature-dim", "16", "--batch-size", "8", "--loss", loss,
            "--set", "learner.hl_gauss_sigma_ratio=0.5", "--eval-episodes", "1", "--no-progress",
            "--device", "cpu"]
    assert main([*base, "--steps", "2"]) == 0
    assert main(["train", "--out", str(run), "--resume", "--steps", "4", "--no-progress"]) == 0
    saved = json.loads((run / "config.json").read_text())["learner"]
    assert (saved["loss"], saved["hl_gauss_sigma_ratio"]) == (loss, 0.5)
    assert load_checkpoint(run)["step"] == 4
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run), "--episodes", "1", "--no-progress",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["games"]) == {"breakout", "asterix"}


@pytest.mark.parametrize("extra,message", [
    (["--loss", "nope"], "argument --loss: invalid choice: 'nope' (choose from 'c51', "
     "'hl-gauss', 'two-hot', 'mse')"),
    (["--set", "learner.loss='nope'"], "unknown loss 'nope' (choose from c51, hl-gauss"),
    (["--loss", "hl-gauss", "--set", "learner.hl_gauss_sigma_ratio=0"],
     "hl_gauss_sigma_ratio must be > 0"),
    (["--set", "learner.hl_gauss_sigma_ratio=-inf"], "hl_gauss_sigma_ratio must be finite"),
    (["--set", "learner.hl_gauss_sigma_ratio='wide'"], "hl_gauss_sigma_ratio must be float"),
])
def test_cli_value_target_errors_are_one_line(minatar_data, tmp_path, capsys, extra, message):
    argv = ["train", "--data", str(minatar_data), "--out", str(tmp_path / "r"), *extra]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors (an unknown --loss choice)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("extra,message", [
    (["--data", "/nonexistent"], "does not exist"),
    (["--steps", "0"], "steps must be positive"),
    (["--encoder", "vgg"], "unknown encoder"),
    (["--config", "/nonexistent.toml"], "config file /nonexistent.toml does not exist"),
])
def test_cli_train_bad_input(minatar_data, tmp_path, capsys, extra, message):
    argv = ["train", "--data", str(minatar_data), "--out", str(tmp_path / "r"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_train_refuses_to_clobber_and_resume_needs_a_run(minatar_data, tmp_path, capsys):
    run = tmp_path / "r"
    base = ["train", "--data", str(minatar_data), "--out", str(run), "--steps", "2",
            "--encoder", "nature", "--width", "0.25", "--feature-dim", "16", "--batch-size", "8",
            "--eval-episodes", "1", "--no-progress"]
    assert main([*base, "--resume"]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert main(base) == 0
    assert main(base) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([*base, "--resume", "--n-step", "5"]) == 2
    assert "options differ" in capsys.readouterr().err


def test_ctrl_c_saves_and_exits_cleanly(minatar_data, tmp_path):
    """SIGINT mid-run: a checkpoint at the step reached, exit code 130, a one-line message."""
    import os
    import signal
    import time

    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scaledql", "train", "--data", str(minatar_data), "--out",
         str(run), "--steps", "100000", "--encoder", "nature", "--width", "0.25",
         "--feature-dim", "16", "--batch-size", "8", "--log-every", "5", "--no-progress",
         "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        deadline = time.monotonic() + 120
        log = run / "metrics.jsonl"
        while not (log.exists() and log.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "Traceback" not in err
    step = load_checkpoint(run)["step"]
    assert 5 <= step < 100000
    assert f"interrupted at step {step};" in err
