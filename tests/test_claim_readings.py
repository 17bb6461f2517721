"""Readings of a method's runs beyond the final score (area under the learning curve, a score at
one step) and verdicts that must also hold under a bootstrap over evaluation episodes."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_eval_run
from scaledql.experiments.claims import MethodScores, episode_delta, judge, runs_scores
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
