"""Reports over runs: score matrices, rliable's numbers checked by hand, grouping, layouts, CLI.

Run folders are synthesized in the formats ``scaledql train`` writes (``conftest.write_eval_run``)
so that every expected number can be computed here from the raw returns.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import write_eval_run
from scaledql.cli import main
from scaledql.errors import UserError
from scaledql.reports import report_runs
from scaledql.suites.scores import normalize

GAMES = ("breakout", "freeway", "space_invaders")


def _returns(rng: np.random.Generator, scale: float, games=GAMES) -> dict[str, list[float]]:
    return {g: (rng.integers(0, 20, 3) * scale).tolist() for g in games}


def _expected(runs: dict[int, dict[str, list[float]]], games=GAMES) -> np.ndarray:
    """[seeds, games]: normalized mean return per seed (sorted) and game."""
    return np.array([[normalize("minatar", g, float(np.mean(runs[s][g]))) for g in games]
                     for s in sorted(runs)])


@pytest.fixture
def two_methods(tmp_path):
    """scaled-ql and bc, seeds 0-2 each, written in a shuffled order."""
    rng = np.random.default_rng(0)
    returns = {algo: {s: _returns(rng, scale) for s in range(3)}
               for algo, scale in (("scaled-ql", 1.0), ("bc", 0.5))}
    runs = []
    for seed in (2, 0, 1):
        for algo in ("scaled-ql", "bc"):
            runs.append(write_eval_run(tmp_path / f"{algo}-s{seed}", returns[algo][seed],
                                       algo=algo, seed=seed))
    return runs, returns


def test_report_numbers_are_rliables_on_the_seed_by_game_matrix(two_methods, tmp_path):
    from rliable import library as rly
    from rliable import metrics

    runs, returns = two_methods
    rep = report_runs(runs, tmp_path / "rep", reps=200, improvement_reps=50)
    assert list(rep["methods"]) == ["scaled-ql", "bc"] and rep["games"] == list(GAMES)
    a, b = _expected(returns["scaled-ql"]), _expected(returns["bc"])
    sql = rep["methods"]["scaled-ql"]
    assert sql["seeds"] == [0, 1, 2]
    np.testing.assert_allclose(sql["scores"], a)
    np.testing.assert_allclose(rep["methods"]["bc"]["scores"], b)
    agg = sql["aggregates"]
    # point estimates by hand: IQM = mean of the middle half of the 9 scores (2 cut each end)
    assert agg["iqm"] == pytest.approx(np.sort(a.ravel())[2:-2].mean())
    assert agg["median"] == pytest.approx(np.median(a.mean(axis=0)))
    assert agg["mean"] == pytest.approx(a.mean())
    assert agg["optimality_gap"] == pytest.approx(1 - np.minimum(a, 1).mean())
    # the intervals: rliable's stratified bootstrap on this matrix (not its transpose), seeded
    np.random.seed(0)
    _, ci = rly.get_interval_estimates({"x": a}, lambda x: np.array([
        metrics.aggregate_iqm(x), metrics.aggregate_median(x), metrics.aggregate_mean(x),
        metrics.aggregate_optimality_gap(x)]), reps=200)
    for i, key in enumerate(("iqm", "median", "mean", "optimality_gap")):
        assert agg[f"{key}_ci"] == pytest.approx([ci["x"][0][i], ci["x"][1][i]])
        assert agg[f"{key}_ci"][0] <= agg[key] <= agg[f"{key}_ci"][1]
    # P(scaled-ql > bc) by hand: over games, the share of (run, run) pairs won, ties half
    wins = [np.mean([(x > y) + 0.5 * (x == y) for x in a[:, g] for y in b[:, g]])
            for g in range(len(GAMES))]
    (poi,) = rep["probability_of_improvement"]
    assert (poi["x"], poi["y"]) == ("scaled-ql", "bc")
    assert poi["p"] == pytest.approx(np.mean(wins))
    assert poi["ci"][0] <= poi["p"] <= poi["ci"][1] and poi["ci"][0] < poi["ci"][1]
    per_game = sql["per_game"]["freeway"]
    assert per_game["mean"] == pytest.approx(a[:, 1].mean())
    profile = rep["performance_profile"]
    tau = profile["taus"][40]
    assert profile["profiles"]["bc"][40] == pytest.approx(np.mean(b > tau))
    for name in ("intervals", "per_game", "performance_profile", "improvement",
                 "learning_curves"):
        assert (tmp_path / "rep" / f"{name}.png").stat().st_size > 5_000, name
    text = (tmp_path / "rep" / "report.md").read_text()
    for heading in ("### IQM", "### Median", "### Mean", "### Optimality gap",
                    "## Probability of improvement", "## Performance profile"):
        assert heading in text
    assert f"| scaled-ql | scaled-ql | 3 | 0, 1, 2 | 100 | 3 | `{tmp_path}/data`" in text
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["methods"]["bc"][
        "aggregates"] == rep["methods"]["bc"]["aggregates"]


def test_same_runs_same_bytes_and_the_callers_random_state_is_kept(two_methods, tmp_path):
    runs, _ = two_methods
    np.random.seed(123)
    expected_draw = np.random.random()
    np.random.seed(123)
    for out in ("one", "two"):
        report_runs(list(reversed(runs)), tmp_path / out, reps=100, improvement_reps=20)
    assert np.random.random() == expected_draw
    for name in ("report.json", "report.md"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def _variants(tmp_path) -> list:
    rng = np.random.default_rng(1)
    runs = []
    for encoder in ("nature", "impala"):
        for seed in (0, 1):
            runs.append(write_eval_run(tmp_path / f"sql-{encoder}-s{seed}", _returns(rng, 1.0),
                                       seed=seed, learner={"encoder": encoder},
                                       out=f"elsewhere/{encoder}{seed}", device="cpu"))
    runs.append(write_eval_run(tmp_path / "bc-s0", _returns(rng, 1.0), algo="bc"))
    return runs


def test_methods_are_named_by_the_options_that_tell_runs_apart(tmp_path):
    runs = _variants(tmp_path)
    rep = report_runs(runs, tmp_path / "rep", reps=50, improvement_reps=10)
    assert list(rep["methods"]) == ["scaled-ql encoder=nature", "scaled-ql encoder=impala", "bc"]
    assert rep["methods"]["scaled-ql encoder=impala"]["seeds"] == [0, 1]
    assert len(rep["probability_of_improvement"]) == 3
    by = report_runs(runs, tmp_path / "by", group_by=["algo", "learner.encoder"], reps=50,
                     improvement_reps=10)
    assert list(by["methods"]) == ["scaled-ql encoder=nature", "scaled-ql encoder=impala",
                                   "bc encoder=nature"]
    with pytest.raises(UserError, match="both score seed 0 on breakout"):
        report_runs(runs, tmp_path / "algo", group_by=["algo"])
    with pytest.raises(UserError, match=r"no run has the option 'learner\.depth'"):
        report_runs(runs, tmp_path / "x", group_by=["learner.depth"])
    labelled = report_runs(runs, tmp_path / "lab", {runs[2]: "IMPALA", runs[3]: "IMPALA"},
                           reps=50, improvement_reps=10)
    assert list(labelled["methods"]) == ["scaled-ql encoder=nature", "IMPALA", "bc"]
    assert not (tmp_path / "algo").exists() and not (tmp_path / "x").exists()


def test_a_finetuning_experiment_is_one_method_per_arm_with_a_run_per_game(tmp_path):
    out = tmp_path / "ft"
    (out).mkdir()
    (out / "finetune.json").write_text(json.dumps({"kind": "offline"}))
    rng = np.random.default_rng(2)
    cells = {}
    for arm in ("pretrained", "scratch"):
        for game in ("breakout", "freeway"):
            for seed in (0, 1):
                rets = _returns(rng, 1.0, [game])
                cells[(arm, seed, game)] = rets[game]
                write_eval_run(out / arm / game / f"seed_{seed}", rets, seed=seed,
                               games=[game], init_from="runs/pre" if arm == "pretrained" else None)
    rep = report_runs([out], tmp_path / "rep", reps=50, improvement_reps=10)
    assert list(rep["methods"]) == ["pretrained", "scratch"]
    want = _expected({s: {g: cells[("scratch", s, g)] for g in ("breakout", "freeway")}
                      for s in (0, 1)}, ("breakout", "freeway"))
    np.testing.assert_allclose(rep["methods"]["scratch"]["scores"], want)
    labelled = report_runs([out], tmp_path / "lab", {out: "A"}, reps=50, improvement_reps=10)
    assert list(labelled["methods"]) == ["A pretrained", "A scratch"]
    import shutil

    shutil.rmtree(out / "scratch" / "freeway" / "seed_1")
    with pytest.raises(UserError, match=r"different games \(.*scratch seed 1: breakout\)"):
        report_runs([out], tmp_path / "bad")
    shared = report_runs([out], tmp_path / "shared", common_games=True, reps=50,
                         improvement_reps=10)
    assert shared["games"] == ["breakout"] and shared["methods"]["scratch"]["seeds"] == [0, 1]


def test_learning_curves_use_the_steps_every_run_reached(tmp_path):
    rng = np.random.default_rng(3)
    a = write_eval_run(tmp_path / "a", evals={50: _returns(rng, 1), 100: _returns(rng, 1)})
    b = write_eval_run(tmp_path / "b", evals={50: _returns(rng, 1), 100: _returns(rng, 1)},
                       seed=1)
    c = write_eval_run(tmp_path / "c", evals={25: _returns(rng, 1), 100: _returns(rng, 1)},
                       seed=2)
    two = report_runs([a, b], tmp_path / "two", reps=50)["methods"]["scaled-ql"]["curve"]
    assert [p["step"] for p in two] == [50, 100]
    both = [_expected({0: json_returns(a, 50), 1: json_returns(b, 50)})]
    assert two[0]["iqm"] == pytest.approx(np.sort(both[0].ravel())[1:-1].mean())
    three = report_runs([a, b, c], tmp_path / "three", reps=50)["methods"]["scaled-ql"]
    assert [p["step"] for p in three["curve"]] == [100]


def json_returns(run, step: int) -> dict[str, list[float]]:
    report = json.loads((run / "eval" / f"step_{step:08d}.json").read_text())
    return {g: v["returns"] for g, v in report["games"].items()}


def test_cli_report_over_runs_flags_and_default_folder(tmp_path, capsys):
    rng = np.random.default_rng(4)
    runs = tmp_path / "runs"
    write_eval_run(runs / "a", _returns(rng, 1))
    write_eval_run(runs / "b", _returns(rng, 1, GAMES[:2]), seed=1)
    write_eval_run(runs / "late", evals={100: _returns(rng, 1)}, seed=2, steps=200)
    assert main(["report", f"{runs}/a", f"{runs}/b", "--reps", "50"]) == 2
    assert "different games" in capsys.readouterr().err
    assert main(["report", f"{runs}/a", f"{runs}/b", "--common-games", "--labels", "x", "x",
                 "--reps", "50", "--improvement-reps", "10"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("x: IQM ") and "2 seed(s) × 2 game(s)" in out
    text = (runs / "report" / "report.md").read_text()
    assert (f"Command: `scaledql report {runs}/a {runs}/b --out {runs}/report --labels x x "
            "--common-games --reps 50 --improvement-reps 10`") in text
    assert "Games: breakout, freeway." in text
    assert main(["report", f"{runs}/late", "--reps", "50"]) == 2
    assert "step 100 of 200 (unfinished)" in capsys.readouterr().err
    assert main(["report", f"{runs}/late", "--allow-unfinished", "--reps", "50"]) == 0
    assert "unfinished" in (runs / "late" / "report" / "report.md").read_text()


def test_stats_one_run_has_no_spread_and_pairs_are_complementary():
    from scaledql.stats import improvement_probabilities, interval_estimates

    one = interval_estimates({"m": np.array([[0.1, 0.5, 0.9]])}, reps=50)["m"]
    assert one["iqm_ci"] == [one["iqm"], one["iqm"]]
    rng = np.random.default_rng(5)
    x, y = rng.random((4, 3)), rng.random((3, 3))
    forward = improvement_probabilities({"x": x, "y": y}, reps=20)[("x", "y")]
    backward = improvement_probabilities({"y": y, "x": x}, reps=20)[("y", "x")]
    assert forward["p"] + backward["p"] == pytest.approx(1.0)
