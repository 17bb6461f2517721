"""The main job end to end, tiny: data → multi-game agent → evaluation → report."""

from __future__ import annotations

import json

import pytest

from scaledql.cli import main


@pytest.mark.heavy
def test_demo_quick_writes_the_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["games"] == ["asterix", "breakout", "freeway", "seaquest", "space_invaders"]
    assert summary["seed"] == 0
    for key in ("agent", "behaviour_dataset", "behaviour_last_dqn"):
        assert set(summary[key]["games"]) == set(summary["games"])
    report = (out / "report.md").read_text()
    assert "Seed **0**" in report and "Behaviour policy" in report
    for png in ("per_game.png", "aggregates.png", "learning_curves.png", "performance_profile.png"):
        assert (out / png).stat().st_size > 5_000, png
    evals = sorted((out / "agent" / "eval").glob("step_*.json"))
    assert [p.name for p in evals] == ["step_00000020.json", "step_00000040.json"]
    # with --out, the same folder is a report over its learners' runs (one seed each)
    rep = tmp_path / "over-runs"
    assert main(["report", str(out), "--out", str(rep), "--reps", "50",
                 "--improvement-reps", "10"]) == 0
    over = json.loads((rep / "report.json").read_text())
    assert list(over["methods"]) == ["scaled-ql", "bc", "dt"]
    assert over["games"] == summary["games"]
    assert over["methods"]["scaled-ql"]["final_steps"] == [40]
    # a second run reuses the data and the finished agent
    assert main(["demo", "--quick", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert all(c.get("reused") for c in again["collect"])


def test_the_groups_run_side_by_side_in_workers_with_their_progress_off(tmp_path):
    """The non-quick path: each group in its own spawned one-thread worker, its jobs in turn,
    every DemoConfig/EvalConfig argument passed with its progress bar off."""
    from functools import partial

    import torch

    from scaledql.evaluate import EvalConfig
    from scaledql.experiments.demo_pipeline import DemoConfig, _run_groups

    cfg = DemoConfig(out=tmp_path, device="cpu")
    assert cfg.progress
    groups = [[("cfg", partial(getattr, cfg, "progress")), ("threads", torch.get_num_threads)],
              [("eval", partial(getattr, EvalConfig(progress=True), "progress")),
               ("other", partial(max, 2, 7))]]
    out = _run_groups(cfg, groups)
    assert {k: v[0] for k, v in out.items()} == {"cfg": False, "threads": 1, "eval": False,
                                                 "other": 7}


@pytest.mark.parametrize("size", ["default", "full"])
def test_both_demo_sizes_keep_the_budgets_in_passes(tmp_path, size):
    """10.2 passes for Scaled QL and BC, 2.56 for DT, ε at 0.05 halfway through collection,
    and every one of the 8 collecting environments ends a freeway episode (2,501 steps)."""
    from scaledql.experiments.demo_pipeline import DemoConfig

    cfg = DemoConfig(out=tmp_path) if size == "default" else DemoConfig.full_config(tmp_path)
    assert cfg.full == (size == "full")
    transitions = 5 * cfg.collect_steps
    assert cfg.train_steps * 128 / transitions == pytest.approx(10.24)
    assert cfg.baselines["bc"] == cfg.train_steps
    assert cfg.baselines["dt"] * 128 / transitions == pytest.approx(2.56)
    assert cfg.schedule.epsilon_decay_steps * 2 == cfg.collect_steps
    assert cfg.collect_steps // 8 >= 2_501
    assert cfg.train_steps % cfg.eval_every == 0


def test_demo_sizes_are_one_flag(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["demo", "--quick", "--full"])
    assert stop.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
