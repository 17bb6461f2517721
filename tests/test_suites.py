"""The game suites: Dopamine preprocessing, sticky actions, modes, action sets, caps, resets."""

from __future__ import annotations

import cv2
import gymnasium as gym
import numpy as np
import pytest

from scaledql.errors import UserError
from scaledql.suites import EnvOptions, get_suite

NO_STICKY = EnvOptions(sticky=0.0)


def raw_pong(**kwargs) -> gym.Env:
    import ale_py

    gym.register_envs(ale_py)
    return gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0,
                    obs_type="grayscale", **kwargs)


def test_atari_spec_and_shapes():
    suite = get_suite("atari")
    spec = suite.spec("Pong")
    assert (spec.num_actions, spec.frame_shape, spec.stack, spec.obs_shape) == (
        6, (1, 84, 84), 4, (4, 84, 84))
    env = suite.make_env("Pong")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.observation_space.shape == (4, 84, 84)


def test_atari_reset_zero_pads_the_stack_and_step_shifts_it():
    env = get_suite("atari").make_env("Pong", NO_STICKY)
    obs, _ = env.reset(seed=0)
    assert not obs[:3].any(), "frames before the first must be zero (Dopamine's initial state)"
    assert obs[3].any()
    nxt, *_ = env.step(0)
    np.testing.assert_array_equal(nxt[:2], 0)
    np.testing.assert_array_equal(nxt[2], obs[3])  # the stack shifts by one, oldest first
    # a new episode starts from zeros again
    for _ in range(5):
        env.step(1)
    again, _ = env.reset(seed=1)
    assert not again[:3].any()


def test_atari_max_pool_over_last_two_frames_and_area_resize():
    """Each agent step = 4 emulator frames; the frame is max(last two) resized with INTER_AREA."""
    env = get_suite("atari").make_env("Pong", NO_STICKY)
    raw = raw_pong()
    env.reset(seed=3)
    raw.reset(seed=3)
    for step in range(40):
        action = [0, 2, 3][step % 3]
        obs, reward, *_ = env.step(action)
        screens, raw_reward = [], 0.0
        for _ in range(4):
            screen, r, *_ = raw.step(action)
            raw_reward += r
            screens.append(screen)
        pooled = np.maximum(screens[-2], screens[-1])
        expected = cv2.resize(pooled, (84, 84), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(obs[-1], expected)
        assert reward == raw_reward  # raw score, never clipped by the game


def test_atari_sticky_actions_repeat_the_previous_action():
    """With p = 1 every action repeats the first (NOOP): inputs have no effect at all."""
    suite = get_suite("atari")
    always = EnvOptions(sticky=1.0)
    a, b = suite.make_env("Breakout", always), suite.make_env("Breakout", always)
    a.reset(seed=0)
    b.reset(seed=0)
    for step in range(60):
        oa, *_ = a.step(0)
        ob, *_ = b.step([1, 2, 3][step % 3])
        np.testing.assert_array_equal(oa, ob)
    # without stickiness the same inputs do move the paddle
    c, d = suite.make_env("Breakout", NO_STICKY), suite.make_env("Breakout", NO_STICKY)
    c.reset(seed=0)
    d.reset(seed=0)
    differs = False
    for step in range(60):
        oc, *_ = c.step(0)
        od, *_ = d.step([1, 2, 3][step % 3])
        differs |= not np.array_equal(oc, od)
    assert differs


def test_atari_default_sticky_is_dopamines():
    env = get_suite("atari").make_env("Pong")
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)


def test_atari_action_sets():
    suite = get_suite("atari")
    assert suite.make_env("Pong").action_space.n == 6
    assert suite.make_env("Pong", EnvOptions(full_action_space=True)).action_space.n == 18
    assert suite.spec("Breakout").num_actions == 4
    assert suite.spec("Breakout", EnvOptions(full_action_space=True)).num_actions == 18


def test_atari_modes_and_difficulties():
    suite = get_suite("atari")
    modes, difficulties = suite.available_modes("Pong")
    assert modes == [0, 1] and difficulties == [0, 1, 2, 3]
    env = suite.make_env("Pong", EnvOptions(mode=1, difficulty=1, sticky=0.0))
    assert (env.unwrapped._game_mode, env.unwrapped._game_difficulty) == (1, 1)
    # difficulty changes the game itself (Pong's "A" switch halves the paddle)
    base = suite.make_env("Pong", NO_STICKY)
    base.reset(seed=0)
    env.reset(seed=0)
    frames_differ = any(not np.array_equal(base.step(2)[0], env.step(2)[0]) for _ in range(80))
    assert frames_differ
    with pytest.raises(UserError, match="no mode 7"):
        suite.make_env("Pong", EnvOptions(mode=7))
    with pytest.raises(UserError, match="no difficulty 9"):
        suite.spec("Pong", EnvOptions(difficulty=9))


def test_atari_vector_env_matches_single_env_conventions():
    suite = get_suite("atari")
    envs = suite.make_vector_env("Pong", 2)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert not obs[:, :3].any() and obs[:, 3].any()
    envs.close()
    # modes force the gymnasium vector env, same observation layout
    envs = suite.make_vector_env("Pong", 2, EnvOptions(mode=1))
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84)
    envs.close()


@pytest.mark.parametrize("suite_name,game", [("atari", "Pong"), ("minatar", "breakout")])
def test_episode_cap_truncates(suite_name, game):
    env = get_suite(suite_name).make_env(game, EnvOptions(max_episode_steps=5))
    env.reset(seed=0)
    for t in range(5):
        _, _, terminated, truncated, _ = env.step(0)
        assert not terminated
        assert truncated == (t == 4)


