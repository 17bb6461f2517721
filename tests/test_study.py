"""`scaledql study`: study files, budgets, resumable runs, and claims judged from the numbers."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from scaledql.cli import main
from scaledql.errors import UserError
from scaledql.experiments.claims import judge, ordering_chance, pair_verdict
from scaledql.experiments.method_scores import MethodScores
from scaledql.experiments.study import DONE, load_study
from scaledql.stats import probability_of_improvement


def _write(tmp_path, text: str):
    path = tmp_path / "study.toml"
    path.write_text(textwrap.dedent(text))
    return path


BASE = """
name = "t"
budgets = ["small", "big"]
[vars]
steps = {small = "5", big = "500"}
extra = {small = [], big = ["--bf16", "--compile"]}
seeds = {small = [0], big = [0, 1, 2]}
[[job]]
id = "a"
seeds = "seeds"
resume = "train"
argv = ["train", "--out", "{out}", "--steps", "{steps}", "--seed", "{seed}", "{extra}"]
[[job]]
id = "b"
after = ["a"]
argv = ["finetune", "offline", "--from", "{runs}/a/seed_0", "--seeds", "{seeds}", "--out", "{out}"]
"""


def test_budgets_resolve_values_lists_and_seeds(tmp_path):
    path = _write(tmp_path, BASE)
    small = load_study(str(path), None, tmp_path / "r")
    assert small.budget == "small" and [j.id for j in small.jobs] == ["a/seed_0", "b"]
    assert small.jobs[0].argv == ["train", "--out", f"{tmp_path}/r/a/seed_0", "--steps", "5",
                                  "--seed", "0"]
    big = load_study(str(path), "big", tmp_path / "r")
    assert [j.id for j in big.jobs] == ["a/seed_0", "a/seed_1", "a/seed_2", "b"]
    assert big.jobs[2].argv[-4:] == ["--seed", "2", "--bf16", "--compile"]
    assert big.jobs[3].argv[-3:] == ["0,1,2", "--out", f"{tmp_path}/r/b"]
    assert big.jobs[3].after == ["a"]


def test_a_table_with_budgets_exists_only_in_them(tmp_path):
    text = BASE + ('[[job]]\nid = "slow"\nbudgets = ["big"]\nargv = ["train", "--out", "{out}"]\n'
                   '[[method]]\nname = "m"\nbudgets = ["big"]\nruns = "{runs}/slow"\n'
                   '[[claim]]\nid = "c"\nbudgets = ["big"]\ntest = "above"\n'
                   'pairs = [["m", "m"]]\n')
    path = _write(tmp_path, text)
    small = load_study(str(path), "small", tmp_path / "r")
    assert [j.id for j in small.jobs] == ["a/seed_0", "b"] and not small.methods
    assert not small.claims
    big = load_study(str(path), "big", tmp_path / "r")
    assert big.jobs[-1].id == "slow" and [c["id"] for c in big.claims] == ["c"]
    assert "budgets" not in big.methods[0] and "budgets" not in big.claims[0]


@pytest.mark.parametrize("edit,message", [
    (lambda s: s.replace('budgets = ["small", "big"]', 'budgets = ["small", "big"]\nbudgit = 1'),
     "unknown key 'budgit'"),
    (lambda s: s.replace('"{steps}"', '"{stepz}"'), "unknown field {stepz}"),
    (lambda s: s.replace('after = ["a"]', 'after = ["zz"]'), "after names 'zz'"),
    (lambda s: s.replace('steps = {small = "5", big = "500"}', 'steps = {big = "500"}'),
     "no value for budget 'small'"),
    (lambda s: s.replace('resume = "train"', 'resume = "maybe"'), "resume must be"),
    (lambda s: s.replace('id = "b"', 'id = "a"'), "id must be a unique"),
    (lambda s: s + '[[method]]\nname = "m"\nrun = "{runs}/a/seed_*"\n', "unknown key 'run'"),
    (lambda s: s + '[[claim]]\nid = "c"\npair = []\n', "unknown key 'pair'"),
    (lambda s: s.replace('seeds = "seeds"', 'seeds = "seedz"'), "seeds names 'seedz'"),
    (lambda s: s.replace('seeds = {small = [0]', 'seeds = {small = [0, -1]'),
     "seeds must be a list of distinct non-negative integers"),
    (lambda s: s + '[[method]]\nname = "m"\nruns = "{runs}/a/seed_*"\n[[claim]]\nid = "c"\n'
                   'pairs = [["m", "mm"]]\n', "pairs name 'mm', not a"),
    (lambda s: s + '[[method]]\nname = "m"\nruns = "{runs}/a/seed_*"\n[[claim]]\nid = "c"\n'
                   'pairs = [["m", "m"]]\ngames = "breakout"\n', "games must be a list of game"),
    (lambda s: s + '[[method]]\nname = "m"\nbehaviour = "data/x"\nfraction = "x"\n',
     "fraction must be a number in"),
    (lambda s: s + '[[method]]\nname = "m"\n', "give either runs = GLOB or behaviour"),
    (lambda s: s + '[[method]]\nname = "m"\nruns = "{runs}/a/seed_*"\nstep = 0\n',
     "step must be a positive whole number"),
    (lambda s: s.replace('id = "b"', 'id = "b"\nbudgets = ["huge"]'),
     "budgets of b must be a non-empty list of the study's budgets"),
])
def test_bad_study_files_are_one_line(tmp_path, edit, message):
    path = _write(tmp_path, edit(BASE))
    with pytest.raises(UserError, match=message.replace("{", r"\{").replace("}", r"\}")):
        load_study(str(path), None, tmp_path / "r")


def test_unknown_study_or_budget_exits_2(tmp_path, capsys):
    assert main(["study", "no-such-study"]) == 2
    assert "no study 'no-such-study'" in capsys.readouterr().err
    assert main(["study", "claims", "--budget", "huge", "--list"]) == 2
    assert "has no budget 'huge'" in capsys.readouterr().err


def test_probability_of_improvement_equals_rliables():
    from rliable import metrics

    rng = np.random.default_rng(0)
    for shape_x, shape_y in (((3, 5), (3, 5)), ((2, 4), (1, 4)), ((5, 1), (4, 1))):
        x = rng.integers(0, 4, shape_x).astype(float)  # ties on purpose
        y = rng.integers(0, 4, shape_y).astype(float)
        assert probability_of_improvement(x, y) == pytest.approx(
            metrics.probability_of_improvement(x, y))


def _method(name, rows, seeds=True):
    matrix = np.asarray(rows, float)
    return MethodScores(name, [f"g{i}" for i in range(matrix.shape[1])], matrix,
                        runs=[f"r{i}" for i in range(len(matrix))] if seeds else [])


def test_verdicts_follow_the_numbers():
    good = _method("good", [[1.0, 0.9, 1.1], [1.2, 1.0, 0.95], [1.1, 1.05, 1.0]])
    bad = _method("bad", [[0.1, 0.2, 0.0], [0.0, 0.1, 0.2], [0.2, 0.0, 0.1]])
    mixed = _method("mixed", [[1.15, 0.95, 1.0], [1.05, 1.1, 1.05], [1.0, 0.9, 0.9]])
    data = _method("data", [[0.5, 0.5, 0.5]], seeds=False)
    one = _method("one", [[2.0, 2.0, 2.0]])
    scores = {m.name: m for m in (good, bad, mixed, data, one)}

    def verdict(test, *pairs):
        return judge({"id": "c", "test": test, "pairs": [list(p) for p in pairs]}, scores)

    assert verdict("above", ("good", "bad"))["verdict"] == "held"
    assert verdict("above", ("bad", "good"))["verdict"] == "not held"
    assert verdict("matches", ("bad", "good"))["verdict"] == "not held"
    assert verdict("matches", ("good", "bad"))["verdict"] == "held"
    assert verdict("above", ("good", "data"))["verdict"] == "held"  # a dataset has one row
    assert verdict("above", ("good", "mixed"))["verdict"] == "unclear"
    assert verdict("above", ("good", "bad"), ("bad", "good"))["verdict"] == "not held"
    assert verdict("above", ("one", "bad"))["pairs"][0]["verdict"] == "unclear (1 run)"
    assert verdict("above", ("good", "nobody"))["verdict"] == "no data"
    assert verdict("above", ("good", "bad"), ("good", "nobody"))["verdict"] == (
        "incomplete (1 of 2 pairs judged)")
    assert verdict("above", ("bad", "good"), ("good", "nobody"))["verdict"] == "not held"
    # Two runs per arm on one game, every run of one arm above the other's: P's CI is a point,
    # but that ordering happens by chance once in six — not evidence either way.
    top = _method("top", [[1.0], [0.9]])
    low = _method("low", [[0.1], [0.2]])
    scores.update(top=top, low=low)
    row = verdict("above", ("low", "top"))["pairs"][0]
    assert row["p_improvement"] == (0.0, 0.0, 0.0) and row["verdict"] == "unclear"
    assert "1/6" in row["note"] or "0.17" in row["note"]
    assert verdict("above", ("top", "low"))["verdict"] == "unclear"
    assert ordering_chance(2, 2, 1) == pytest.approx(1 / 6)
    assert ordering_chance(3, 3, 3) == pytest.approx(1 / 20 ** 3)
    # P near 0.5 while the IQMs part ways: with 3 runs a side, b's IQM CI wholly above a's is
    # "not held"; with 2 it is only noted.
    flat = _method("flat", [[0.0, 0.0, 0.5], [0.0, 0.0, 0.6], [0.0, 0.0, 0.55]])
    tall = _method("tall", [[0.0, 0.0, 5.0], [0.0, 0.0, 6.0], [0.0, 0.0, 5.5]])
    scores.update(flat=flat, tall=tall)
    row = verdict("above", ("flat", "tall"))["pairs"][0]
    assert 0.3 < row["p_improvement"][0] < 0.5 and row["verdict"] == "not held"
    assert "IQM CI lies wholly above" in row["note"]
    scores.update(flat=_method("flat", flat.matrix[:2]), tall=_method("tall", tall.matrix[:2]))
    row = verdict("above", ("flat", "tall"))["pairs"][0]
    assert row["verdict"] == "unclear" and "IQM CI lies wholly above" in row["note"]
    row = verdict("above", ("good", "bad"))["pairs"][0]
    assert row["p_improvement"][0] == 1.0 and row["a_runs"] == 3
    assert row["a_iqm"][1] <= row["a_iqm"][0] <= row["a_iqm"][2]


def test_a_p_bound_at_one_half_is_not_above_it():
    """The claims v3 report called ×1 > ×0.5 held with P's CI [0.5000000000000001, 0.817]: a
    bound of 0.5 left by floating-point sums is 0.5, so the pair is unclear."""
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    iqm = (0.5, 0.4, 0.6)
    args = (iqm, iqm, x, x, (True, True))
    assert pair_verdict("above", (0.5000000000000001, 0.817), *args)[0] == "unclear"
    assert pair_verdict("above", (0.501, 0.817), *args)[0] == "held"
    assert pair_verdict("above", (0.2, 0.4999999999999999), *args)[0] == "unclear"
    assert pair_verdict("matches", (0.4999999999999999, 0.6), *args)[0] == "held"


@pytest.mark.heavy
def test_claims_smoke_study_end_to_end_and_resumes(tmp_path, capsys):
    """The issue's check: `scaledql study claims --budget smoke` runs every arm of C1-C7 (the
    five runs' collection and merge included), writes the report, and a second call skips every
    finished job."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    argv = ["study", "claims", "--budget", "smoke", "--runs", str(runs), "--results", str(results),
            "--jobs", "2"]
    assert main(argv) == 0
    out = capsys.readouterr()
    records = [json.loads(x) for x in (runs / "study.jsonl").read_text().splitlines()]
    assert len(records) == 39 and all(r["exit"] == 0 for r in records)
    report = json.loads((results / "report.json").read_text())
    ids = [c["id"] for c in report["claims"]]
    assert ids == ["C1", "C2 (sub-optimal)", "C2 (near-optimal)", "C3", "C3 (adjacent widths)",
                   "C3 (ResNet)", "C3 (IMPALA)", "C4", "C4 (ResNet, IMPALA)", "C5 (final score)",
                   "C5 (score at 2.6 passes)", "C5 (area under the learning curve)",
                   "C6 (whole pretrained network, final score)",
                   "C6 (pretrained encoder, final score)",
                   "C6 (whole pretrained network, area under the learning curve)",
                   "C6 (pretrained encoder, area under the learning curve)", "C7",
                   "C7 (targets)"]
    assert all(c["verdict"] != "no data" for c in report["claims"]), report["claims"]
    assert not report["methods_without_data"]
    md = (results / "report.md").read_text()
    assert "| **C7**" in md and "scaledql study claims --budget smoke" in md
    # the capacity pairs are also judged over evaluation episodes; the validation split's curves
    c3 = next(c for c in report["claims"] if c["id"] == "C3")
    assert all(len(r["episode_delta"]) == 3 for r in c3["pairs"])
    assert "## Validation split" in md and (results / "validation.png").stat().st_size > 0
    # the merged sub-optimal data holds the five runs, each its own seed
    card = (runs / "minatar-sub5" / "breakout" / "manifest.json").read_text()
    assert [r["seed"] for r in json.loads(card)["provenance"]["merged_runs"]] == [1, 11, 21, 31, 41]
    assert len(list((results / "runs").glob("*.json"))) >= 33
    # every run's budget is stated in passes beside its score
    assert all("passes" in m["budget"] for m in report["methods"] if m["runs"] and m["budget"])
    assert "passes" in next(m for m in report["methods"] if m["name"] == "Scaled QL, sub-optimal")[
        "budget"]
    # C3/C4 scored against parameter count: every capacity arm is a point of its series.
    capacity = md.split("## Capacity", 1)[1].split("\n## ", 1)[0]
    assert (results / "capacity.png").stat().st_size > 0
    for series, n in [("Nature CNN, feature norm", 5), ("Nature CNN, no feature norm", 2),
                      ("ResNet, feature norm", 3), ("ResNet, no feature norm", 3),
                      ("IMPALA, feature norm", 1), ("IMPALA, no feature norm", 1)]:
        assert capacity.count(f"| {series} |") == n, series
    resnet = [m["params"] for m in report["methods"] if m["series"] == "ResNet, feature norm"]
    assert len(resnet) == 3 and resnet == sorted(resnet)
    assert "C1:" in out.out
    # Resumable: everything finished is skipped; a run whose marker is gone is resumed (a
    # finished training run resumes to no new step and no second evaluation).
    (runs / "sql-sub" / "seed_0" / ".study-done").unlink()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "38/39 jobs already finished" in err and "--resume" in err
    records = [json.loads(x) for x in (runs / "study.jsonl").read_text().splitlines()]
    assert len(records) == 40 and "--resume" in records[-1]["command"]
    evals = [json.loads(x) for x in (runs / "sql-sub" / "seed_0" / "metrics.jsonl")
             .read_text().splitlines() if '"eval"' in x]
    assert len(evals) == 1


