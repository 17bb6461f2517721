"""Parallel, resumable DQN Replay import of several games, runs and checkpoint files, on files
laid out as batch_rl's logged buffer writes them: killed at any point and resumed, it writes
the same bytes as one uninterrupted import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import scaledql
from scaledql.cli import main
from scaledql.data.importers.atari_import import ImportOptions, import_games
from scaledql.data.importers.dqn_replay import parse_runs_spec
from scaledql.data.store.dataset import open_dataset
from scaledql.errors import UserError
from test_dqn_replay import NUM_ACTIONS, LoggedBuffer, expected, play, stored

GAMES = ("Pong", "Breakout")
RUNS = ("1", "2")
LENGTHS = [6, 9, 4, 7, 5, 8]  # 39 steps + 18 padding adds: files 0..4 logged, 5 the final one


def make_source(root: Path) -> dict[tuple[str, str], LoggedBuffer]:
    """Two games x two runs of six or seven checkpoint files each (the last one written by
    ``log_final_buffer``; the second run of each game ends in an unfinished episode)."""
    bufs = {}
    for gi, game in enumerate(GAMES):
        for ri, run in enumerate(RUNS):
            buf = LoggedBuffer(root / game / run / "replay_logs", capacity=10)
            play(buf, LENGTHS, first_label=1 + 60 * (2 * gi + ri), last_unfinished=ri == 1,
                 every_cycle_logged=True)
            buf.log_final_buffer()
            assert buf.log_count >= 6
            bufs[game, run] = buf
    return bufs


def want(bufs, game: str, hi: int | None = None) -> list[dict]:
    """A game's expected episodes: run 1's then run 2's, of adds [0, hi)."""
    return [e for run in RUNS for e in expected(
        bufs[game, run].adds, 0, hi or bufs[game, run].add_count, gap_follows=False,
        head_known=True)]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def argv(src: Path, out: Path, *extra: str) -> list[str]:
    return ["data", "import", "dqn-replay", str(src), "--games", ",".join(GAMES), "--runs",
            "1-2", "--out", str(out), *extra]


