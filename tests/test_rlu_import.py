"""``data import rlu-atari`` on fixtures written by TensorFlow and TensorFlow Datasets' own writers
(``tests/fixtures/rlu/make_fixtures.py``), read here without TensorFlow: both layouts, the
episodes they hold, the same transitions as a DQN Replay import of the same episodes, resume,
determinism and every kind of bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fixtures.rlu import episodes as E
from scaledql.cli import main
from scaledql.data.importers.atari_import import ImportOptions, import_games
from scaledql.data.store.dataset import open_dataset
from test_dqn_import import run_killed, tree
from test_dqn_replay import LoggedBuffer

FIX = Path(__file__).parent / "fixtures" / "rlu"
RAW = FIX / "atari_episodes_ordered"
TFDS = FIX / "tfds"
TFDS_RUN = TFDS / "rlu_atari_checkpoints_ordered" / "Pong_run_1" / "1.1.0"
SHARD = "rlu_atari_checkpoints_ordered-checkpoint_{:02d}.tfrecord-00000-of-00001"


def argv(src: Path, out: Path, *extra: str, games: str = "Pong,Breakout") -> list[str]:
    return ["data", "import", "rlu-atari", str(src), "--games", games, "--out", str(out),
            *extra]


def stored(root: Path, game: str) -> list[dict]:
    """A game store's episodes in store order: step labels (from the frames), actions, rewards,
    flags."""
    g = open_dataset(root, contents=True).game(game)
    assert g.frame_shape == (1, 84, 84) and g.manifest["rewards_clipped"]
    labels = {}
    for run in E.RUNS[game]:
        for label, _ in E.steps(game, run):
            labels[E.frame(game, run, label).tobytes()] = (run, label)
    zero = np.zeros(E.FRAME_HW, np.uint8).tobytes()
    out = []
    for sh in g.shards:
        for s, t, flags in zip(sh.ep_frame_start, sh.ep_length, sh.ep_flags, strict=True):
            frames = np.asarray(sh.frames[s:s + t + 1])[:, 0]
            assert frames[-1].tobytes() == zero  # the final frame was never stored
            out.append({"steps": [labels[f.tobytes()] for f in frames[:-1]],
                        "actions": sh.actions[s:s + t].tolist(),
                        "rewards": sh.rewards[s:s + t].tolist(),
                        "flags": ("terminated" if flags & 1 else "truncated" if flags & 2
                                  else "unfinished") + (" partial" if flags & 4 else "")})
    return out


def expected(game: str, run: int, lo: int = 0, hi: int | None = None,
             partial: bool = False) -> list[dict]:
    """The spec's episodes of a run restricted to the steps of checkpoints [lo, hi)."""
    steps = E.steps(game, run)
    hi = len(steps) // E.STEPS_PER_CHECKPOINT if hi is None else hi
    steps = steps[lo * E.STEPS_PER_CHECKPOINT:hi * E.STEPS_PER_CHECKPOINT]
    out, cur = [], []
    for label, ends in steps:
        cur.append(label)
        if ends:
            out.append((cur, "terminated"))
            cur = []
    if cur:
        out.append((cur, "unfinished"))
    eps = [{"steps": [(run, lb) for lb in labels],
            "actions": [E.action(game, lb) for lb in labels],
            "rewards": [E.reward(lb) for lb in labels], "flags": flag} for labels, flag in out]
    if partial:
        eps[0]["flags"] += " partial"
    return eps


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Both games imported from the TFDS layout with two processes, moved aside to ``ref``."""
    base = tmp_path_factory.mktemp("rlu")
    assert main(argv(TFDS, base / "out", "--jobs", "2")) == 0
    os.rename(base / "out", base / "ref")
    return base


def test_tfds_import_holds_the_episodes(reference):
    ref = reference / "ref"
    assert stored(ref, "Pong") == expected("Pong", 1) + expected("Pong", 2)
    assert stored(ref, "Breakout") == expected("Breakout", 1)
    m = open_dataset(ref).game("Pong").manifest
    assert m["provenance"]["source"] == "rlu-atari" and m["provenance"]["layout"] == "tfds 1.1.0"
    assert m["provenance"]["runs"] == {"1": [0, 1, 2, 3, 4], "2": [0, 1, 2, 3, 4]}
    assert m["provenance"]["sticky_actions"] == 0.25 and m["action_set"] == "minimal"
    # behaviour returns: finished episodes only (Pong run 1's last one is unfinished)
    assert m["episode_returns"] == [sum(e["rewards"]) for e in stored(ref, "Pong")
                                    if e["flags"] == "terminated"]


def test_raw_layout_writes_the_same_shards(reference, capsys):
    out = reference / "raw"
    assert main(argv(RAW, out, "--jobs", "2")) == 0  # records parsed in the workers too
    ref, raw = tree(reference / "ref"), tree(out)
    for name in ref:
        if not name.endswith("manifest.json"):
            assert raw[name] == ref[name], name
    for game in ("Pong", "Breakout"):
        a, b = (json.loads(t[f"{game}/manifest.json"]) for t in (ref, raw))
        assert a.pop("provenance")["layout"] != b.pop("provenance")["layout"]
        a.pop("created"), b.pop("created")  # the newest source file's time
        assert a == b
    assert main(argv(RAW, out)) == 0  # the same import again: nothing to do
    assert capsys.readouterr().out.count("already imported") == 2
    shutil.rmtree(out)


class FrameBuffer(LoggedBuffer):
    """The logged replay buffer of ``test_dqn_replay`` with the fixture's 84x84 frames."""

    def __init__(self, log_dir: Path, capacity: int, game: str, run: int):
        super().__init__(log_dir, capacity)
        self.obs = np.full((capacity, *E.FRAME_HW), 255, np.uint8)
        self.game, self.run = game, run

    def _add(self, label, a, r, t, pad):
        super()._add(0, a, r, t, pad)
        self.obs[(self.add_count - 1) % self.cap] = E.frame(self.game, self.run, label) \
            if label else 0