def test_elapsed_wall_time_counts_overlapping_jobs_once():
    from scaledql.experiments.results import elapsed_seconds

    def record(end: str, seconds: float) -> dict:
        return {"finished_at": f"2026-01-01T{end}Z", "seconds": seconds}

    # 00:00-00:10 and 00:04-00:05 overlap (10 min), 00:59-01:00 after a gap (1 min), 00:09-00:12
    # extends the first (2 more min).
    records = [record("00:10:00", 600), record("00:05:00", 60), record("01:00:00", 60),
               record("00:12:00", 180)]
    assert elapsed_seconds(records) == 13 * 60
    assert elapsed_seconds([]) == 0


def test_a_stopped_study_records_its_interrupted_jobs_and_starts_no_more(tmp_path):
    """SIGTERM to the study's process group (a scheduler, `kill -- -PGID`): the running job
    stops, its attempt is recorded as interrupted (its time and command count), the next job
    does not start, and the study exits non-zero with one line."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = _write(tmp_path, """
        name = "stop"
        budgets = ["only"]
        [[job]]
        id = "long"
        argv = ["collect", "--suite", "minatar", "--games", "breakout", "--steps", "10000000",
                "--out", "{out}/data", "--seed", "0", "--no-progress"]
        [[job]]
        id = "next"
        after = ["long"]
        argv = ["data", "info", "{runs}/long/data"]
        """)
    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "scaledql", "study", str(path), "--runs",
                             str(runs), "--results", str(tmp_path / "results"), "--jobs", "1"],
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = runs / "logs" / "long.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and log.stat().st_size > 0):
        time.sleep(0.2)
    time.sleep(3)  # the job is under way
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "study stopped by a signal" in err and "Traceback" not in err
    records = [json.loads(x) for x in (runs / "study.jsonl").read_text().splitlines()]
    assert [r["job"] for r in records] == ["long"]
    assert records[0]["interrupted"] and records[0]["exit"] != 0 and records[0]["seconds"] >= 3
    assert not (runs / "logs" / "next.log").exists()
    commands = (tmp_path / "results" / "commands.md").read_text()
    assert "(interrupted)" in commands


@pytest.mark.heavy
def test_tuning_smoke_study_reports_passes_curves_and_diagnostics(tmp_path):
    """`scaledql study tuning --budget smoke`: every arm runs; the report gives each method its
    budget in passes, its learning curve (two evaluations) and its runs' warning signs."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    assert main(["study", "tuning", "--budget", "smoke", "--runs", str(runs), "--results",
                 str(results), "--jobs", "2"]) == 0
    records = [json.loads(x) for x in (runs / "study.jsonl").read_text().splitlines()]
    assert len(records) == 7 and all(r["exit"] == 0 for r in records)
    report = json.loads((results / "report.json").read_text())
    assert [c["id"] for c in report["claims"]] == ["bf16"]
    by_name = {m["name"]: m for m in report["methods"]}
    # stage C's smoke arm: the preset with another value target, five games
    hl_gauss = by_name["C: HL-Gauss, sigma 0.75 bins"]
    assert hl_gauss["runs"] == 1 and [p["step"] for p in hl_gauss["curve"]] == [10, 20]
    hl_config = json.loads((runs / "c-hl-gauss-0.75" / "seed_0" / "config.json").read_text())
    assert (hl_config["learner"]["loss"], hl_config["learner"]["hl_gauss_sigma_ratio"]) == \
        ("hl-gauss", 0.75)
    preset = by_name["A: Scaled QL preset (bf16)"]
    assert preset["runs"] == 1 and "passes" in preset["budget"]
    assert "target copies" in preset["budget"] and "target" not in by_name["A: BC preset"]["budget"]
    assert [p["step"] for p in preset["curve"]] == [10, 20]
    # the same runs scored at their first evaluation (`step = 10`): half the passes, the
    # curve's first point, and no curve or warnings of its own
    first = by_name["A: Scaled QL preset (bf16), first evaluation"]
    assert first["iqm"] == pytest.approx(preset["curve"][0]["iqm"]) and not first["curve"]
    half = float(preset["budget"].split()[0]) / 2
    assert float(first["budget"].split()[0]) == pytest.approx(half, rel=0.01)
    md = (results / "report.md").read_text()
    assert "## Learning curves" in md and "## Diagnostics" in md and "| budget |" in md
    assert (results / "curves.png").stat().st_size > 0
    # the machines the runs trained on, from each run's machines.json: one machine here, and
    # one precision unless its CPU lacks native bf16 (then the bf16 arm alone runs bf16)
    trained = report["run_machines"]
    assert sum(t["runs"] for t in trained) == 6 and len({t["machine"] for t in trained}) == 1
    assert {t["precision"] for t in trained} <= {"bf16", "float32"} and len(trained) <= 2
    assert "Runs trained on: " in md and all(
        f"{t['machine']}, {t['precision']} ({t['runs']} run" in md for t in trained)
    per_run = json.loads((results / "runs" / "a-sql-preset__seed_0.json").read_text())
    assert per_run["machines"][0]["from_step"] == 0
    # 20 steps on a tiny store: the policies are still one action, and the diagnostics say so
    assert any("plays one action" in w for w in preset["warnings"])
    # A fresh clone: the runs folder is gone but for the data's action logs (committed beside
    # the results). The same command rebuilds the data and restores every finished run from
    # the results' archive instead of training it again; the report is the same.
    archives = sorted(p.name for p in (results / "archive").iterdir())
    assert len(archives) == 7 and "study.jsonl" in archives  # six runs and the command log
    assert sum(p.stat().st_size for p in (results / "archive").iterdir()) < 2_000_000
    for path in runs.iterdir():
        if path.name != "minatar-data-logs":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert main(["study", "tuning", "--budget", "smoke", "--runs", str(runs), "--results",
                 str(results), "--jobs", "2"]) == 0
    records = [json.loads(x) for x in (runs / "study.jsonl").read_text().splitlines()]
    assert len(records) == 8 and records[-1]["job"] == "data" and records[-1]["exit"] == 0
    assert "rebuilt from its action log" in (runs / "logs" / "data.log").read_text()
    again = json.loads((results / "report.json").read_text())
    assert [(m["name"], m["iqm"], m["curve"]) for m in again["methods"]] == \
        [(m["name"], m["iqm"], m["curve"]) for m in report["methods"]]
    assert not (runs / "a-sql-preset" / "checkpoint.pt").exists()  # no job starts from it


