"""Readings of a method's runs beyond the final score (area under the learning curve, a score at
one step) and verdicts that must also hold under a bootstrap over evaluation episodes."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_eval_run
from scaledql.errors import UserError
from scaledql.experiments.claims import episode_delta, judge
from scaledql.experiments.method_scores import MethodScores, runs_scores
from scaledql.reports.runs import read_run
from scaledql.suites.scores import normalize


def test_area_under_the_curve_is_the_mean_score_over_the_steps(tmp_path):
    # breakout, three evaluations at steps 0, 10, 30 with mean returns 0, 2, 2
    run = write_eval_run(tmp_path / "r" / "seed_0", evals={
        0: {"breakout": [0.0, 0.0]}, 10: {"breakout": [1.0, 3.0]}, 30: {"breakout": [2.0, 2.0]}},
        steps=30)
    s = [normalize("minatar", "breakout", x) for x in (0.0, 2.0, 2.0)]
    want = ((s[0] + s[1]) / 2 * 10 + (s[1] + s[2]) / 2 * 20) / 30
    assert read_run(run).area_under_curve()["breakout"] == pytest.approx(want)
    scores = runs_scores("m", [run], "minatar", reading="auc")
    assert scores.matrix[0, 0] == pytest.approx(want) and scores.episodes is None
    final = runs_scores("m", [run], "minatar")
    assert final.matrix[0, 0] == pytest.approx(s[2])
    assert final.episodes[0]["breakout"].tolist() == pytest.approx(
        [normalize("minatar", "breakout", 2.0)] * 2)
    early = runs_scores("m", [run], "minatar", step=10)
    assert sorted(early.episodes[0]["breakout"].tolist()) == pytest.approx(
        [normalize("minatar", "breakout", x) for x in (1.0, 3.0)])


def _scores(name, per_run_episodes):
    """A method with one game whose runs' evaluation episodes are given."""
    eps = [{"g": np.asarray(e, float)} for e in per_run_episodes]
    matrix = np.array([[e["g"].mean()] for e in eps])
    return MethodScores(name, ["g"], matrix, runs=[f"r{i}" for i in range(len(eps))],
                        episodes=eps)


def test_a_gap_inside_the_episodes_noise_is_unclear():
    rng = np.random.default_rng(0)
    # Four runs a side, every run of a above every run of b (P's CI above 0.5 over runs), but
    # each run's 5 episodes spread widely: the gap is within the evaluations' own noise.
    a = _scores("a", [rng.normal(m, 3.0, 5) for m in (1.30, 1.31, 1.32, 1.33)])
    b = _scores("b", [rng.normal(m, 3.0, 5) for m in (1.0, 1.01, 1.02, 1.03)])
    a.matrix[:, 0] = [1.30, 1.31, 1.32, 1.33]
    b.matrix[:, 0] = [1.00, 1.01, 1.02, 1.03]
    claim = {"id": "c", "test": "above", "pairs": [["a", "b"]]}
    runs_only = judge(claim, {"a": a, "b": b})["pairs"][0]
    assert runs_only["verdict"] == "held" and runs_only["episode_delta"] is None
    both = judge({**claim, "episodes": True}, {"a": a, "b": b})["pairs"][0]
    _, low, high = both["episode_delta"]
    assert low < 0 < high and both["verdict"] == "unclear"
    assert "over episodes" in both["note"]
    # tight episodes: the same gap holds both ways
    a2 = _scores("a", [np.full(50, m) + rng.normal(0, 0.01, 50) for m in (1.30, 1.31, 1.32, 1.33)])
    b2 = _scores("b", [np.full(50, m) + rng.normal(0, 0.01, 50) for m in (1.0, 1.01, 1.02, 1.03)])
    row = judge({**claim, "episodes": True}, {"a": a2, "b": b2})["pairs"][0]
    assert row["verdict"] == "held" and row["episode_delta"][1] > 0
    assert row["episode_delta"][0] == pytest.approx(0.3, abs=0.01)


def test_datasets_and_auc_readings_have_no_episode_bootstrap():
    a = _scores("a", [[1.0, 2.0], [1.5, 2.5]])
    data = MethodScores("d", ["g"], np.array([[0.5]]))
    assert episode_delta(a, data) is None