def test_same_transitions_as_the_dqn_replay_import(reference, tmp_path):
    """The fixture's runs played through Dopamine's logged buffer and imported from its
    ``$store$`` files: every shard array is the same, byte for byte."""
    src = tmp_path / "dopamine"
    for run in E.RUNS["Pong"]:
        buf = FrameBuffer(src / "Pong" / str(run) / "replay_logs", 80, "Pong", run)
        for label, ends in E.steps("Pong", run):
            buf.add(label, E.action("Pong", label), E.reward(label), ends)
        buf.log_final_buffer()
    assert main(["data", "import", "dqn-replay", str(src), "--game", "Pong", "--out",
                 str(tmp_path / "out")]) == 0
    dqn, rlu = tree(tmp_path / "out"), tree(reference / "ref")
    shards = [n for n in dqn if n.startswith("Pong/shard_")]
    assert shards and all(dqn[n] == rlu[n] for n in shards)
    a, b = (json.loads(t["Pong/manifest.json"]) for t in (dqn, rlu))
    for m in (a, b):
        m.pop("provenance"), m.pop("created")
    assert a == b


@pytest.mark.parametrize("layout", [RAW, TFDS])
def test_selections_cut_and_join_episodes_as_the_dqn_import_does(layout, tmp_path):
    def imp(**sel) -> list[dict]:
        out = tmp_path / "out"
        import_games({"Pong": None}, ImportOptions(src=layout, out=out, runs=["1"],
                                                   source="rlu-atari", **sel))
        eps = stored(out, "Pong")
        shutil.rmtree(out)
        return eps

    # the paper's slice: the first 20% of the run's 5 checkpoints; its last episode unfinished
    assert imp(fraction=0.2) == expected("Pong", 1, 0, 1)
    assert imp(fraction=0.4) == expected("Pong", 1, 0, 2)  # 4 steps of the 18-step episode
    # checkpoint 1 ended mid-episode: checkpoint 2 starts partial; 3 joins the 18-step episode
    assert imp(checkpoints=[2, 3]) == expected("Pong", 1, 2, 4, partial=True)
    # a gap: checkpoint 1's last episode is truncated, checkpoint 3 starts partial
    gap = imp(checkpoints=[1, 3])
    assert [e["flags"] for e in gap] == ["terminated", "truncated", "terminated partial",
                                         "unfinished"]
    assert len(gap[1]["steps"]) == 4 and len(gap[2]["steps"]) == 6