def test_tuning_stage_b_shares_the_claims_data_and_budget():
    """Stage B (`--budget cpu-five`) tunes on the claims study's run-1 data (v2's sub-optimal data), at its
    cpu budget's steps (10.2 passes a game), with two seeds for every Scaled QL arm."""
    tuning, claims = load_study("tuning", "cpu-five"), load_study("claims", "cpu")
    data = {s.name: next(j for j in s.jobs if j.id == "data").argv for s in (tuning, claims)}
    assert data["tuning"] == data["claims"] and "--log-dir" in data["tuning"]
    train = [j for j in tuning.jobs if j.id != "data"]
    assert train and all(j.id.startswith("b-") for j in train)
    sql_sub = next(j for j in claims.jobs if j.id == "sql-sub/seed_0").argv
    steps = sql_sub[sql_sub.index("--steps") + 1]
    for job in train:
        assert job.argv[job.argv.index("--data-fraction") + 1] == "0.2"
        if "dt" not in job.id:
            assert job.argv[job.argv.index("--steps") + 1] == steps
    sql = [j.id for j in train if j.id.startswith("b-sql-")]
    assert len(sql) == 8 and all(f"{base}/seed_1" in sql for base in
                                 {i.split("/")[0] for i in sql})


def test_tuning_stage_c_compares_the_value_targets_at_stage_b_budget(tmp_path):
    """Stage C (`--budget cpu-targets`): C51, HL-Gauss at σ 0.5 / 0.75 / 1.0 bin widths,
    two-hot and MSE, two seeds each, on stage B's data at its steps (10.2 passes a game); each
    arm's command is a valid `train` command (its merged config, on a stand-in store)."""
    from conftest import write_tiny_minatar_store
    from scaledql.cli.train import build_config, register

    targets, five = load_study("tuning", "cpu-targets"), load_study("tuning", "cpu-five")
    preset = next(j for j in five.jobs if j.id == "b-sql-preset/seed_0").argv
    train = [j for j in targets.jobs if j.id != "data"]
    assert [j.id for j in targets.jobs if j.id == "data"] and all(j.id.startswith("c-")
                                                                 for j in train)
    want = {"c-c51": ("c51", 0.75), "c-hl-gauss-0.5": ("hl-gauss", 0.5),
            "c-hl-gauss-0.75": ("hl-gauss", 0.75), "c-hl-gauss-1.0": ("hl-gauss", 1.0),
            "c-two-hot": ("two-hot", 0.75), "c-mse": ("mse", 0.75)}
    assert sorted(j.id for j in train) == sorted(f"{a}/seed_{s}" for a in want for s in (0, 1))
    data = write_tiny_minatar_store(tmp_path / "data")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    for job in train:
        argv = job.argv
        for flag in ("--data", "--data-fraction", "--steps", "--eval-every"):
            assert argv[argv.index(flag) + 1] == preset[preset.index(flag) + 1], (job.id, flag)
        argv = [*argv[:argv.index("--data") + 1], str(data), *argv[argv.index("--data") + 2:]]
        args = parser.parse_args([*argv, "--print-config"])
        args.out = tmp_path / job.id
        learner = build_config(args).learner
        assert (learner.loss, learner.hl_gauss_sigma_ratio) == want[job.id.split("/")[0]]
    claims = {c["id"]: c for c in targets.claims}
    assert claims["C: HL-Gauss"]["pairs"] == [["C: HL-Gauss, sigma 0.75 bins",
                                               "C: C51 (the preset)"]]