# A driver that kills itself and its workers (SIGKILL, no clean-up runs) at a chosen point.
DRIVER = """
import os, signal, sys
from scaledql.data.importers import atari_import as dqn_import
where, n = os.environ["KILL_AT"].split(":")
count = [0]
def kill_after(fn):
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        count[0] += 1
        if count[0] == int(n):
            os.killpg(0, signal.SIGKILL)
        return out
    return wrapped
if where == "mark":  # after the n-th finished file is recorded
    dqn_import._mark_done = kill_after(dqn_import._mark_done)
elif where == "published":  # after the n-th game is published
    dqn_import._publish = kill_after(dqn_import._publish)
else:  # "rename": publishing, the manifest written, before the rename
    def kill_on_rename(*args):
        os.killpg(0, signal.SIGKILL)
    dqn_import.os.rename = kill_on_rename
if __name__ == "__main__":  # not in the spawned workers, which import this module too
    from scaledql.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def run_killed(tmp_path: Path, args: list[str], kill_at: str) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "KILL_AT": kill_at,
           "PYTHONPATH": str(Path(scaledql.__file__).parents[1])}
    proc = subprocess.run([sys.executable, str(driver), *args], env=env, start_new_session=True,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("dqn") / "src"
    return root, make_source(root)


@pytest.fixture(scope="module")
def reference(source, tmp_path_factory):
    """One uninterrupted parallel import, published at OUT and moved aside (so that imports
    compared with it write to the same path, which the manifest's command names)."""
    src, _ = source
    base = tmp_path_factory.mktemp("ref")
    assert main(argv(src, base / "out", "--jobs", "2")) == 0
    os.rename(base / "out", base / "ref")
    return base


def test_import_matches_the_ground_truth(source, reference):
    _, bufs = source
    for game in GAMES:  # runs in the order given, each in time order
        assert stored(reference / "ref", game) == want(bufs, game)
    info = open_dataset(reference / "ref").info()["games"]
    assert info["Pong"]["provenance"]["runs"] == {
        run: list(range(bufs["Pong", run].log_count)) for run in RUNS}
    assert "--jobs" not in info["Pong"]["provenance"]["command"]


def test_one_job_writes_the_same_bytes(source, reference, capsys):
    src, _ = source
    out = reference / "out"
    assert main(argv(src, out)) == 0
    assert tree(out) == tree(reference / "ref")
    assert capsys.readouterr().out.count("wrote") == 2
    # Run again: both games are already there (same fingerprint) and are left alone.
    assert main(argv(src, out, "--jobs", "2")) == 0
    assert capsys.readouterr().out.count("already imported") == 2
    assert tree(out) == tree(reference / "ref")
    os.system(f"rm -rf '{out}'")


@pytest.mark.parametrize("kill_at", ["mark:3", "published:1", "rename:1"])
def test_killed_import_resumes_to_the_same_bytes(source, reference, tmp_path, kill_at):
    src, _ = source
    out = reference / "out"
    run_killed(tmp_path, argv(src, out, "--jobs", "2"), kill_at)
    # A kill never leaves a half-written published game: what is listed opens complete.
    published = [p.name for p in out.iterdir() if not p.name.startswith(".")]
    assert published == [] or open_dataset(out, published).games == published
    assert [p.name for p in out.iterdir() if p.name.startswith(".")]  # staging to resume
    assert len(published) == (kill_at == "published:1")  # the other game is not finished
    assert main(argv(src, out, "--jobs", "2")) == 0
    assert tree(out) == tree(reference / "ref")  # byte for byte, no temporary files left
    os.system(f"rm -rf '{out}'")


def test_changed_selection_starts_that_game_afresh(source, reference, tmp_path):
    src, bufs = source
    out = reference / "out"
    run_killed(tmp_path, argv(src, out, "--jobs", "2"), "mark:3")
    assert main(argv(src, out, "--checkpoints", "0-2")) == 0
    for game in GAMES:  # adds [0, 29) of each run: nothing left from the killed import
        assert stored(out, game) == want(bufs, game, hi=29)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    os.system(f"rm -rf '{out}'")


def test_bad_file_fails_cleanly_and_keeps_other_games(source, tmp_path, capsys):
    src, _ = source
    bad = tmp_path / "src"
    os.system(f"cp -r '{src}' '{bad}'")
    obs = bad / "Breakout" / "2" / "replay_logs" / "$store$_observation_ckpt.3.gz"
    obs.write_bytes(obs.read_bytes()[:-20])
    out = tmp_path / "out"
    assert main(argv(bad, out, "--jobs", "2")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "observation_ckpt.3.gz" in err
    assert not (out / "Breakout").exists() and not (out / ".Breakout.import").exists()


def test_options_are_checked_before_anything_is_written(source, tmp_path):
    src, _ = source
    opts = ImportOptions(src=src, out=tmp_path / "out", runs=["1", "7"])
    with pytest.raises(UserError, match="no run 7"):
        import_games({"Pong": NUM_ACTIONS}, opts)
    with pytest.raises(UserError, match="--jobs must be at least 1"):
        import_games({"Pong": NUM_ACTIONS}, ImportOptions(src=src, out=tmp_path / "out"),
                     jobs=0)
    assert not (tmp_path / "out").exists()


def test_runs_spec():
    assert parse_runs_spec("1-5") == ["1", "2", "3", "4", "5"]
    assert parse_runs_spec("2,1,2") == ["2", "1"]
    assert parse_runs_spec("1-2,abc") == ["1", "2", "abc"]
    for bad in ("", "3-1", ","):
        with pytest.raises(UserError):
            parse_runs_spec(bad)


def test_concurrent_import_of_the_same_game_is_refused(source, tmp_path):
    import fcntl

    src, _ = source
    staging = tmp_path / "out" / ".Pong.import"
    staging.mkdir(parents=True)
    fd = os.open(staging, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another import holds it
    try:
        with pytest.raises(UserError, match="another import of this game"):
            import_games({"Pong": NUM_ACTIONS}, ImportOptions(src=src, out=tmp_path / "out"))
    finally:
        os.close(fd)
    import_games({"Pong": NUM_ACTIONS}, ImportOptions(src=src, out=tmp_path / "out"))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["Pong"]


def test_shards_are_what_game_writer_writes(reference, tmp_path):
    """The import builds its shards itself (frames placed by offset); they are byte for byte
    what ``GameWriter`` writes for the same episodes, and the manifests agree on the counts and
    returns."""
    import json

    import numpy as np

    from scaledql.data.store.writer import GameWriter

    ours = reference / "ref" / "Breakout"
    g = open_dataset(ours.parent).game("Breakout")
    with GameWriter(tmp_path, suite="atari", game="Breakout", num_actions=g.num_actions,
                    frame_shape=g.frame_shape, stack=g.stack, rewards_clipped=True) as w:
        for sh in g.shards:
            for s, t, f in zip(sh.ep_frame_start, sh.ep_length, sh.ep_flags, strict=True):
                w.add_episode(np.asarray(sh.frames[s:s + t + 1]), sh.actions[s:s + t],
                              sh.rewards[s:s + t], bool(f & 1), bool(f & 2),
                              partial_start=bool(f & 4))
    a, b = tree(ours), tree(tmp_path / "Breakout")
    assert a.keys() == b.keys()
    for name in a:
        if name != "manifest.json":
            assert a[name] == b[name], name
    ma, mb = (json.loads(x["manifest.json"]) for x in (a, b))
    for key in ("counts", "episode_returns", "shards", "frame_shape", "stack", "num_actions"):
        assert ma[key] == mb[key], key
