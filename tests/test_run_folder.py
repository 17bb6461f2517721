"""The run folder: its layout has one owner (``run_folder``), ``Run`` reads a real run back, a
path that is not a run is one line, and what the writers write the readers read unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import scaledql
from conftest import TINY_NET, write_tiny_minatar_store
from scaledql import run_folder as rf
from scaledql.cli import main
from scaledql.errors import UserError

TINY = [*TINY_NET, "--eval-episodes", "2", "--log-every", "2", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """4 steps of Scaled QL on two MinAtar games, evaluated at 2 and 4, checkpoints kept at 2, 4."""
    root = tmp_path_factory.mktemp("run_folder")
    data = write_tiny_minatar_store(root / "data")
    run = root / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--steps", "4",
                 "--eval-every", "2", "--keep-every", "2", *TINY]) == 0
    return run


def test_the_layout(tmp_path):
    run = tmp_path / "r"
    assert rf.config_file(run) == run / "config.json"
    assert rf.params_file(run) == run / "params.json"
    assert rf.budget_file(run) == run / "budget.json"
    assert rf.machines_file(run) == run / "machines.json"
    assert rf.metrics_file(run) == run / "metrics.jsonl"
    assert rf.metrics_csv_file(run) == run / "metrics.csv"
    assert rf.eval_dir(run) == run / "eval"
    assert rf.eval_file(run, 30) == run / "eval" / "step_00000030.json"
    assert rf.checkpoint_file(run) == run / "checkpoint.pt"
    assert rf.history_file(run, 7) == run / "checkpoints" / "step_00000007.pt"
    assert rf.run_of_checkpoint(run / "checkpoint.pt") == run
    assert rf.run_of_checkpoint(rf.history_file(run, 7)) == run
    assert rf.run_of_checkpoint(tmp_path / "agent.pt") is None
    # the checkpoint format's module reads the same files (it takes their names from here)
    from scaledql.checkpoint import checkpoint_path

    run.mkdir(parents=True, exist_ok=True)
    assert checkpoint_path(run) == run / rf.CHECKPOINT


def test_run_reads_a_tiny_real_run(tiny_run):
    run = scaledql.Run(tiny_run)
    assert repr(run) == f"Run({str(tiny_run)!r})"
    assert run.config == json.loads((tiny_run / "config.json").read_text())
    assert run.config["steps"] == 4 and run.config["algo"] == "scaled-ql"
    assert run.params["total"] > 0
    jsonl = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert run.rows() == jsonl
    assert [r["step"] for r in run.rows("eval")] == [2, 4]
    train = run.metrics("train")
    assert list(train["step"]) == [2, 4] and set(train["kind"]) == {"train"}
    assert train["loss"].notna().all()
    assert len(run.metrics()) == len(jsonl)
    assert list(run.evaluations) == [2, 4]
    final = run.final_evaluation
    assert final == run.evaluations[4]
    assert final == json.loads((tiny_run / "eval" / "step_00000004.json").read_text())
    assert set(run.scores) == {"breakout", "asterix"}
    for game, score in run.scores.items():
        assert len(score["returns"]) == 2 and score["mean"] == pytest.approx(
            sum(score["returns"]) / 2)
        assert score == final["games"][game]
    assert run.finished and rf.finished_at(tiny_run, 4) and not rf.finished_at(tiny_run, 6)
    assert run.checkpoint == tiny_run / "checkpoint.pt"
    assert run.history == {2: rf.history_file(tiny_run, 2), 4: rf.history_file(tiny_run, 4)}


def test_each_session_records_its_machine_and_precision(tmp_path, capsys):
    """machines.json: one record per session that trained the run (a resume on another CPU make
    shows as a second machine), and train's first line names the precision and the CPU."""
    from scaledql.device import describe_machine, machine_record

    data = write_tiny_minatar_store(tmp_path / "data")
    run = tmp_path / "run"
    base = ["train", "--data", str(data), "--out", str(run), "--eval-every", "2", *TINY]
    assert main([*base, "--steps", "2"]) == 0
    assert main([*base, "--steps", "4", "--resume"]) == 0
    records = scaledql.Run(run).machines
    here = machine_record("cpu")
    assert [r["from_step"] for r in records] == [0, 2]
    for r in records:
        assert {k: r[k] for k in here} == here and r["precision"] in ("bf16", "float32")
        assert r["at"].endswith("Z")
    err = capsys.readouterr().err
    assert f"device cpu ({records[0]['precision']}; {here['cpu']})" in err
    assert describe_machine("cpu") == describe_machine(record=records[0])
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file() and "cpu family" in cpuinfo.read_text():  # x86 Linux: the generation
        assert here["cpu_id"].startswith("family ") and here["cpu_id"] in describe_machine("cpu")
    rf.machines_file(run).write_text('{"cpu": "x"}')
    with pytest.raises(UserError, match=r"machines\.json: not a list of machine records"):
        _ = scaledql.Run(run).machines