def test_a_cut_off_training_job_continues_from_its_archive_on_a_fresh_clone(tmp_path):
    """A study stopped mid-run packs each cut-off training job with its checkpoint
    (``archive/<job>.partial.tar.gz``, committed with the results); on a clone without the runs
    folder the same command unpacks it, continues it with ``--resume`` from where it stopped, and
    its final archive replaces the partial one."""
    import os
    import signal
    import subprocess
    import sys
    import tarfile
    import time

    from conftest import TINY_NET, write_tiny_minatar_store
    from scaledql.checkpoint import load_checkpoint

    data = write_tiny_minatar_store(tmp_path / "data")
    steps = 400  # the kill comes at its first log line (step 10), long before the end
    path = _write(tmp_path, f"""
        name = "cut"
        budgets = ["only"]
        [[job]]
        id = "t"
        resume = "train"
        argv = ["train", "--data", "{data}", "--out", "{{out}}", "--steps", "{steps}",
                "--seed", "0", "--eval-episodes", "1", "--device", "cpu", "--no-progress",
                "--log-every", "10", {', '.join(f'"{a}"' for a in TINY_NET)}]
        """)
    runs, results = tmp_path / "runs", tmp_path / "results"
    command = [sys.executable, "-m", "scaledql", "study", str(path), "--runs", str(runs),
               "--results", str(results), "--jobs", "1"]
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = runs / "t" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.is_file() and metrics.stat().st_size > 0):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Traceback" not in err
    assert "t: cut off, kept in" in err
    cut_at = load_checkpoint(runs / "t")["step"]
    assert 0 < cut_at < steps
    partial = results / "archive" / "t.partial.tar.gz"
    with tarfile.open(partial) as tar:
        assert "checkpoint.pt" in tar.getnames()
    assert main(["study", str(path), "--runs", str(runs), "--results", str(results),
                 "--list"]) == 0

    shutil.rmtree(runs)  # a fresh clone: only the committed results remain
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "1 cut-off one(s) that continue where they stopped" in done.stderr
    assert "--resume" in (runs / "logs" / "t.log").read_text()
    assert load_checkpoint(runs / "t")["step"] == steps
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    train_steps = [r["step"] for r in rows if r.get("kind") == "train"]
    assert train_steps[0] <= cut_at < train_steps[-1]  # one log, before and after the cut
    assert not partial.exists() and (results / "archive" / "t.tar.gz").is_file()
    records = [json.loads(x) for x in (runs / "study.jsonl").read_text().splitlines()]
    assert [r.get("interrupted", False) for r in records] == [True, False]


