"""Game variants for online fine-tuning (MinAtar's reversed controls) and the transfer of a
whole pretrained network (encoder, projection and the game's head)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from scaledql.errors import UserError
from scaledql.suites import EnvOptions, get_suite

# MinAtar's full action set: 0 noop, 1 left, 2 up, 3 right, 4 down, 5 fire.
OPPOSITE = {0: 0, 1: 3, 2: 4, 3: 1, 4: 2, 5: 5}


@pytest.mark.parametrize("game", ["asterix", "breakout", "freeway", "seaquest", "space_invaders"])
def test_reversed_controls_send_each_move_to_its_opposite(game):
    from scaledql.suites.minatar import ReversedControls

    env = get_suite("minatar").make_env(game, EnvOptions(reversed_controls=True))
    wrapper = env
    while not isinstance(wrapper, ReversedControls):
        wrapper = wrapper.env
    action_set = list(wrapper.env.unwrapped.action_set)
    for i, full in enumerate(action_set):
        assert action_set[wrapper.action(i)] == OPPOSITE[full]
    moves = [i for i, a in enumerate(action_set) if a in (1, 2, 3, 4)]
    assert moves and all(wrapper.action(i) != i for i in moves)  # every game has a move to flip


def test_reversed_controls_play_the_mirror_of_the_game():
    """breakout: pressing right with reversed controls moves the paddle as left does without."""
    suite = get_suite("minatar")

    def paddle_after(options, action):
        env = suite.make_env("breakout", options)
        env.reset(seed=3)
        for _ in range(3):
            obs, *_ = env.step(action)
        return np.argwhere(obs[0, -1] > 0)[:, 0].tolist()  # channel 0: the paddle, bottom row

    plain, reversed_ = EnvOptions(sticky=0.0), EnvOptions(sticky=0.0, reversed_controls=True)
    assert paddle_after(reversed_, 2) == paddle_after(plain, 1)  # "right" reversed = left
    assert paddle_after(reversed_, 1) == paddle_after(plain, 2)
    assert paddle_after(plain, 1) != paddle_after(plain, 2)


def test_reversed_controls_are_minatar_only_and_left_out_of_default_records():
    with pytest.raises(UserError, match="--reversed-controls applies to the minatar suite only"):
        get_suite("atari").spec("Pong", EnvOptions(reversed_controls=True))
    # a record made before the option existed (committed action logs, archived runs) compares
    # equal to today's default game
    assert "reversed_controls" not in EnvOptions().record()
    assert EnvOptions().record() == {k: v for k, v in dataclasses.asdict(EnvOptions()).items()
                                     if k != "reversed_controls"}
    assert EnvOptions(reversed_controls=True).record()["reversed_controls"] is True


def test_whole_network_transfer_keeps_the_games_head(tmp_path):
    """--init-parts network: torso and the head of a game the source played are copied; a head
    of a game it never played starts fresh."""
    import torch

    from scaledql.agents.base import Problem
    from scaledql.agents.scaled_ql import ScaledQL
    from scaledql.checkpoint import learner_payload, save_checkpoint
    from scaledql.suites.base import GameSpec
    from scaledql.transfer import transfer_torso

    def spec(game, actions):
        return GameSpec("minatar", game, actions, (10, 10, 10), 1)

    cfg = ScaledQL.tiny_config()
    torch.manual_seed(0)
    source = ScaledQL(cfg, Problem.of([spec("asterix", 5), spec("freeway", 3)], where="s"))
    save_checkpoint({**learner_payload(source, "minatar", {}), "seed": 0}, tmp_path / "src.pt")
    torch.manual_seed(1)
    target = ScaledQL(cfg, Problem.of([spec("freeway", 3), spec("breakout", 3)], where="t"))
    fresh_breakout = target.online.heads.heads[1].weight.detach().clone()
    report = transfer_torso(target, tmp_path / "src.pt", "network", verbose=False)
    assert "heads.freeway" in report.loaded
    assert torch.equal(target.online.heads.heads[0].weight, source.online.heads.heads[1].weight)
    assert torch.equal(target.online.heads.heads[1].weight, fresh_breakout)
    for name, value in source.online.torso.state_dict().items():
        assert torch.equal(target.online.torso.state_dict()[name], value)
    # the target network starts equal to the online one
    assert torch.equal(target.target.heads.heads[0].weight, target.online.heads.heads[0].weight)
    torch.manual_seed(2)
    unrelated = ScaledQL(cfg, Problem.of([spec("breakout", 3)], where="u"))
    with pytest.raises(UserError, match="no head to keep"):
        transfer_torso(unrelated, tmp_path / "src.pt", "network", verbose=False)
