"""Evaluation: episode quotas, seeding, normalization and the rliable aggregates by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from scaledql.cli import main
from scaledql.errors import UserError
from scaledql.evaluate import EvalConfig, EvalReport, play
from scaledql.policies import RandomPolicy
from scaledql.stats import aggregate
from scaledql.suites.scores import ATARI_SCORES, normalize


def test_normalization_by_hand():
    assert normalize("atari", "Pong", -20.7) == pytest.approx(0.0)
    assert normalize("atari", "Pong", 14.6) == pytest.approx(1.0)
    assert normalize("atari", "Breakout", 16.1) == pytest.approx((16.1 - 1.7) / (30.5 - 1.7))
    assert set(ATARI_SCORES) >= {"Carnival", "Pooyan", "Alien", "Zaxxon"}
    with pytest.raises(UserError, match="no reference scores"):
        normalize("atari", "Adventure", 1.0)


def test_every_paper_game_has_reference_scores():
    from scaledql.suites.atari import HELD_OUT_5, TRAIN_40

    assert all(g in ATARI_SCORES for g in TRAIN_40 + HELD_OUT_5)
    assert all(random < human for random, human in ATARI_SCORES.values())


def test_aggregate_point_estimates_by_hand():
    # 2 runs × 4 games: IQM keeps the middle 50% of all 8 scores
    scores = np.array([[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 100.0]])
    agg = aggregate(scores, reps=200)
    assert agg["iqm"] == pytest.approx(np.mean([2.0, 3.0, 4.0, 5.0]))
    assert agg["iqm"] == pytest.approx(stats.trim_mean(scores.ravel(), 0.25))
    assert agg["mean"] == pytest.approx(np.mean(scores.mean(0)))
    # rliable's median is the median of per-game means: means are 2, 3, 4, 51.5 → 3.5
    assert agg["median"] == pytest.approx(3.5)
    for k in ("iqm", "median", "mean"):
        lo, hi = agg[f"{k}_ci"]
        assert lo <= agg[k] <= hi


def test_aggregate_ci_is_seeded_and_shrinks_with_more_runs():
    rng = np.random.default_rng(0)
    few = rng.normal(1.0, 0.5, size=(5, 6))
    many = rng.normal(1.0, 0.5, size=(200, 6))
    a, b = aggregate(few, reps=300, seed=1), aggregate(few, reps=300, seed=1)
    assert a == b
    width = lambda agg: agg["iqm_ci"][1] - agg["iqm_ci"][0]  # noqa: E731
    assert width(aggregate(many, reps=300)) < width(a)


def test_play_returns_exactly_the_requested_episodes_and_is_seeded():
    policy = RandomPolicy(["breakout"], [3], seed=0)
    cfg = EvalConfig(episodes=7, seed=5, num_envs=3, progress=False)
    first, counts = play("minatar", "breakout", policy, cfg)
    assert first.shape == (7,)
    assert counts.shape == (3,) and counts.min() > 0  # a random policy plays every action
    again, counts_again = play("minatar", "breakout", RandomPolicy(["breakout"], [3], seed=0), cfg)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(counts, counts_again)


def test_eval_config_rejects_bad_values():
    with pytest.raises(UserError, match="--episodes must be positive"):
        EvalConfig(episodes=0)
    with pytest.raises(UserError, match="epsilon"):
        EvalConfig(epsilon=2.0)


def test_report_matrix_shape():
    report = EvalReport("atari", {"Pong": [-20.7, 14.6], "Breakout": [1.7, 30.5]}, 0, 0.001)
    np.testing.assert_allclose(report.normalized_matrix(), [[0.0, 0.0], [1.0, 1.0]])


def test_cli_evaluate_random_json(capsys, tmp_path):
    code = main(["evaluate", "--suite", "minatar", "--games", "breakout,freeway",
                 "--policy", "random", "--episodes", "3", "--json", "--no-progress",
                 "--out", str(tmp_path)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["games"]) == {"breakout", "freeway"}
    g = out["games"]["breakout"]
    assert len(g["returns"]) == 3 and g["mean"] == pytest.approx(np.mean(g["returns"]))
    assert set(out["aggregate"]) >= {"iqm", "iqm_ci", "median", "mean"}
    assert (tmp_path / "eval.json").exists()
    assert (tmp_path / "performance_profile.png").stat().st_size > 1000


@pytest.mark.parametrize("argv,message", [
    (["evaluate", "--suite", "nes", "--policy", "random"], "unknown suite"),
    (["evaluate", "--suite", "minatar", "--games", "pong", "--policy", "random"], "unknown minatar game"),
    (["evaluate", "--suite", "atari", "--games", "Pong", "--mode", "9", "--policy", "random"], "no mode 9"),
    (["evaluate", "--suite", "atari", "--games", "Pong", "--difficulty", "9", "--policy", "random"], "no difficulty 9"),
    (["evaluate", "--policy", "random", "--episodes", "-1"], "--episodes must be positive"),
    (["evaluate", "--checkpoint", "/nonexistent/ckpt.pt"], "does not exist"),
])
def test_cli_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_not_a_checkpoint(capsys, tmp_path):
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"not a checkpoint")
    assert main(["evaluate", "--checkpoint", str(bogus)]) == 2
    assert "not a scaledql checkpoint" in capsys.readouterr().err


def test_cli_wrong_flag_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--policy", "random", "--bogus"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_cli_suites_json(capsys):
    assert main(["suites", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["minatar"]["games"]["seaquest"] == {
        "num_actions": 6, "obs_shape": [10, 10, 10], "frame_shape": [10, 10, 10], "stack": 1}
    assert out["atari"]["games"]["Pong"]["obs_shape"] == [4, 84, 84]
