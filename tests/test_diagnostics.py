"""Learning diagnostics: every value-based run logs them, each one measures what it says, the
budget is stated in passes, and `scaledql diagnose` plots and checks a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_NET, write_tiny_minatar_store
from scaledql import losses
from scaledql.cli import main
from scaledql.training.budget import budget_line, run_budget
from scaledql.training.diagnostics import _adam_eps_share, srank

TINY = [*TINY_NET, "--eval-episodes", "2", "--log-every", "2", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("diag")
    data = write_tiny_minatar_store(root / "data")
    run = root / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--steps", "6",
                 "--target-update-period", "4", *TINY]) == 0
    return run


def _rows(run: Path, kind: str) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == kind]


def test_a_tiny_train_logs_every_diagnostic(tiny_run):
    train = _rows(tiny_run, "train")
    assert [r["step"] for r in train] == [2, 4, 6]
    for row in train:
        for key in ("loss", "q_spread", "action_gap", "feature_norm", "mean_q"):
            assert math.isfinite(row[key]), key
        for game, actions in (("breakout", 3), ("asterix", 5)):
            assert row[f"cql_uniform/{game}"] == pytest.approx(math.log(actions))
            assert row[f"cql_loss/{game}"] >= 0
        for part in ("encoder", "projection", "heads", "head_bias"):
            assert 0 <= row[f"eps_dominated/{part}"] <= 1
            assert row[f"update_ratio/{part}"] > 0  # every part moved in the logged update
    (evaluation,) = _rows(tiny_run, "eval")
    assert 1 <= evaluation["srank"] <= evaluation["srank_of"]
    assert -1 <= evaluation["dr3_cos"] <= 1
    for game in ("breakout", "asterix"):
        assert 0 < evaluation[f"{game}/top_action_share"] <= 1
    report = json.loads(sorted((tiny_run / "eval").glob("step_*.json"))[-1].read_text())
    assert len(report["games"]["breakout"]["actions"]) == 3
    assert sum(report["games"]["asterix"]["actions"]) > 0


def test_the_budget_is_written_and_stated_in_passes(tiny_run):
    budget = json.loads((tiny_run / "budget.json").read_text())
    # 6 steps × batch 8, half a batch per game; breakout and asterix hold 33 transitions each
    assert budget["games"]["breakout"]["transitions"] == 33
    assert budget["games"]["breakout"]["passes"] == pytest.approx(6 * 8 * 0.5 / 33)
    assert budget["target_copies"] == 1  # 6 steps, a copy every 4
    line = budget_line(budget)
    assert "passes over each game's data: asterix 0.727, breakout 0.727" in line
    assert "1 target copies (every 4 steps)" in line


def test_budget_of_a_learner_without_target():
    b = run_budget({"steps": 100, "learner": {"batch_size": 64}}, {"a": 1000, "b": 3200})
    assert b["games"]["a"]["passes"] == pytest.approx(3.2)
    assert b["games"]["b"]["passes"] == pytest.approx(1.0)
    assert b["target_copies"] is None and "target" not in budget_line(b)


def test_srank_counts_the_directions_that_hold_the_spectrum():
    rng = np.random.default_rng(0)
    low = torch.tensor(rng.normal(size=(200, 3)) @ rng.normal(size=(3, 32)))
    assert srank(low) <= 3
    assert srank(torch.eye(64)) == 64  # a flat spectrum needs (1 − δ)·64 → all but none left
    assert srank(torch.zeros(5, 5)) == 0


def test_eps_share_reads_adams_second_moment():
    w = torch.nn.Parameter(torch.ones(10))
    for eps, expected in ((1.0, 1.0), (1e-12, 0.0)):
        opt = torch.optim.Adam([w], lr=1e-3, eps=eps)
        assert _adam_eps_share(opt, [w]) is None  # no step yet: nothing to say
        w.grad = torch.full((10,), 1e-2)
        opt.step()
        assert _adam_eps_share(opt, [w]) == expected  # √v̂ = |g| = 1e-2 after one step


def test_value_diagnostics_by_hand():
    q = torch.tensor([[1.0, 3.0, 0.0], [2.0, 2.5, 9.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])  # game 2 lacks action 2
    d = losses.value_diagnostics(q, mask)
    assert d["action_gap"] == pytest.approx((2.0 + 0.5) / 2)
    assert d["q_spread"] == pytest.approx(0.25)  # V = (3, 2.5): std 0.25
    means = losses.group_means(torch.tensor([1.0, 3.0, 5.0]), torch.tensor([0, 0, 2]), 3)
    assert means.tolist() == [2.0, 0.0, 5.0]


def test_diagnose_plots_and_names_warning_signs(tiny_run, capsys):
    assert main(["diagnose", str(tiny_run)]) == 0
    out = capsys.readouterr().out
    assert (tiny_run / "diagnostics.png").stat().st_size > 10_000
    # six steps in, Q is flat: every game's CQL term is at ln|A|
    assert "breakout: CQL term" in out and "Q is still flat" in out


def test_diagnose_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: ")


def test_a_one_action_policy_gets_a_warning_line(capsys):
    from scaledql.evaluate import EvalReport

    report = EvalReport("minatar", {"breakout": [1.0]}, 0, 0.001, {"breakout": [0, 97, 3]})
    assert report.one_action_warnings() == [
        "warning: breakout: the policy played action 1 in 97% of its steps (of 3 actions)"]
    assert report.per_game()["breakout"]["top_action_share"] == pytest.approx(0.97)
    assert EvalReport("minatar", {"breakout": [1.0]}, 0, 0.001,
                      {"breakout": [50, 40, 10]}).one_action_warnings() == []


def test_an_empty_panel_says_why():
    from scaledql.reports.diagnostics import why_empty

    evals_only = [{"kind": "eval", "step": 40, "srank": 3.0}]  # shorter than its log interval
    assert why_empty(evals_only, "train", {"log_every": 100, "algo": "bc"}) == (
        "no training row yet: rows are logged every 100 steps, and this run stopped at step 40")
    train_only = [{"kind": "train", "step": 300, "loss": 1.0}]
    assert why_empty(train_only, "eval", {"eval_every": 5000}) == (
        "no evaluation yet: this run evaluates every 5,000 steps and at the end (it is at step "
        "300)")
    assert why_empty(train_only, "train", {"algo": "bc"}) == "not logged by this learner (bc)"


def test_a_game_that_scores_is_not_called_unlearned():
    """The demo's breakout scored 0.401, its best game, with its CQL term near ln|A|: the check
    called it "no learning yet"."""
    from scaledql.reports.diagnostics import health

    flat = {f"cql_uniform/{g}": math.log(3) for g in ("breakout", "freeway")}
    rows = [{"kind": "train", "step": 20_000, "cql_loss/breakout": 1.09,
             "cql_loss/freeway": 1.09, **flat},
            {"kind": "eval", "step": 20_000, "breakout/normalized": 0.401,
             "freeway/normalized": 0.002}]
    lines = health(rows)
    breakout = next(x for x in lines if x.startswith("breakout:"))
    freeway = next(x for x in lines if x.startswith("freeway:"))
    assert "no learning yet" not in breakout and "scores 0.401 (the run's best game)" in breakout
    assert "no learning yet: it scores 0.002" in freeway