def test_report_only_never_writes_a_worse_report(tmp_path, capsys, write_game):
    """Without the data a report scored, ``--report-only`` refuses in one line naming what is
    missing and what makes it, and leaves the report as it was (a fresh clone has the committed
    report and archive but not data/)."""
    path = _write(tmp_path, """
        name = "r"
        budgets = ["b"]
        [[job]]
        id = "data"
        argv = ["collect", "--suite", "minatar", "--games", "breakout", "--steps", "40",
                "--out", "{runs}/data", "--no-progress"]
        [[method]]
        name = "behaviour"
        behaviour = "{runs}/data"
        """)
    runs, results = tmp_path / "runs", tmp_path / "results"
    argv = ["study", str(path), "--runs", str(runs), "--results", str(results), "--report-only"]
    write_game(runs / "data", "breakout", [(4, True, False)] * 3)
    assert main(argv) == 0  # with its data: written
    capsys.readouterr()
    report = (results / "report.md").read_bytes()
    shutil.rmtree(runs / "data")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --report-only would drop 'behaviour' from {results}/report.md: "
                   f"dataset directory {runs}/data does not exist; `scaledql study {path} "
                   f"--budget b` makes it first (its job 'data'; `scaledql study {path} --budget "
                   "b --list` shows its command); the report is left as it was")
    assert (results / "report.md").read_bytes() == report


