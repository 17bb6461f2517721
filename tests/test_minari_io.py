"""Minari import/export through the minari package, on local datasets the tests create."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest

from scaledql.data.importers.minari_io import export_minari, import_minari
from scaledql.data.store.dataset import open_dataset
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
    from scaledql.data.store.writer import GameWriter

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
    # The unfinished episode stays unfinished (neither flag on its last step).
    assert sh.ep_flags.tolist() == [1, 2, 0]
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
    # MinAtar's 0/1 cells become the store's (and the suite's) 0/255
    assert np.array_equal(frames[:, :4], 255 * np.moveaxis(grids, -1, 1).astype(np.uint8))
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


def _evil_env_spec(tmp_path, monkeypatch) -> tuple[str, object]:
    """An env_spec whose entry point, if anything ever called it, would leave a marker file."""
    marker = tmp_path / "entry_point_ran"
    (tmp_path / "evil_entry.py").write_text(
        "from pathlib import Path\n\n\ndef make(**kwargs):\n"
        f"    Path({str(marker)!r}).touch()\n    raise RuntimeError('entry point ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {"id": "MinAtar/Breakout-v1", "entry_point": "evil_entry:make",
            "reward_threshold": None, "nondeterministic": False, "max_episode_steps": None,
            "order_enforce": True, "disable_env_checker": False, "kwargs": {},
            "additional_wrappers": [], "vector_entry_point": None}
    return json.dumps(spec), marker


@pytest.mark.parametrize("drop", ["action_space", "observation_space", None])
def test_a_dataset_never_runs_the_entry_point_it_names(tmp_path, monkeypatch, drop):
    grids = np.random.default_rng(3).integers(0, 2, (4, 10, 10, 4)).astype(bool)
    make_minari("toy/evil-v0", gym.spaces.Box(0, 1, (10, 10, 4), bool), [(grids, True)])
    meta_file = tmp_path / "minari" / "toy" / "evil-v0" / "data" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["env_spec"], marker = _evil_env_spec(tmp_path, monkeypatch)
    if drop:
        del meta[drop]  # minari's reader would build the space with gym.make(env_spec)
    meta_file.write_text(json.dumps(meta))
    if drop:
        with pytest.raises(UserError, match=f"metadata has no {drop}"):
            import_minari("toy/evil-v0", tmp_path / "d")
        assert not (tmp_path / "d").exists()
    else:  # spaces present: the env_spec serves only to name the game
        import_minari("toy/evil-v0", tmp_path / "d")
        assert open_dataset(tmp_path / "d").games == ["breakout"]
    assert not marker.exists()


def test_minatar_cells_round_trip_and_keep_the_suites_scale(tmp_path):
    from scaledql.data.store.writer import GameWriter

    rng = np.random.default_rng(4)
    grids = 255 * rng.integers(0, 2, (6, 10, 10, 10), dtype=np.uint8)  # as the suite shows them
    with GameWriter(tmp_path / "a", suite="minatar", game="breakout", num_actions=3,
                    frame_shape=(10, 10, 10), stack=1) as w:
        w.add_episode(grids, np.arange(5) % 3, np.ones(5, np.float32), True, False)
    export_minari(tmp_path / "a", "breakout", "scaledql/breakout-v0")
    # Minari holds MinAtar's own 0/1 cells ...
    data = tmp_path / "minari" / "scaledql" / "breakout-v0" / "data"
    space = json.loads(json.loads((data / "metadata.json").read_text())["observation_space"])
    assert space["high"][0][0][0] == 1
    import h5py

    with h5py.File(data / "main_data.hdf5") as f:
        assert set(np.unique(f["episode_0/observations"][()]).tolist()) == {0, 1}
    # ... and import gives back the store's bytes.
    import_minari("scaledql/breakout-v0", tmp_path / "b", game="breakout")
    a = open_dataset(tmp_path / "a").game("breakout").shards[0]
    b = open_dataset(tmp_path / "b").game("breakout").shards[0]
    assert np.array_equal(np.asarray(a.frames), np.asarray(b.frames))


@pytest.mark.parametrize(("space", "values", "ok"), [
    (gym.spaces.Box(0, 1, (10, 10, 4), np.uint8), (0, 1), True),
    (gym.spaces.Box(0, 255, (10, 10, 4), np.uint8), (0, 255), True),
    (gym.spaces.Box(0, 1, (10, 10, 4), np.uint8), (0, 255), False),  # the old export's files
    (gym.spaces.Box(0, 255, (10, 10, 4), np.uint8), (0, 1), False),
    (gym.spaces.Box(0, 3, (10, 10, 4), np.uint8), (0, 3), False),
])
def test_minatar_grids_import_at_the_suites_scale_or_not_at_all(tmp_path, space, values, ok):
    rng = np.random.default_rng(5)
    grids = np.asarray(values, np.uint8)[rng.integers(0, 2, (4, 10, 10, 4))]
    make_minari("toy/grid-v0", space, [(grids, True)])
    if not ok:
        with pytest.raises(UserError, match="MinAtar grid"):
            import_minari("toy/grid-v0", tmp_path / "d", game="breakout")
        assert not (tmp_path / "d").exists()
        return
    import_minari("toy/grid-v0", tmp_path / "d", game="breakout")
    frames = np.asarray(open_dataset(tmp_path / "d").game("breakout").shards[0].frames[1:5])
    assert np.array_equal(frames[:, :4], 255 * (np.moveaxis(grids, -1, 1) != 0))


def test_game_names_are_checked_against_the_suite(tmp_path):
    grids = np.zeros((3, 10, 10, 4), bool)
    make_minari("toy/grid-v0", gym.spaces.Box(0, 1, (10, 10, 4), bool), [(grids, True)])
    with pytest.raises(UserError, match="unknown minatar game 'frobnicate'"):
        import_minari("toy/grid-v0", tmp_path / "d", game="frobnicate")
    assert not (tmp_path / "d").exists()
    import_minari("toy/grid-v0", tmp_path / "d", game="Space-Invaders")  # spelled loosely
    assert open_dataset(tmp_path / "d").games == ["space_invaders"]


def _atari_store(root):
    from scaledql.data.store.writer import GameWriter

    frames = np.random.default_rng(6).integers(0, 256, (4, 1, 84, 84), dtype=np.uint8)
    with GameWriter(root, suite="atari", game="Pong", num_actions=6, frame_shape=(1, 84, 84),
                    stack=4) as w:
        w.add_episode(frames, np.arange(3), np.ones(3, np.float32), True, False)


def test_a_crashed_export_leaves_nothing_that_blocks_a_retry(tmp_path, monkeypatch):
    import minari

    _atari_store(tmp_path / "a")
    real = minari.create_dataset_from_buffers

    def crash(dataset_id, *args, **kwargs):
        real(dataset_id, *args, **kwargs)  # everything written ...
        raise KeyboardInterrupt  # ... and killed before it was published

    monkeypatch.setattr(minari, "create_dataset_from_buffers", crash)
    with pytest.raises(KeyboardInterrupt):
        export_minari(tmp_path / "a", "Pong", "scaledql/pong-v0")
    assert not (tmp_path / "minari" / "scaledql" / "pong-v0").exists()
    # A process killed outright leaves its staging directory: the next export removes it.
    (tmp_path / "minari" / ".scaledql__pong-v0.export" / "scaledql" / "pong-v0").mkdir(
        parents=True)
    monkeypatch.setattr(minari, "create_dataset_from_buffers", real)
    export_minari(tmp_path / "a", "Pong", "scaledql/pong-v0")
    assert sorted(p.name for p in (tmp_path / "minari").iterdir()) == ["scaledql"]
    import_minari("scaledql/pong-v0", tmp_path / "b", game="Pong")
    assert open_dataset(tmp_path / "b").game("Pong").num_transitions == 3


def test_one_exporter_per_dataset_id(tmp_path):
    from scaledql.atomic_files import file_lock

    _atari_store(tmp_path / "a")
    lock = tmp_path / "minari" / ".scaledql__pong-v0.export.lock"
    with file_lock(lock, "Minari export"), pytest.raises(UserError, match=r"in use by process \d+"):
        export_minari(tmp_path / "a", "Pong", "scaledql/pong-v0")
    assert not (tmp_path / "minari" / "scaledql" / "pong-v0").exists()


def _store_files(game_dir) -> dict[str, bytes]:
    return {str(p.relative_to(game_dir)): p.read_bytes() for p in sorted(game_dir.rglob("*"))
            if p.is_file()}


def _varied_store(root, suite: str) -> None:
    """A store with what Minari's own fields cannot say: three shards (one episode of 0 steps
    is impossible here: Minari cannot hold it), an episode that began before the data, an
    unfinished one between finished ones, game options and a minimal action set."""
    from scaledql.data.store.writer import GameWriter

    rng = np.random.default_rng(7)
    game, n, shape, stack = (("breakout", 3, (10, 10, 10), 1) if suite == "minatar"
                             else ("Pong", 6, (1, 84, 84), 4))
    options = {"sticky": 0.3, "max_episode_steps": 50, "full_action_space": False, "mode": None,
               "difficulty": None}
    with GameWriter(root, suite=suite, game=game, num_actions=n, frame_shape=shape,
                    stack=stack, shard_steps=6, rewards_clipped=suite == "atari",
                    provenance={"source": "scaledql collect", "env_options": options,
                                "command": "scaledql collect ..."}) as w:
        for i, (t, term, trunc) in enumerate(((3, True, False), (4, False, False),
                                              (5, False, True), (2, True, False),
                                              (1, True, False), (3, False, False))):
            frames = rng.integers(0, 256, (t + 1, *shape), dtype=np.uint8)
            if suite == "minatar":
                frames = 255 * (frames > 127).astype(np.uint8)
            w.add_episode(frames, rng.integers(0, n, t), rng.normal(size=t).astype(np.float32),
                          term, trunc, partial_start=i == 0)


@pytest.mark.parametrize("suite", ["minatar", "atari"])
def test_export_then_import_gives_back_the_same_store_files(tmp_path, suite, capsys):
    """The README's promise, through the CLI and with no --game: every shard file the same
    bytes; the manifest the same but where and when it was imported."""
    from scaledql.cli import main

    _varied_store(tmp_path / "a", suite)
    game = "breakout" if suite == "minatar" else "Pong"
    root = tmp_path / "elsewhere"
    assert main(["data", "export", "minari", str(tmp_path / "a"), "--game", game,
                 "--dataset-id", "ns/name-v0", "--out", str(root)]) == 0
    printed = capsys.readouterr().out
    assert str(root / "ns" / "name-v0") in printed  # says where it wrote ...
    assert not (tmp_path / "minari").exists()  # ... and --out, not MINARI_DATASETS_PATH
    assert main(["data", "import", "minari", str(root / "ns" / "name-v0"),
                 "--out", str(tmp_path / "b")]) == 0
    a, b = _store_files(tmp_path / "a" / game), _store_files(tmp_path / "b" / game)
    assert sorted(a) == sorted(b) and len(a) == 1 + 3 * 9  # manifest and three shards
    assert [k for k in a if a[k] != b[k]] == ["manifest.json"]
    ma, mb = json.loads(a["manifest.json"]), json.loads(b["manifest.json"])
    differ = {k for k in ma.keys() | mb.keys() if ma.get(k) != mb.get(k)}
    assert "provenance" in differ and differ <= {"provenance", "created"}
    assert mb["provenance"]["origin"] == ma["provenance"]
    assert mb["provenance"]["env_options"] == ma["provenance"]["env_options"]
    assert mb["counts"]["unfinished"] == 2 and mb["counts"]["partial_start"] == 1


def test_the_export_names_its_game_in_minaris_env_spec(tmp_path):
    import minari

    _varied_store(tmp_path / "a", "minatar")
    result = export_minari(tmp_path / "a", "breakout", "scaledql/breakout-v0")
    assert result["path"] == str(tmp_path / "minari" / "scaledql" / "breakout-v0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = minari.load_dataset("scaledql/breakout-v0").spec.env_spec
    assert spec.id == "MinAtar/Breakout-v1"
    assert spec.kwargs["sticky_action_prob"] == 0.3 and spec.max_episode_steps == 50


def test_a_zero_step_episode_is_left_out_and_said_so(tmp_path, capsys):
    from scaledql.cli import main
    from scaledql.data.store.writer import GameWriter

    with GameWriter(tmp_path / "a", suite="minatar", game="breakout", num_actions=3,
                    frame_shape=(10, 10, 10), stack=1) as w:
        w.add_episode(np.zeros((1, 10, 10, 10), np.uint8), np.zeros(0, int),
                      np.zeros(0, np.float32), True, False)  # terminated at once
        w.add_episode(np.zeros((3, 10, 10, 10), np.uint8), np.arange(2), np.ones(2, np.float32),
                      True, False)
    assert main(["data", "export", "minari", str(tmp_path / "a"), "--game", "breakout",
                 "--dataset-id", "ns/b-v0"]) == 0
    assert "note: 1 terminated zero-step episode(s) left out" in capsys.readouterr().out


def test_a_refused_export_leaves_no_datasets_root(tmp_path):
    from scaledql.data.store.writer import GameWriter

    with GameWriter(tmp_path / "a", suite="minatar", game="breakout", num_actions=3,
                    frame_shape=(10, 10, 10), stack=1) as w:
        w.add_episode(np.full((3, 10, 10, 10), 1, np.uint8), np.arange(2),
                      np.ones(2, np.float32), True, False)  # cells 1, not 255
    with pytest.raises(UserError, match="values other than 0 and 255"):
        export_minari(tmp_path / "a", "breakout", "ns/b-v0", out=tmp_path / "new" / "root")
    assert not (tmp_path / "new").exists()


def test_export_and_import_with_relative_paths(tmp_path, monkeypatch):
    """Paths as a user types them, relative to where they are: the export's --out root and the
    import's dataset path (minari itself writes relative to the path it is given)."""
    from scaledql.cli import main

    _varied_store(tmp_path / "a", "minatar")
    monkeypatch.chdir(tmp_path)
    assert main(["data", "export", "minari", "a", "--game", "breakout", "--dataset-id",
                 "ns/rel-v0", "--out", "mroot"]) == 0
    assert (tmp_path / "mroot" / "ns" / "rel-v0" / "data" / "main_data.hdf5").is_file()
    assert main(["data", "import", "minari", "mroot/ns/rel-v0", "--out", "b"]) == 0
    a, b = _store_files(tmp_path / "a" / "breakout"), _store_files(tmp_path / "b" / "breakout")
    assert [k for k in a if a[k] != b[k]] == ["manifest.json"]
