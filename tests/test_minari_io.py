"""Minari import/export through the minari package, on local datasets the tests create."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest

from scaledql.data.minari_io import export_minari, import_minari
from scaledql.data.store import open_dataset
from scaledql.errors import UserError


@pytest.fixture(autouse=True)
def local_minari(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))


def make_minari(dataset_id, obs_space, episodes, num_actions=3):
    """episodes: list of (observations [T+1, ...], terminated)."""
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    buffers = []
    for i, (obs, terminated) in enumerate(episodes):
        t = len(obs) - 1
        buffers.append(EpisodeBuffer(
            id=i, observations=obs, actions=np.arange(t) % num_actions,
            rewards=[float(x) for x in range(1, t + 1)],
            terminations=[False] * (t - 1) + [terminated],
            truncations=[False] * (t - 1) + [not terminated]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(dataset_id, buffers,
                                           action_space=gym.spaces.Discrete(num_actions),
                                           observation_space=obs_space, jpeg_encoding=False)


def test_atari_store_round_trips_through_minari(tmp_path):
    from scaledql.data.store import GameWriter

    rng = np.random.default_rng(0)
    episodes = [(rng.integers(0, 256, (t + 1, 1, 84, 84), dtype=np.uint8), term, trunc)
                for t, term, trunc in ((4, True, False), (3, False, True), (2, False, False))]
    with GameWriter(tmp_path / "a", suite="atari", game="Pong", num_actions=6,
                    frame_shape=(1, 84, 84), stack=4) as w:
        for frames, term, trunc in episodes:
            t = len(frames) - 1
            w.add_episode(frames, np.arange(t) % 6, np.full(t, -1.0, np.float32), term, trunc)
    export_minari(tmp_path / "a", "Pong", "scaledql/pong-v0")
    import_minari("scaledql/pong-v0", tmp_path / "b", game="Pong")
    g = open_dataset(tmp_path / "b").game("Pong")
    assert (g.suite, g.frame_shape, g.stack, g.num_actions) == ("atari", (1, 84, 84), 4, 6)
    sh = g.shards[0]
    for e, (frames, term, _) in enumerate(episodes):
        s, t = sh.ep_frame_start[e], sh.ep_length[e]
        assert np.array_equal(sh.frames[s:s + t + 1], frames)  # lossless, final frame kept
        assert sh.actions[s:s + t].tolist() == (np.arange(t) % 6).tolist()
        assert bool(sh.ep_flags[e] & 1) == term
    # The unfinished episode leaves as truncated: Minari episodes always end.
    assert sh.ep_flags.tolist() == [1, 2, 2]
    assert g.manifest["provenance"]["source"] == "minari"


def test_minatar_grids_are_padded_to_ten_channels(tmp_path):
    rng = np.random.default_rng(1)
    grids = rng.integers(0, 2, (6, 10, 10, 4)).astype(bool)
    make_minari("minatar/breakout-v0", gym.spaces.Box(0, 1, (10, 10, 4), bool),
                [(grids, True)])
    import_minari(str(tmp_path / "minari" / "minatar" / "breakout-v0"), tmp_path / "d",
                  game="breakout")
    g = open_dataset(tmp_path / "d").game("breakout")
    assert (g.suite, g.frame_shape, g.stack) == ("minatar", (10, 10, 10), 1)
    frames = np.asarray(g.shards[0].frames[1:7])
    assert np.array_equal(frames[:, :4], np.moveaxis(grids, -1, 1).astype(np.uint8))
    assert not frames[:, 4:].any()
    assert g.episode_returns.tolist() == [1 + 2 + 3 + 4 + 5]


def test_stacked_atari_observations_keep_the_newest_frame(tmp_path):
    rng = np.random.default_rng(2)
    obs = rng.integers(0, 256, (4, 84, 84, 4), dtype=np.uint8)
    make_minari("atari/breakout-v0", gym.spaces.Box(0, 255, (84, 84, 4), np.uint8),
                [(obs, True)])
    import_minari("atari/breakout-v0", tmp_path / "d", game="Breakout")
    g = open_dataset(tmp_path / "d").game("Breakout")
    assert np.array_equal(g.shards[0].frames[1:5, 0], obs[..., -1])


def test_unsupported_or_missing_datasets_fail_cleanly(tmp_path):
    make_minari("toy/cartpole-v0", gym.spaces.Box(-1, 1, (4,), np.float32),
                [(np.zeros((3, 4), np.float32), True)])
    with pytest.raises(UserError, match=r"observation space .* is not supported"):
        import_minari("toy/cartpole-v0", tmp_path / "d", game="cartpole")
    with pytest.raises(UserError, match="cannot open Minari dataset 'nowhere/none-v0' locally"):
        import_minari("nowhere/none-v0", tmp_path / "d", game="x")
    assert not (tmp_path / "d").exists() or list((tmp_path / "d").iterdir()) == []
