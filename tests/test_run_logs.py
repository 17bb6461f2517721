"""What a training run tells its reader: a log that reads line by line, the config and parameter
counts in TensorBoard (text and hparams), and optional W&B logging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_NET
from scaledql import progress
from scaledql.cli import main
from scaledql.data.store.writer import GameWriter

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = [*TINY_NET, "--eval-episodes", "1", "--log-every", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """One real MinAtar game (evaluation plays it), random frames and actions."""
    root = tmp_path_factory.mktemp("logs") / "data"
    rng = np.random.default_rng(0)
    with GameWriter(root, suite="minatar", game="breakout", num_actions=3,
                    frame_shape=(10, 10, 10), stack=1,
                    provenance={"source": "test", "env_options": {"max_episode_steps": 20}}) as w:
        for length in (7, 12, 5):
            w.add_episode(rng.integers(0, 2, (length + 1, 10, 10, 10), dtype=np.uint8),
                          rng.integers(0, 3, length), rng.integers(0, 2, length).astype(np.float32),
                          terminated=True, truncated=False)
    return root


@pytest.fixture(autouse=True)
def not_quiet():
    yield
    progress.set_quiet(False)


def test_redirected_log_reads_line_by_line(data, tmp_path):
    """``scaledql train ... > log 2>&1``: no carriage returns, progress as whole lines, the
    end-of-training evaluation's progress included."""
    log = tmp_path / "train.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, "-m", "scaledql", "train", "--data", str(data),
                               "--out", str(tmp_path / "run"), "--steps", "4", *TINY],
                              stdout=f, stderr=subprocess.STDOUT, env=env, timeout=300)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text and "\x1b[" not in text
    lines = text.splitlines()
    assert any(line.startswith("[train scaled-ql] done: 4/4 step (100%)") for line in lines)
    assert any(line.startswith("[evaluate step 4] done: 1/1 ep") for line in lines)
    assert lines[-1].startswith("[train] done: 4 steps")


@pytest.mark.parametrize("flags,shown", [(["--no-progress"], True), (["--quiet"], False)])
def test_no_progress_keeps_lines_quiet_drops_them(data, tmp_path, capsys, monkeypatch, flags,
                                                  shown):
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.0)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--steps", "2",
                 *TINY, *flags]) == 0
    err = capsys.readouterr().err
    assert ("[train scaled-ql] 1/2 step (50%)" in err) is shown
    assert ("[evaluate step 2] done: 1/1 ep" in err) is shown
    assert "parameters (encoder" in err  # what the run is stays printed either way


def test_tensorboard_holds_config_text_and_hparams(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--steps", "2", *TINY,
                 "--quiet", "--lr", "0.003"]) == 0
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {"config/text_summary", "parameters/text_summary"} <= set(events.Tags()["tensors"])
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads(text.strip("`\n"))["learner"]["lr"] == 0.003
    content = events.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info.hparams
    params = json.loads((run / "params.json").read_text())
    assert start["learner.lr"].number_value == 0.003
    assert start["learner.encoder"].string_value == "nature"
    assert start["params/total"].number_value == params["total"]
    assert start["init_from"].string_value == "none"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/experiment"]).experiment
    assert "eval/iqm" in {m.name.tag for m in experiment.metric_infos}


class FakeWandb(types.ModuleType):
    """What scaledql uses of wandb: init → run with config.update, log, finish."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.runs: list[types.SimpleNamespace] = []

    def init(self, **kwargs):
        run = types.SimpleNamespace(kwargs=kwargs, config={}, logged=[], finished=False)
        run.config = types.SimpleNamespace(values={}, update=lambda d, allow_val_change=False:
                                           run.config.values.update(d))
        run.log = lambda values, step: run.logged.append((step, dict(values)))
        run.finish = lambda: setattr(run, "finished", True)
        self.runs.append(run)
        return run


def test_wandb_gets_config_and_metrics_and_resumes_the_same_run(data, tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run_dir = tmp_path / "run"
    base = ["train", "--data", str(data), "--out", str(run_dir), *TINY, "--quiet", "--wandb",
            "--wandb-project", "proj", "--wandb-mode", "offline"]
    assert main([*base, "--steps", "2"]) == 0
    run = fake.runs[0]
    assert run.kwargs["project"] == "proj" and run.kwargs["mode"] == "offline"
    assert run.kwargs["name"] == "run" and run.kwargs["entity"] is None
    assert run.config.values["learner"]["encoder"] == "nature"
    assert run.config.values["param_counts"] == json.loads((run_dir / "params.json").read_text())
    steps = {step for step, _ in run.logged}
    keys = {k for _, values in run.logged for k in values}
    assert steps == {2} and {"train/loss", "eval/breakout/return", "eval/iqm"} <= keys
    assert run.finished
    assert main([*base, "--steps", "4", "--resume"]) == 0
    again = fake.runs[1]
    assert again.kwargs["id"] == run.kwargs["id"] and again.kwargs["resume"] == "allow"
    assert {step for step, _ in again.logged} == {4}


def test_wandb_not_installed_is_one_line(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb fails, as when absent
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--steps", "2", *TINY,
                 "--wandb"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --wandb: the wandb package is not installed (pip install wandb)\n"
    assert not (run / "checkpoint.pt").exists()
    assert main(["train", "--data", str(data), "--out", str(run), "--wandb-name", "x"]) == 2
    assert capsys.readouterr().err == "error: --wandb-name needs --wandb\n"