def test_a_packaged_studys_results_are_found_from_any_directory(tmp_path, monkeypatch, capsys):
    from scaledql.experiments.study import STUDIES_DIR

    clone = STUDIES_DIR.parents[3]
    if not (clone / "results" / "claims-minatar-cpu" / "report.md").is_file():
        pytest.skip("not run from a clone with the committed results")
    monkeypatch.chdir(tmp_path)
    assert main(["study", "claims", "--budget", "cpu", "--list"]) == 0
    out = capsys.readouterr()
    assert f"[study] results: {clone}/results/claims-minatar-cpu\n" in out.err
    archive = clone / "results" / "claims-minatar-cpu" / "archive"
    finished = [p for p in archive.glob("*.tar.gz") if not p.name.endswith(".partial.tar.gz")]
    # Every finished run the clone commits is found (kept, or done where runs/ holds it), not
    # listed "to do".
    status = {line.split(":")[0][7:]: line[:6].strip() for line in out.out.splitlines()}
    jobs = [p.name.removesuffix(".tar.gz").replace("__", "/") for p in finished]
    assert jobs and all(status[job] in ("kept", "done") for job in jobs), status
    assert not list(tmp_path.iterdir()) and os.getcwd() == str(tmp_path)


def test_study_help_names_every_packaged_study(capsys):
    from scaledql.experiments.study import STUDIES_DIR

    with pytest.raises(SystemExit):
        main(["study", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    names = sorted(p.stem for p in STUDIES_DIR.glob("*.toml"))
    assert "tuning" in names and f"a packaged study name ({', '.join(names)})" in text


def _run_trained_in(run: Path, precision: str, bf16=None) -> None:
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"learner": {"bf16": bf16}}))
    (run / "machines.json").write_text(json.dumps([{"cpu": "x", "precision": precision}]))


