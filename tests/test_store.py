"""The on-disk game store: layout, counts, atomic publication, append, bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from scaledql.data.store.dataset import open_dataset
from scaledql.data.store.writer import GameWriter
from scaledql.errors import UserError


def test_roundtrip_counts_shards_and_frames(tmp_path, write_game):
    # Episodes of 3, 4, 2 transitions (terminated, truncated, unfinished); shards of >= 4 steps;
    # frames count the zero sentinel frame of each shard.
    game_dir = write_game(tmp_path, "breakout", [(3, True, False), (4, False, True),
                                                 (2, False, False)], shard_steps=4)
    assert not list(tmp_path.glob(".*"))  # no temporary directory left behind
    m = json.loads((game_dir / "manifest.json").read_text())
    assert m["counts"] == {"transitions": 9, "frames": 2 + 4 + 5 + 3, "episodes": 2,
                           "terminated": 1, "truncated": 1, "unfinished": 1,
                           "partial_start": 0, "stored_episodes": 3}
    assert m["episode_returns"] == [1 + 2 + 3, 1 + 2 + 3 + 4]  # finished episodes only
    assert [s["transitions"] for s in m["shards"]] == [7, 2]  # an episode never spans shards

    ds = open_dataset(tmp_path)
    g = ds.game("breakout")
    assert ds.games == ["breakout"] and g.num_transitions == 9 and g.num_episodes == 2
    sh0 = g.shards[0]
    assert isinstance(sh0.frames, np.memmap)  # memory-mapped, not loaded
    # Frame 0 is the zero sentinel; then obs_0..obs_3 (labels 1..4), then obs_0..obs_4 (5..9).
    assert sh0.frames[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert sh0.ep_frame_start.tolist() == [1, 5] and sh0.ep_length.tolist() == [3, 4]
    assert sh0.ep_step_offset.tolist() == [0, 3] and sh0.ep_flags.tolist() == [1, 2]
    assert sh0.actions.tolist() == [0, 0, 1, 2, 0, 0, 1, 2, 0, 0]
    assert sh0.rewards.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 4, 0]
    assert sh0.returns_to_go.tolist() == [0, 6, 5, 3, 0, 10, 9, 7, 4, 0]
    assert g.shards[1].frames[:, 0, 0, 0].tolist() == [0, 10, 11, 12]

    info = ds.info()["games"]["breakout"]
    assert (info["transitions"], info["episodes"], info["episode_returns"]) == (9, 2, [6.0, 10.0])


def test_failed_write_publishes_nothing(tmp_path, frames_labelled):
    with pytest.raises(RuntimeError), GameWriter(
            tmp_path, suite="minatar", game="freeway", num_actions=3,
            frame_shape=(1, 2, 2), stack=1) as w:
        w.add_episode(frames_labelled(1, 3), np.zeros(2, int), np.zeros(2, np.float32),
                      True, False)
        raise RuntimeError("collector crashed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="no game stores"):
        open_dataset(tmp_path)


def test_interrupted_write_is_invisible_and_restart_is_clean(tmp_path, write_game,
                                                             frames_labelled):
    # A crash that killed the process leaves only the hidden partial directory.
    w = GameWriter(tmp_path, suite="minatar", game="asterix", num_actions=3,
                   frame_shape=(1, 2, 2), stack=1)
    w.add_episode(frames_labelled(1, 3), np.zeros(2, int), np.zeros(2, np.float32), True, False)
    w._shard.finish()  # data on disk, manifest never written
    os.close(w._lock_fd)  # the process died: its lock on the game went with it
    assert (tmp_path / ".asterix.partial").is_dir()
    with pytest.raises(UserError, match="no game stores"):
        open_dataset(tmp_path)
    write_game(tmp_path, "asterix", [(2, True, False)])  # a re-run starts over cleanly
    assert not (tmp_path / ".asterix.partial").exists()
    assert open_dataset(tmp_path).game("asterix").num_transitions == 2


def test_existing_store_refused_unless_overwrite(tmp_path, write_game):
    write_game(tmp_path, "seaquest", [(2, True, False)])
    with pytest.raises(UserError, match="already holds a dataset"):
        write_game(tmp_path, "seaquest", [(5, True, False)])
    assert open_dataset(tmp_path).game("seaquest").num_transitions == 2
    write_game(tmp_path, "seaquest", [(5, True, False)], overwrite=True)
    assert open_dataset(tmp_path).game("seaquest").num_transitions == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seaquest"]


def test_append_grows_a_store_by_shards(tmp_path, write_game):
    write_game(tmp_path, "breakout", [(2, True, False)])
    write_game(tmp_path, "breakout", [(3, True, False), (1, False, False)], append=True)
    g = open_dataset(tmp_path).game("breakout")
    assert [s["name"] for s in g.manifest["shards"]] == ["shard_00000", "shard_00001"]
    assert g.num_transitions == 6 and g.episode_returns.tolist() == [3.0, 6.0]
    assert g.manifest["counts"]["unfinished"] == 1
    with pytest.raises(UserError, match="stack"):
        write_game(tmp_path, "breakout", [(1, True, False)], stack=4, append=True)


@pytest.mark.parametrize(("frame_shape", "dtype", "actions", "rewards", "match"), [
    ((1, 2, 2), np.float32, [0, 1], [0, 0], "dtype float32"),
    ((1, 3, 3), np.uint8, [0, 1], [0, 0], "shape"),
    ((1, 2, 2), np.uint8, [0, 1, 2], [0, 0], "need 2 actions"),
    ((1, 2, 2), np.uint8, [0, 3], [0, 0], "action 3 out of range"),
    ((1, 2, 2), np.uint8, [0, -1], [0, 0], "action -1 out of range"),
    ((1, 2, 2), np.uint8, [0, 1], [0, np.nan], "NaN"),
])
def test_bad_episodes_rejected_and_nothing_published(tmp_path, frames_labelled, frame_shape,
                                                     dtype, actions, rewards, match):
    frames = frames_labelled(1, 3, frame_shape).astype(dtype)
    with pytest.raises(UserError, match=match), GameWriter(
            tmp_path, suite="minatar", game="breakout", num_actions=3,
            frame_shape=(1, 2, 2), stack=1) as w:
        w.add_episode(frames, np.array(actions), np.array(rewards, np.float32), True, False)
    assert list(tmp_path.iterdir()) == []


def test_open_reports_missing_and_corrupt_files(tmp_path, write_game):
    with pytest.raises(UserError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")
    game_dir = write_game(tmp_path, "breakout", [(3, True, False)])
    with pytest.raises(UserError, match="no complete game store for pong"):
        open_dataset(tmp_path, ["pong"])
    frames = game_dir / "shard_00000" / "frames.npy"
    frames.write_bytes(frames.read_bytes()[:-4])  # truncated copy
    with pytest.raises(UserError, match=r"frames\.npy"):
        open_dataset(tmp_path)
    (game_dir / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="unreadable manifest"):
        open_dataset(tmp_path)