def test_killed_import_resumes_to_the_same_bytes(reference, tmp_path):
    out = reference / "out"
    run_killed(tmp_path, argv(TFDS, out, "--jobs", "2"), "mark:3")
    assert [p.name for p in out.iterdir() if p.name.startswith(".")]  # staging to resume
    assert main(argv(TFDS, out)) == 0
    assert tree(out) == tree(reference / "ref")
    shutil.rmtree(out)


# ------------------------------------------------------------------------------------------------
# Bad input: one line naming the file and what is wrong, exit 2, nothing written


def _damaged(tmp_path: Path, damage) -> Path:
    src = tmp_path / "src"
    shutil.copytree(TFDS, src)
    damage(src / TFDS_RUN.relative_to(TFDS))
    return src


def _truncate(d: Path) -> None:
    p = d / SHARD.format(2)
    p.write_bytes(p.read_bytes()[:-30])


def _flip(at: int):
    def damage(d: Path) -> None:
        p = d / SHARD.format(1)
        data = bytearray(p.read_bytes())
        data[at] ^= 0x40
        p.write_bytes(bytes(data))
    return damage


def _drop_feature(d: Path) -> None:
    f = json.loads((d / "features.json").read_text())
    del f["featuresDict"]["features"]["steps"]["sequence"]["feature"]["featuresDict"][
        "features"]["discount"]
    (d / "features.json").write_text(json.dumps(f))


def _wrong_dtype(d: Path) -> None:
    text = (d / "features.json").read_text()
    (d / "features.json").write_text(text.replace('"dtype": "float32"', '"dtype": "int64"', 1))


def _drop_split(d: Path) -> None:
    info = json.loads((d / "dataset_info.json").read_text())
    info["splits"] = [s for s in info["splits"] if s["name"] != "checkpoint_03"]
    (d / "dataset_info.json").write_text(json.dumps(info))


def _extra_record_count(d: Path) -> None:
    info = json.loads((d / "dataset_info.json").read_text())
    info["splits"][0]["shardLengths"] = ["3"]
    (d / "dataset_info.json").write_text(json.dumps(info))


@pytest.mark.parametrize("damage, message", [
    (_truncate, rf"{SHARD.format(2)}: record \d+ \(at byte \d+\): truncated"),
    (_flip(200), rf"{SHARD.format(1)}: record 0 \(at byte 0\): CRC mismatch on the data"),
    (_flip(2), rf"{SHARD.format(1)}: record 0 \(at byte 0\): CRC mismatch on the length"),
    (lambda d: (d / SHARD.format(4)).unlink(), r"shard .*checkpoint_04.* is missing"),
    (_drop_split, r"1\.1\.0: no checkpoint 3 \(split checkpoint_03\)"),
    (_drop_feature, r"features.json lacks steps/discount"),
    (_wrong_dtype, r"features.json say int64_list"),
    (_extra_record_count, r"checkpoint_00.*: 2 records, dataset_info.json says 3"),
])
def test_bad_tfds_input_is_one_line(tmp_path, capsys, damage, message):
    src = _damaged(tmp_path, damage)
    out = tmp_path / "out"
    assert main(argv(src, out, "--jobs", "2", games="Pong")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    ((RAW, "--runs", "3"), r"atari_episodes_ordered/Pong: no run 3 of Pong \(runs: 1, 2\)"),
    ((TFDS, "--runs", "1-3"), r"no run 3 of Pong"),
    ((TFDS / "nowhere",), r"nowhere: no such directory"),
    ((FIX / "bad" / "wrong_png",), r"run_1-00000-of-00001: record 0, step 1: PNG frame is "
                                   r"uint8 64x64, expected 8-bit grayscale 84x84"),
    ((RAW, "--checkpoints", "4-5"), r"no checkpoint 5"),
])
def test_bad_selection_or_frames_is_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(argv(args[0], out, *args[1:], games="Pong")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert not out.exists()


def test_missing_game_and_missing_raw_file(tmp_path, capsys):
    assert main(argv(TFDS, tmp_path / "out", games="Qbert")) == 2
    assert "no Qbert_run_N directories" in capsys.readouterr().err
    src = tmp_path / "raw"
    shutil.copytree(RAW, src)
    (src / "Pong" / "run_2-00003-of-00005").unlink()
    assert main(argv(src, tmp_path / "out", games="Pong")) == 2
    err = capsys.readouterr().err
    assert "run_2-00003-of-00005: missing (checkpoint 3 is selected)" in err
    assert not (tmp_path / "out").exists()