def test_atari_game_lists():
    suite = get_suite("atari")
    assert len(suite.resolve_games("train40")) == 40
    assert suite.resolve_games("heldout5") == ["Alien", "MsPacman", "Pong", "SpaceInvaders",
                                               "StarGunner"]
    assert suite.resolve_games("pong, space_invaders,Breakout") == ["Pong", "SpaceInvaders",
                                                                     "Breakout"]
    assert not set(suite.resolve_games("train40")) & set(suite.resolve_games("heldout5"))
    with pytest.raises(UserError, match="unknown atari game 'Pongg'"):
        suite.resolve_games("Pongg")


def test_minatar_shared_shape_and_channel_padding():
    suite = get_suite("minatar")
    assert suite.games() == ["asterix", "breakout", "freeway", "seaquest", "space_invaders"]
    widths = {"asterix": 4, "breakout": 4, "freeway": 7, "seaquest": 10, "space_invaders": 6}
    for game, width in widths.items():
        spec = suite.spec(game)
        assert spec.obs_shape == (10, 10, 10) and spec.stack == 1
        env = suite.make_env(game)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (10, 10, 10) and obs.dtype == np.uint8
        assert set(np.unique(obs)) == {0, 255}  # set cells are 255, like a bright pixel
        raw = np.moveaxis(env.unwrapped.game.state(), -1, 0)
        np.testing.assert_array_equal(obs[:width] == 255, raw)
        for _ in range(20):
            obs, *_ = env.step(env.action_space.sample())
            assert not obs[width:].any(), f"{game}: padding channels must stay zero"


def test_minatar_sticky_default_and_override():
    suite = get_suite("minatar")
    assert suite.make_env("breakout").unwrapped.game.sticky_action_prob == pytest.approx(0.1)
    always = EnvOptions(sticky=1.0)
    a, b = suite.make_env("breakout", always), suite.make_env("breakout", always)
    a.reset(seed=0)
    b.reset(seed=0)
    for step in range(30):
        oa, *_ = a.step(0)
        ob, *_ = b.step([1, 2][step % 2])
        np.testing.assert_array_equal(oa, ob)


def test_minatar_rejects_atari_only_options():
    with pytest.raises(UserError, match="atari suite only"):
        get_suite("minatar").make_env("breakout", EnvOptions(mode=1))


def test_unknown_suite():
    with pytest.raises(UserError, match="unknown suite 'nes'"):
        get_suite("nes")


def test_default_game_lists():
    assert get_suite("atari").resolve_games(None) == get_suite("atari").resolve_games("train40")
    assert get_suite("minatar").resolve_games(None) == get_suite("minatar").games()


@pytest.mark.heavy
def test_static_action_counts_match_the_emulator_and_minatar():
    """The tables that spare `scaledql suites` loading 104 ROMs must say what the games say."""
    from scaledql.suites import action_counts, atari, minatar

    # Every ROM that ale-py ships is in the table (a new ale-py must fail here, not fall back
    # silently), and the table is read under the pinned version.
    assert atari._ale_version() == action_counts.ATARI_FOR_ALE
    assert set(atari._registry().values()) == set(action_counts.ATARI_MINIMAL_ACTIONS)
    for rom_id, count in action_counts.ATARI_MINIMAL_ACTIONS.items():
        assert len(atari._ale(rom_id).getMinimalActionSet()) == count, rom_id
    minatar._register_envs()
    for game, env_id in minatar._ENV_IDS.items():
        assert gym.make(env_id).action_space.n == action_counts.MINATAR_ACTIONS[game], game
        assert get_suite("minatar").make_env(game).action_space.n == get_suite(
            "minatar").spec(game).num_actions


def test_listing_suites_loads_no_rom_and_no_minatar():
    """`scaledql suites` answers from static data: it once loaded every ROM (12-15 s)."""
    import subprocess
    import sys

    code = ("import sys; from scaledql.cli import main; from scaledql.suites import atari; "
            "assert main(['suites']) == 0; "
            "assert atari._ale.cache_info().currsize == 0, 'a ROM was loaded'; "
            "assert 'minatar' not in sys.modules, 'minatar (and seaborn) imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "atari: 104 games" in done.stdout and "  Pong                 actions  6" in done.stdout


def test_an_atari_game_keeps_the_emulators_banner_off_stderr():
    """ale-py prints "A.L.E: Arcade Learning Environment ... [Powered by Stella]" for every new
    emulator at its default log level (it reached stderr from `scaledql play`)."""
    import subprocess
    import sys

    code = ("from scaledql.suites import get_suite; "
            "get_suite('atari').make_env('Pong').reset(seed=0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "A.L.E" not in done.stderr and "Stella" not in done.stderr, done.stderr


def test_minatar_plays_without_importing_its_display_libraries():
    """minatar imports pyplot and seaborn (~1 s) at the top of its modules for a window we never
    open: a process that plays a game imports neither, and both still work when asked for."""
    import subprocess
    import sys

    code = """
import sys
from scaledql.suites.minatar import MinAtarSuite
env = MinAtarSuite().make_env("breakout")
env.reset(seed=0)
print(sorted(m for m in ("seaborn", "matplotlib.pyplot", "scipy.stats") if m in sys.modules))
import minatar.gym, minatar.environment
frame = minatar.gym.BaseEnv("breakout", render_mode="rgb_array")
frame.reset(seed=0)
print(frame.render().shape, len(minatar.environment.sns.color_palette("cubehelix", 4)))
import seaborn, matplotlib.pyplot as plt
print(type(seaborn).__name__, callable(seaborn.color_palette), callable(plt.figure))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True).stdout.splitlines()
    assert out == ["[]", "(10, 10, 3) 4", "module True True"]