def test_a_machine_leaves_a_precision_group_to_machines_that_train_in_its_precision(tmp_path):
    """Claims v3's offline arms trained in bf16: a CPU that would train them in float32 leaves
    the rest of their group (and nothing else) for one that trains bf16; its C5/C6 arms are
    pinned to float32 (their runs do not count), so they run anywhere."""
    from scaledql.experiments.archive import restore_jobs
    from scaledql.experiments.precision import held_back, held_back_note, local_precision

    study = load_study("claims", "cpu", tmp_path / "runs")
    results = Path(__file__).resolve().parents[1] / "results" / "claims-minatar-cpu"
    assert restore_jobs(study, results)
    held, groups = held_back(study, "float32")
    ids = {j.id for j in held}
    assert groups == {"offline": {"bf16"}}
    assert {"cap-nature-w05/seed_3", "c7-mse/seed_0", "bc-sub/seed_2"} <= ids
    assert all(j.group == "offline" for j in held) and not any(j.id.startswith(
        ("data", "pretrain", "finetune", "sql-sub")) for j in held)
    note = held_back_note(held, groups, "float32")
    assert note is not None and "train in float32" in note and "'offline' in bf16" in note
    assert held_back(study, "bf16")[0] == [] and held_back_note([], {}, "bf16") is None
    fresh = load_study("claims", "cpu", tmp_path / "fresh")  # a clone: only the archive
    assert {j.id for j in held_back(fresh, "float32", results)[0]} == ids
    transfer = [j for j in study.jobs if j.group == "transfer"]
    assert len(transfer) == 10 and all(
        "--no-bf16" in j.argv or "learner.bf16=false" in j.argv for j in transfer)
    assert local_precision() in ("bf16", "float32")
    assert held_back(load_study("claims", "cpu", tmp_path / "empty"), "float32")[0] == []


