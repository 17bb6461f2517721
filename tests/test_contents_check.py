"""What a store holds is checked before anything learns from it (``open_dataset(contents=True)``,
the full scan of the small arrays), and a refused input leaves no output folder behind."""

from __future__ import annotations

import numpy as np
import pytest

from scaledql.data.store import validate
from scaledql.data.store.dataset import open_dataset
from scaledql.data.store.writer import GameWriter
from scaledql.errors import UserError


def _store(root, lengths=(4, 3, 5, 2), game="breakout", actions=3, shard_steps=1_000_000):
    rng = np.random.default_rng(0)
    with GameWriter(root, suite="minatar", game=game, num_actions=actions,
                    frame_shape=(10, 10, 10), stack=1, shard_steps=shard_steps) as w:
        for i, t in enumerate(lengths):
            w.add_episode(np.zeros((t + 1, 10, 10, 10), np.uint8), rng.integers(0, actions, t),
                          rng.normal(size=t).astype(np.float32), i % 2 == 0, False)
    return root


def _poke(path, index, value):
    a = np.load(path)
    a[index] = value
    np.save(path, a)


def test_each_game_is_held_to_its_own_action_count(tmp_path):
    """breakout's 4 fits seaquest's 6 actions (the padded head): refused all the same."""
    _store(tmp_path, game="seaquest", actions=6)
    _store(tmp_path)
    open_dataset(tmp_path, contents=True)
    _poke(tmp_path / "breakout" / "shard_00000" / "actions.npy", 2, 4)
    open_dataset(tmp_path)  # the cheap checks do not read the arrays
    with pytest.raises(UserError, match=r"breakout/shard_00000/actions\.npy: action 4 at frame "
                                        r"2 is out of range \[0, 3\)"):
        open_dataset(tmp_path, contents=True)
    open_dataset(tmp_path, ["seaquest"], contents=True)  # only the games asked for


@pytest.mark.parametrize(("name", "index", "value", "expect"), [
    ("rewards", 3, np.nan, r"reward nan at frame 3 is not finite"),
    ("returns_to_go", 3, np.nan, r"returns_to_go\.npy: frame 3 holds nan"),
    ("returns_to_go", 7, 5.0, r"returns_to_go\.npy: frame 7 holds 5\.0"),
    ("ep_return", 1, 1e6, r"ep_return\.npy: episode 1 holds"),
    ("actions", 5, 2, r"frame 5 is a sentinel or final frame"),
])
def test_the_scan_names_the_first_bad_frame(tmp_path, name, index, value, expect):
    _store(tmp_path)
    _poke(tmp_path / "breakout" / "shard_00000" / f"{name}.npy", index, value)
    with pytest.raises(UserError, match=expect):
        open_dataset(tmp_path, contents=True)


def test_the_scan_in_pieces_finds_what_the_whole_does(tmp_path, monkeypatch):
    """Pieces of whole episodes bound its memory; a damage in any piece is found at its frame."""
    _store(tmp_path, lengths=[7, 1, 9, 4, 12, 3] * 5)
    monkeypatch.setattr(validate, "SCAN_FRAMES", 8)
    open_dataset(tmp_path, contents=True)
    _poke(tmp_path / "breakout" / "shard_00000" / "returns_to_go.npy", 150, 99.0)
    with pytest.raises(UserError, match=r"returns_to_go\.npy: frame 150 holds 99\.0"):
        open_dataset(tmp_path, contents=True)


def test_training_refuses_damaged_contents_before_its_run_folder_exists(tmp_path):
    from scaledql.training.config import RunConfig
    from scaledql.training.offline_loop import train

    _store(tmp_path / "d")
    _poke(tmp_path / "d" / "breakout" / "shard_00000" / "actions.npy", 1, 9)
    with pytest.raises(UserError, match="action 9 at frame 1"):
        train(RunConfig(data=str(tmp_path / "d"), out=str(tmp_path / "runs" / "r"), steps=1,
                        device="cpu"), progress=False)
    assert not (tmp_path / "runs").exists()


def test_a_lock_takes_back_the_folders_it_made_when_the_block_fails(tmp_path):
    from scaledql.atomic_files import exclusive_lock

    (tmp_path / "kept").mkdir()
    with pytest.raises(UserError), exclusive_lock(tmp_path / "kept" / "a" / "b"):
        raise UserError("refused")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert not any((tmp_path / "kept").iterdir())
    with pytest.raises(UserError), exclusive_lock(tmp_path / "kept" / "c"):
        (tmp_path / "kept" / "c" / "written").write_text("x")  # something was written: kept
        raise UserError("failed later")
    assert (tmp_path / "kept" / "c" / "written").exists()
    with exclusive_lock(tmp_path / "kept" / "d"):
        pass
    assert (tmp_path / "kept" / "d").is_dir()  # a success keeps its folder