def _ft_run(root, arm, game, seed, evals):
    """One fine-tuning run (one game) of a C5-like layout: ARM/GAME/seed_S."""
    return write_eval_run(root / arm / game / f"seed_{seed}", seed=seed, steps=max(evals),
                          evals={s: {game: list(r)} for s, r in evals.items()})


def test_runs_of_one_game_each_pool_by_seed_and_a_claim_waits_for_its_games(tmp_path):
    """C5's layout: one run per game and seed. While one game's runs are still landing, a
    verdict on the others alone would read as the claim's; the claim names its games."""
    curve = {0: [0.0], 10: [1.0], 20: [2.0]}
    low = {0: [0.0], 10: [0.0], 20: [0.0]}
    for seed in (0, 1, 2):
        _ft_run(tmp_path, "a", "breakout", seed, {s: [r[0] + seed * 0.1] for s, r in curve.items()})
        _ft_run(tmp_path, "b", "breakout", seed, low)
    _ft_run(tmp_path, "a", "asterix", 0, curve)  # asterix: seed 0 only so far
    _ft_run(tmp_path, "b", "asterix", 0, low)
    a = runs_scores("a", sorted((tmp_path / "a").glob("*/seed_*")), "minatar")
    b = runs_scores("b", sorted((tmp_path / "b").glob("*/seed_*")), "minatar")
    assert a.games == ["breakout"] and a.seeds == [0, 1, 2]  # asterix lacks seeds 1, 2
    claim = {"id": "c", "test": "above", "pairs": [["a", "b"]]}
    assert judge(claim, {"a": a, "b": b})["verdict"] == "held"
    waits = judge({**claim, "games": ["asterix", "breakout"]}, {"a": a, "b": b})
    row = waits["pairs"][0]
    assert waits["verdict"] == "incomplete (0 of 1 pairs judged)" and row["verdict"] == "partial"
    assert row["note"].startswith("on breakout only, as it would read now: held; asterix")
    for seed in (1, 2):  # asterix lands: judged on both games
        _ft_run(tmp_path, "a", "asterix", seed, curve)
        _ft_run(tmp_path, "b", "asterix", seed, low)
    a = runs_scores("a", sorted((tmp_path / "a").glob("*/seed_*")), "minatar")
    b = runs_scores("b", sorted((tmp_path / "b").glob("*/seed_*")), "minatar")
    done = judge({**claim, "games": ["asterix", "breakout"]}, {"a": a, "b": b})
    assert done["verdict"] == "held" and done["pairs"][0]["games"] == ["asterix", "breakout"]


def test_an_area_needs_the_same_steps_and_two_evaluations(tmp_path):
    full = {0: [0.0], 10: [2.0], 20: [2.0]}
    one = _ft_run(tmp_path, "a", "breakout", 0, full)
    gap = _ft_run(tmp_path, "a", "breakout", 1, {0: [0.0], 20: [2.0]})  # step 10 never logged
    with pytest.raises(UserError, match=r"same steps.*3 steps .*2 steps"):
        runs_scores("a", [one, gap], "minatar", reading="auc")
    # a run with a single evaluation has no area: left out, not a crash
    single = _ft_run(tmp_path, "s", "breakout", 0, {20: [2.0]})
    with pytest.raises(UserError, match="none of its runs has finished"):
        runs_scores("s", [single], "minatar", reading="auc")
    assert runs_scores("a", [one, single], "minatar", reading="auc").seeds == [0]
    # two methods whose curves span other steps are not compared as if they did not
    late = _ft_run(tmp_path, "b", "breakout", 0, {10: [0.0], 20: [0.0]})
    a = runs_scores("a", [one], "minatar", reading="auc")
    b = runs_scores("b", [late], "minatar", reading="auc")
    row = judge({"id": "c", "pairs": [["a", "b"]]}, {"a": a, "b": b})["pairs"][0]
    assert row["verdict"] == "unclear" and "areas over other steps" in row["note"]


def test_each_runs_curve_is_drawn_once_whatever_its_readings(tmp_path):
    from scaledql.experiments.curves import curves_and_warnings

    run = _ft_run(tmp_path, "a", "breakout", 0, {0: [0.0], 10: [2.0], 20: [2.0]})
    readings = {"final": runs_scores("final", [run], "minatar"),
                "early": runs_scores("early", [run], "minatar", step=10),
                "area": runs_scores("area", [run], "minatar", reading="auc")}
    assert list(curves_and_warnings(readings)) == ["final"]