def test_the_writers_formats_are_what_they_were(tiny_run):
    """Byte for byte: an evaluation report is indented JSON without a final newline, the config
    indented JSON with one."""
    report = json.loads(rf.eval_file(tiny_run, 4).read_text())
    assert rf.eval_file(tiny_run, 4).read_text() == json.dumps(report, indent=2)
    config = rf.config_file(tiny_run).read_text()
    assert config == json.dumps(json.loads(config), indent=2) + "\n"


@pytest.mark.parametrize("make", ["nothing", "empty", "file", "eval-only"])
def test_not_a_run_folder_is_one_line(tmp_path, make):
    path = tmp_path / "x"
    if make == "empty":
        path.mkdir()
    elif make == "file":
        path.write_text("x")
    elif make == "eval-only":
        rf.write_evaluation(path, 1, {"games": {}})
    with pytest.raises(UserError) as info:
        scaledql.Run(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    expected = {"nothing": "does not exist", "file": "is not a folder"}.get(
        make, "is not a run folder (no config.json")
    assert expected in message


def test_a_folder_of_runs_says_which_to_pass(tmp_path):
    """`scaledql demo`'s folder holds runs (agent, bc, dt) beside its data and report."""
    from conftest import write_eval_run

    demo = tmp_path / "demo"
    for name in ("agent", "bc", "dt"):
        write_eval_run(demo / name, {"breakout": [1.0]})
    (demo / "data").mkdir()
    with pytest.raises(UserError, match=(
            rf"^{demo} is not a run folder but holds 3: agent, bc, dt; pass one of them "
            rf"\(Run\('{demo}/agent'\)\)$")):
        scaledql.Run(demo)
    assert scaledql.Run(demo / "agent").config["algo"] == "scaled-ql"


def test_config_metrics_and_evaluations_round_trip(tmp_path):
    from scaledql.training.metrics import MetricsLog

    run = tmp_path / "run"
    config = {"algo": "bc", "steps": 20, "seed": 3, "learner": {"width": 0.5}}
    assert rf.write_config(run, config) == run / "config.json"
    assert rf.read_config(run) == config and scaledql.Run(run).config == config
    log = MetricsLog(run, tensorboard=False)
    log.write({"step": 10, "loss": 0.5})
    log.write({"step": 10, "iqm": 0.25}, kind="eval")
    log.write({"step": 20, "loss": 0.25})
    log.close()
    assert not rf.finished_at(run, 20) and not scaledql.Run(run).finished
    log = MetricsLog(run, resume_step=20, tensorboard=False)  # resumed: the rows so far kept
    log.write({"step": 20, "iqm": 0.5}, kind="eval")
    log.close()
    rows = [{"kind": "train", "step": 10, "loss": 0.5}, {"kind": "eval", "step": 10, "iqm": 0.25},
            {"kind": "train", "step": 20, "loss": 0.25}, {"kind": "eval", "step": 20, "iqm": 0.5}]
    assert rf.read_rows(run) == rows and rf.read_rows(run, "eval") == rows[1::2]
    assert rf.eval_steps(run) == {10, 20} and scaledql.Run(run).finished
    assert scaledql.Run(run).metrics("eval").to_dict("records") == rows[1::2]
    reports = {20: {"suite": "minatar", "games": {"breakout": {"returns": [1.0], "mean": 1.0,
                                                               "normalized": 0.1}}},
               100_000_000: {"suite": "minatar", "games": {}}, 3: {"suite": "minatar"}}
    for step, report in reports.items():
        rf.write_evaluation(run, step, report)
    (run / "eval" / "step_x.json").write_text("{}")  # not an evaluation's name: not one
    (run / "eval" / "notes.json").write_text("{}")
    got = scaledql.Run(run)
    assert got.evaluations == dict(sorted(reports.items()))
    assert list(got.evaluations) == [3, 20, 100_000_000]  # by step, not by name
    assert rf.latest_evaluation(run) == (100_000_000, reports[100_000_000])
    assert got.final_evaluation == reports[100_000_000] and got.scores == {}


def test_damaged_files_are_one_line(tmp_path):
    run = tmp_path / "run"
    rf.write_config(run, {"steps": 1})
    rf.metrics_file(run).write_text('{"kind": "train", "step": 1}\n{1}\n')
    with pytest.raises(UserError, match=r"metrics\.jsonl: not valid JSON lines \(line 2"):
        scaledql.Run(run).rows()
    rf.metrics_file(run).write_text("[1]\n")
    with pytest.raises(UserError, match=r"line 1 is not a metrics row"):
        rf.read_rows(run)
    rf.eval_file(run, 1).parent.mkdir()
    rf.eval_file(run, 1).write_text("[]")
    with pytest.raises(UserError, match=r"step_00000001\.json: not an evaluation report"):
        _ = scaledql.Run(run).final_evaluation
    rf.config_file(run).write_text("[1]")
    with pytest.raises(UserError, match=r"config\.json: not a run configuration"):
        _ = scaledql.Run(run).config
    rf.config_file(run).write_bytes(b"\xff\xfe")
    with pytest.raises(UserError, match=r"config\.json: not valid JSON"):
        rf.read_config(run)


def test_run_folder_is_light():
    """Readers anywhere import it: no torch, no pandas until a DataFrame is asked for, and no
    module above it (no import cycle)."""
    code = ("import sys\nimport scaledql.run_folder as rf\n"
            "heavy = [m for m in ('torch', 'numpy', 'pandas') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "ours = sorted(m for m in sys.modules if m.startswith('scaledql'))\n"
            "assert ours == ['scaledql', 'scaledql.atomic_files', 'scaledql.errors', "
            "'scaledql.run_folder'], ours\n"
            "import scaledql as sq\nassert sq.Run is rf.Run\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_train_resume_finds_relative_data_from_any_directory(tmp_path, monkeypatch, capsys):
    """A run started with ``--data data`` (relative, as the studies' commands are) resumes from
    another directory: the data is looked for above the run folder too."""
    project = tmp_path / "project"
    write_tiny_minatar_store(project / "data")
    monkeypatch.chdir(project)
    tiny = [*TINY_NET, "--eval-episodes", "1", "--no-progress", "--device", "cpu"]
    assert main(["train", "--data", "data", "--out", "runs/r", "--steps", "2", *tiny]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["train", "--out", str(project / "runs" / "r"), "--resume", "--steps", "4",
                 "--no-progress"]) == 0, capsys.readouterr().err
    assert main(["train", "--out", str(project / "runs" / "r"), "--resume", "--steps", "6",
                 "--data", "nowhere", "--no-progress"]) == 2  # a path given is taken as given
    assert "nowhere" in capsys.readouterr().err