def test_jobs_waiting_on_a_held_job_are_held_and_pinned_runs_do_not_count(tmp_path):
    from scaledql.experiments.precision import held_back, mixed_note, run_precisions

    path = _write(tmp_path, """
        name = "p"
        budgets = ["b"]
        [[job]]
        id = "a"
        group = "g"
        seeds = [0, 1]
        argv = ["train", "--out", "{out}"]
        [[job]]
        id = "after-a"
        after = ["a"]
        argv = ["train", "--out", "{out}"]
        [[job]]
        id = "free"
        argv = ["train", "--out", "{out}"]
        [[job]]
        id = "pinned"
        group = "h"
        argv = ["train", "--out", "{out}", "--no-bf16"]
        """)
    study = load_study(str(path), None, tmp_path / "r")
    assert held_back(study, "float32")[0] == []
    _run_trained_in(tmp_path / "r" / "pinned", "float32", bf16=False)
    assert run_precisions(tmp_path / "r" / "pinned") == set()
    assert held_back(study, "bf16")[0] == []  # a pinned run trains alike everywhere
    _run_trained_in(tmp_path / "r" / "a" / "seed_0", "bf16")  # cut off: it waits too
    held, groups = held_back(study, "float32")
    assert [j.id for j in held] == ["a/seed_0", "a/seed_1", "after-a"] and groups == {"g": {"bf16"}}
    (tmp_path / "r" / "a" / "seed_0" / DONE).write_text("{}")  # finished
    assert [j.id for j in held_back(study, "float32")[0]] == ["a/seed_1", "after-a"]
    # --bf16 counts (where bf16 is not native it trains float32); a group with both is not held
    _run_trained_in(tmp_path / "r" / "a" / "seed_1", "float32", bf16=True)
    assert run_precisions(tmp_path / "r" / "a" / "seed_1") == {"float32"}
    assert held_back(study, "float32")[0] == [] and held_back(study, "bf16")[0] == []
    note = mixed_note(study)
    assert note is not None and "'g' already trained in both" in note
    assert held_back(study, "bf16")[0] == []
    bad = _write(tmp_path, """
        name = "p"
        budgets = ["b"]
        [[job]]
        id = "a"
        group = 3
        argv = ["train"]
        """)
    with pytest.raises(UserError, match="group must be a non-empty string"):
        load_study(str(bad), None, tmp_path / "r")


def test_a_cut_off_job_of_several_runs_is_archived_with_the_resume_state_of_its_unfinished_ones(
        tmp_path):
    """A `finetune` job (its own command continues it: finished runs skipped, the cut-off one
    resumed) is packed partial when a stop cuts it off: each unfinished run's checkpoint and
    replay go in, a finished run's do not; its final archive keeps none."""
    import tarfile

    from scaledql.experiments.archive import archive_job, archive_path, archive_unfinished

    path = _write(tmp_path, """
        name = "ft"
        budgets = ["b"]
        [[job]]
        id = "ft"
        argv = ["finetune", "offline", "--out", "{out}"]
        """)
    study = load_study(str(path), None, tmp_path / "runs")
    results = tmp_path / "results"
    job = study.jobs[0]
    for arm, last in (("done", 10), ("cut", 4)):
        run = job.out / arm / "seed_0"
        (run / "eval").mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"steps": 10}))
        for step in sorted({0, last}):
            (run / "eval" / f"step_{step:08d}.json").write_text("{}")
            with open(run / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"kind": "eval", "step": step}) + "\n")
        (run / "checkpoint.pt").write_bytes(b"x" * 100)
        (run / f"replay-{last:09d}.npz").write_bytes(b"y" * 100)
    assert archive_unfinished(study, results) == ["ft"]
    with tarfile.open(archive_path(results, "ft", partial=True)) as tar:
        names = set(tar.getnames())
    assert {"cut/seed_0/checkpoint.pt", "cut/seed_0/replay-000000004.npz",
            "done/seed_0/eval/step_00000010.json", "done/seed_0/metrics.jsonl"} <= names
    assert not {"done/seed_0/checkpoint.pt", "done/seed_0/replay-000000010.npz"} & names

    with open(job.out / "cut" / "seed_0" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"kind": "eval", "step": 10}) + "\n")
    (job.out / DONE).write_text("{}")
    assert archive_unfinished(study, results) == []
    target = archive_job(study, job, results)
    assert target is not None and not archive_path(results, "ft", partial=True).exists()
    with tarfile.open(target) as tar:
        assert not [n for n in tar.getnames() if n.endswith((".pt", ".npz"))]
