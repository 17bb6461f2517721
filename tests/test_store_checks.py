"""Stores are checked, not trusted: writers verify before they publish, one writer per game
store, temporary files of interrupted writes go away, a store opens as fast as before."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from scaledql.cli import main
from scaledql.data.store.dataset import open_dataset
from scaledql.data.store.writer import GameWriter
from scaledql.errors import UserError


def _writer(root, **kw) -> GameWriter:
    return GameWriter(root, suite="minatar", game="breakout", num_actions=3,
                      frame_shape=(10, 10, 10), stack=1, **kw)


def _episode(t: int = 4):
    return (np.zeros((t + 1, 10, 10, 10), np.uint8), np.arange(t) % 3,
            np.ones(t, np.float32))


def test_a_writer_scans_what_it_wrote_before_publishing(tmp_path, monkeypatch):
    from scaledql.data.store import writer

    real = writer._ShardWriter.finish

    def finish_then_damage(self):  # a bug (or a bad disk) between writing and publishing
        info = real(self)
        actions = np.load(self.directory / "actions.npy")
        actions[1] = 7
        np.save(self.directory / "actions.npy", actions)
        return info

    monkeypatch.setattr(writer._ShardWriter, "finish", finish_then_damage)
    with pytest.raises(UserError, match=r"action 7 at frame 1 is out of range \[0, 3\)"), \
            _writer(tmp_path) as w:
        w.add_episode(*_episode(), True, False)
    assert list(tmp_path.iterdir()) == []  # nothing published, nothing left


def test_the_dqn_replay_import_scans_before_publishing(tmp_path, monkeypatch):
    from scaledql.data.importers import dqn_layout
    from test_dqn_replay import LoggedBuffer, import_dqn_replay, play

    play(LoggedBuffer(tmp_path / "src" / "Pong" / "1" / "replay_logs", capacity=10),
         [5, 7, 6, 4], every_cycle_logged=True)
    real = dqn_layout._ShardBuilder.write

    def write_then_damage(self, directory, frame_shape):
        real(self, directory, frame_shape)
        rewards = np.load(directory / "rewards.npy")
        rewards[2] = np.inf
        np.save(directory / "rewards.npy", rewards)

    monkeypatch.setattr(dqn_layout._ShardBuilder, "write", write_then_damage)
    with pytest.raises(UserError, match=r"reward inf at frame 2 is not finite"):
        import_dqn_replay(tmp_path / "src", "Pong", tmp_path / "out", checkpoints=[0, 1])
    assert not (tmp_path / "out" / "Pong").exists()


@pytest.mark.parametrize("source", ["minari", "dqn-replay", "collect"])
def test_a_second_writer_of_a_game_gets_one_line_naming_the_first(tmp_path, capsys,
                                                                  monkeypatch, source):
    from test_dqn_replay import LoggedBuffer, play
    from test_minari_io import make_minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    out = tmp_path / "out"
    game = "Pong" if source == "dqn-replay" else "breakout"
    if source == "minari":
        import gymnasium as gym

        make_minari("toy/breakout-v0", gym.spaces.Box(0, 1, (10, 10, 4), bool),
                    [(np.zeros((4, 10, 10, 4), bool), True)])
        argv = ["data", "import", "minari", "toy/breakout-v0", "--game", "breakout"]
    elif source == "dqn-replay":
        play(LoggedBuffer(tmp_path / "src" / "Pong" / "1" / "replay_logs", capacity=10),
             [5, 7, 6, 4], every_cycle_logged=True)
        argv = ["data", "import", "dqn-replay", str(tmp_path / "src"), "--game", "Pong",
                "--checkpoints", "0-1"]
    else:
        argv = ["collect", "--games", "breakout", "--steps", "20", "--num-envs", "1",
                "--no-progress", "--device", "cpu"]
    first = GameWriter(out, suite="atari" if game == "Pong" else "minatar", game=game,
                       num_actions=6 if game == "Pong" else 3,
                       frame_shape=(1, 2, 3) if game == "Pong" else (10, 10, 10),
                       stack=4 if game == "Pong" else 1)
    t = 2
    first.add_episode(np.zeros((t + 1, *first.frame_shape), np.uint8), np.zeros(t, int),
                      np.ones(t, np.float32), True, False)
    first._finish_shard()  # half-way through: its partial directory holds data
    assert main([*argv, "--out", str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"in use by process {os.getpid()}" in err, err
    assert (out / f".{game}.partial" / "shard_00000" / "frames.npy").is_file()  # untouched
    first.close()
    g = open_dataset(out).game(game)  # the first writer's game, whole
    assert (g.num_transitions, g.manifest["provenance"]["source"]) == (2, "unknown")
    assert sorted(p.name for p in out.iterdir()) == [game]  # no lock file left behind


def test_temporary_files_of_killed_writers_go_on_the_next_write(tmp_path):
    from scaledql.atomic_files import atomic_write_json, temp_path

    target = tmp_path / "eval.json"
    dead = tmp_path / ".eval.json.tmp-999999999"  # no such process
    dead.write_text("half")
    mine = temp_path(target)
    atomic_write_json(target, {"a": 1})
    assert not dead.exists() and not mine.exists() and target.read_text().startswith("{")


def test_a_crashed_report_write_leaves_no_temporary(tmp_path):
    from scaledql.atomic_files import atomic_output

    with pytest.raises(RuntimeError), atomic_output(tmp_path / "plot.png") as tmp:
        tmp.write_bytes(b"half a png")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_opening_a_store_reads_headers_and_episode_tables_only(tmp_path, monkeypatch):
    """Cheap checks stay cheap, counted in work rather than seconds (the time is
    ``benchmarks/store_open.py``'s): 40 games of 4 shards open by reading each array file's
    header only and mapping the arrays; the per-frame arrays' contents are never looked at
    (damage there is ``data verify``'s to find), only the episode tables are."""
    from scaledql.data.store import format as fmt
    from scaledql.data.store.dataset import GameData

    for i in range(4):
        with _writer(tmp_path / "one", shard_steps=1, append=i > 0) as w:
            w.add_episode(*_episode(), True, False)
    per_frame = [n for n, (_, per) in fmt.SHARD_ARRAYS.items() if per == "frame"]
    for shard in (tmp_path / "one" / "breakout").glob("shard_*"):
        for name in per_frame:  # every data byte after the header damaged: frames 0xFF,
            with open(shard / f"{name}.npy", "r+b") as f:  # actions out of range, NaN rewards
                fmt.read_header(f)
                size = os.fstat(f.fileno()).st_size - f.tell()
                f.write(b"\xff" * size)
    for game in [f"g{i}" for i in range(40)]:
        os.symlink(tmp_path / "one" / "breakout", tmp_path / game)

    read: dict[str, int] = {}  # bytes read through open(), per file opened
    mapped: list[str] = []

    class Counted:
        def __init__(self, f):
            self._f = f

        def read(self, n=-1):
            data = self._f.read(n)
            read[self._f.name] += len(data)
            return data

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def counted_open(path, mode="r", *args, **kw):
        read[str(path)] = read.get(str(path), 0)
        return Counted(open(path, mode, *args, **kw))

    real_memmap = np.memmap

    def counted_memmap(path, *args, **kw):
        mapped.append(Path(path).stem)
        return real_memmap(path, *args, **kw)

    monkeypatch.setattr(fmt, "open", counted_open, raising=False)
    monkeypatch.setattr(fmt.np, "memmap", counted_memmap)
    games = [GameData(tmp_path / f"g{i}", name="breakout") for i in range(40)]

    assert all(g.num_transitions == 16 for g in games)
    arrays = 40 * 4 * len(fmt.SHARD_ARRAYS)
    assert len(read) == arrays  # each array file opened once
    assert max(read.values()) <= 128  # and only its .npy header read, never the data after it
    assert len(mapped) == arrays  # then mapped (nothing loaded whole), its pages read on demand


def test_a_run_folder_sheds_the_temporaries_of_killed_writers(tmp_path, capsys):
    with _writer(tmp_path / "data") as w:
        w.add_episode(*_episode(), True, False)
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    dead = [run / ".metrics.csv.tmp-999999999", run / "eval" / ".step_1.json.tmp-999999998"]
    for f in dead:
        f.write_text("half")
    live = run / f".notes.txt.tmp-{os.getpid()}"  # a live writer's (ours): kept
    live.write_text("being written")
    assert main(["train", "--data", str(tmp_path / "data"), "--out", str(run), "--steps", "1",
                 "--encoder", "nature", "--width", "0.25", "--feature-dim", "8",
                 "--batch-size", "2", "--eval-episodes", "1", "--no-progress",
                 "--device", "cpu"]) == 0, capsys.readouterr().err
    assert not any(f.exists() for f in dead) and live.exists()
