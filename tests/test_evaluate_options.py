"""``evaluate --checkpoint`` plays the game the run learned: its suite and game options, unless
a flag overrides one; a contradicting ``--suite`` is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

import scaledql.evaluate
from scaledql.agents.base import Problem
from scaledql.agents.dqn import DQN
from scaledql.checkpoint import learner_payload, save_checkpoint
from scaledql.cli import main
from scaledql.evaluate import EvalReport
from scaledql.suites import EnvOptions


def checkpoint(path: Path, suite: str, game: str, actions: int, obs: tuple[int, int, int],
               frame_channels: int, env_options: dict) -> Path:
    learner = DQN(DQN.tiny_config(), Problem(obs, (actions,), (game,), frame_channels), "cpu")
    save_checkpoint(learner_payload(learner, suite, env_options), path)
    return path


@pytest.fixture
def played(monkeypatch) -> list[EnvOptions]:
    """The game options every evaluation was played with (the real evaluation runs on)."""
    seen: list[EnvOptions] = []
    real = scaledql.evaluate.evaluate

    def spy(suite, games, policy, cfg, desc="evaluate"):
        seen.append(cfg.options)
        return real(suite, games, policy, cfg, desc)

    monkeypatch.setattr(scaledql.evaluate, "evaluate", spy)
    return seen


def test_minatar_run_options_are_played_unless_overridden(tmp_path, played, capsys):
    ckpt = checkpoint(tmp_path / "run.pt", "minatar", "breakout", 3, (10, 10, 10), 10,
                      {"sticky": 0.3, "max_episode_steps": 7})
    base = ["evaluate", "--checkpoint", str(ckpt), "--episodes", "2"]
    assert main([*base, "--quiet"]) == 0
    assert played[-1] == EnvOptions(sticky=0.3, max_episode_steps=7)
    assert capsys.readouterr().err == ""
    assert main([*base, "--sticky", "0", "--suite", "minatar"]) == 0  # the run's suite: fine
    assert played[-1] == EnvOptions(sticky=0.0, max_episode_steps=7)
    assert "[evaluate] game options: sticky=0.0, max_episode_steps=7" in capsys.readouterr().err


def test_atari_run_mode_difficulty_and_action_set(tmp_path, played, monkeypatch):
    """An Atari run trained on Pong mode 1, difficulty 1, all 18 actions: evaluation plays
    that variant (its 18-action head is only playable with the full action set)."""
    ckpt = checkpoint(tmp_path / "pong.pt", "atari", "Pong", 18, (4, 84, 84), 1,
                      {"mode": 1, "difficulty": 1, "full_action_space": True})

    def fake(suite, games, policy, cfg, desc="evaluate"):  # Pong episodes take minutes
        played.append(cfg.options)
        return EvalReport(suite, {g: [0.0] for g in games}, cfg.seed, cfg.epsilon)

    monkeypatch.setattr(scaledql.evaluate, "evaluate", fake)
    assert main(["evaluate", "--checkpoint", str(ckpt), "--quiet"]) == 0
    assert played[-1] == EnvOptions(mode=1, difficulty=1, full_action_space=True)
    assert main(["evaluate", "--checkpoint", str(ckpt), "--quiet", "--mode", "0"]) == 0
    assert played[-1] == EnvOptions(mode=0, difficulty=1, full_action_space=True)


def test_contradicting_suite_or_action_set_is_one_line(tmp_path, played, capsys):
    ckpt = checkpoint(tmp_path / "run.pt", "minatar", "breakout", 3, (10, 10, 10), 10, {})
    assert main(["evaluate", "--checkpoint", str(ckpt), "--suite", "atari"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --suite atari: {ckpt} plays minatar games (leave --suite out to "
                   "use the run's)\n")
    pong = checkpoint(tmp_path / "pong.pt", "atari", "Pong", 18, (4, 84, 84), 1,
                      {"full_action_space": True})
    assert main(["evaluate", "--checkpoint", str(pong), "--no-full-action-space"]) == 2
    assert "checkpoint head has 18 actions" in capsys.readouterr().err
    assert played == []


def test_damaged_env_options_are_one_line(tmp_path, capsys):
    ckpt = checkpoint(tmp_path / "run.pt", "minatar", "breakout", 3, (10, 10, 10), 10,
                      {"sticky": "lots"})
    assert main(["evaluate", "--checkpoint", str(ckpt)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "sticky" in err and err.count("\n") == 1
