"""DQN Replay import on files written in Dopamine's exact layout by a replica of its logged buffer."""

from __future__ import annotations

import gzip
import io
import pickle

import numpy as np
import pytest

from scaledql.data.importers.atari_import import ImportOptions, ImportSummary, import_games
from scaledql.data.store.dataset import open_dataset
from scaledql.errors import UserError

HW = (2, 3)
NUM_ACTIONS = 4


def import_dqn_replay(src, game, out, *, num_actions=None, chunk_bytes=None,
                      **options) -> ImportSummary:
    """One game's import with its options as keywords (``dqn_import.ImportOptions``)."""
    opts = ImportOptions(src=src, out=out, **options)
    if chunk_bytes is not None:
        opts.chunk_bytes = chunk_bytes
    return import_games({game: num_actions}, opts)[0]


def gz_save(path, array) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=array.dtype.hasobject)
    with gzip.open(path, "wb") as f:
        f.write(buf.getvalue())


class _Trap:
    """Unpickling this creates a file: proof that the importer never unpickles."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class LoggedBuffer:
    """OutOfGraphLoggedReplayBuffer (batch_rl) over Dopamine's OutOfGraphReplayBuffer, in small.

    Slots start as garbage (np.empty in Dopamine): frames 255, action 99, reward NaN, so an
    importer that read an uninitialized slot would fail loudly. ``adds`` records the ground truth.
    """

    def __init__(self, log_dir, capacity, stack=4, trap=None, log=True):
        """``log=False``: Dopamine's own OutOfGraphReplayBuffer, saved only by ``save(n)``
        (with its true add_count), as Dopamine's checkpointing does."""
        self.dir, self.cap, self.stack, self.trap, self.log = log_dir, capacity, stack, trap, log
        log_dir.mkdir(parents=True)
        self.obs = np.full((capacity, *HW), 255, np.uint8)
        self.action = np.full(capacity, 99, np.int32)
        self.reward = np.full(capacity, np.nan, np.float32)
        self.terminal = np.zeros(capacity, np.uint8)
        self.add_count = 0
        self.log_count = 0
        self.adds = []  # (label, action, reward, terminal, is_padding) per add, in order

    def _add(self, label, a, r, t, pad):
        c = self.add_count % self.cap
        self.obs[c], self.action[c], self.reward[c], self.terminal[c] = label, a, r, t
        self.add_count += 1
        self.adds.append((label, a, r, t, pad))

    def add(self, label, a, r, terminal):
        if self.add_count == 0 or self.terminal[(self.add_count - 1) % self.cap] == 1:
            for _ in range(self.stack - 1):
                self._add(0, 0, 0.0, 0, True)
        self._add(label, a, r, int(terminal), False)
        if self.log and self.add_count % self.cap == self.cap - 1:  # once per add(), as batch_rl
            self.save(self.log_count)
            self.log_count += 1

    def save(self, n, add_count=None):
        for name, arr in (("observation", self.obs), ("action", self.action),
                          ("reward", self.reward), ("terminal", self.terminal)):
            gz_save(self.dir / f"$store$_{name}_ckpt.{n}.gz", arr)
        gz_save(self.dir / f"add_count_ckpt.{n}.gz",
                np.array(self.add_count if add_count is None else add_count))
        gz_save(self.dir / f"invalid_range_ckpt.{n}.gz", np.arange(self.stack))
        if self.trap is not None:
            with gzip.open(self.dir / f"episode_end_indices_ckpt.{n}.gz", "wb") as f:
                pickle.dump(_Trap(self.trap), f)

    def log_final_buffer(self):
        self.save(self.log_count, add_count=self.add_count % self.cap)
        self.log_count += 1


def read_add_counts(buf):
    return [int(np.load(gzip.open(buf.dir / f"add_count_ckpt.{n}.gz")))
            for n in range(buf.log_count)]


def play(buf, lengths, first_label=1, last_unfinished=False, every_cycle_logged=False):
    """Episodes of the given lengths; labels count up from 1; action label % A; reward ±1.
    ``last_unfinished``: the last episode has no terminal add (training stopped in it).
    ``every_cycle_logged``: lengthen episodes whose following padding would step over a log
    point (batch_rl would then skip that cycle's log)."""
    label = first_label
    for i, length in enumerate(lengths):
        ends = not (last_unfinished and i == len(lengths) - 1)
        if every_cycle_logged:
            pads_before = buf.stack - 1  # this episode's own padding comes first
            while any((buf.add_count + pads_before + length + j) % buf.cap == buf.cap - 1
                      for j in range(1, buf.stack)):
                length += 1
        for t in range(length):
            buf.add(label, label % NUM_ACTIONS, 1.0 if label % 3 else -1.0,
                    ends and t == length - 1)
            label += 1
    return label


def expected(adds, lo, hi, *, gap_follows, head_known):
    """Episodes in adds[lo:hi] in time order, by a plain loop over the ground truth (padding
    flags known). Every real add is a step; the frame after an episode's last step was never
    stored, so it is all zeros (label 0)."""
    eps, cur = [], None
    for g in range(lo, hi):
        label, a, r, t, pad = adds[g]
        if pad:
            continue
        if cur is None:
            cur = {"labels": [], "actions": [], "rewards": [],
                   "partial": g == lo and not head_known}
        cur["labels"].append(label)
        cur["actions"].append(a)
        cur["rewards"].append(r)
        if t:
            eps.append({**cur, "labels": [*cur["labels"], 0], "flag": "terminated"})
            cur = None
    if cur is not None:  # cut by the end of the window: its last step is kept too
        eps.append({**cur, "labels": [*cur["labels"], 0],
                    "flag": "truncated" if gap_follows else "unfinished"})
    return eps


def stored(game_dir_root, game="Pong"):
    """Episodes of an imported store in store order, in the same form as ``expected``."""
    g = open_dataset(game_dir_root).game(game)
    assert g.frame_shape == (1, *HW) and g.stack == 4 and g.manifest["rewards_clipped"]
    out = []
    for sh in g.shards:
        for s, t, flags in zip(sh.ep_frame_start, sh.ep_length, sh.ep_flags, strict=True):
            frames = np.asarray(sh.frames[s:s + t + 1])
            assert (frames == frames[:, :, :1, :1]).all()  # every pixel carries the label
            out.append({"labels": frames[:, 0, 0, 0].tolist(),
                        "actions": sh.actions[s:s + t].tolist(),
                        "rewards": sh.rewards[s:s + t].tolist(),
                        "partial": bool(flags & 4),
                        "flag": "terminated" if flags & 1 else "truncated" if flags & 2
                        else "unfinished"})
    return out


def run_dir(tmp_path, run="1"):
    return tmp_path / "src" / "Pong" / run / "replay_logs"


def test_full_run_joins_checkpoints_with_nothing_lost(tmp_path):
    marker = tmp_path / "unpickled"
    buf = LoggedBuffer(run_dir(tmp_path), capacity=10, trap=marker)
    # 9 steps then an episode of 14 that spans checkpoint files 1 and 2.
    play(buf, [9, 14, 2, 5, 4, 4], last_unfinished=True)
    buf.log_final_buffer()
    assert read_add_counts(buf) == [9, 19, 29, 39, 49, 56 % 10]  # every cycle logged
    summary = import_dqn_replay(tmp_path / "src", "Pong", tmp_path / "out",
                                num_actions=NUM_ACTIONS, chunk_bytes=4 * 6)
    assert not marker.exists()  # episode_end_indices (a pickle) was never opened
    want = expected(buf.adds, 0, buf.add_count, gap_follows=False, head_known=True)
    assert stored(tmp_path / "out") == want
    assert [len(e["actions"]) for e in want] == [9, 14, 2, 5, 4, 4]  # the last one unfinished
    assert summary.transitions == 9 + 14 + 2 + 5 + 4 + 4 and summary.episodes == 5


def _dopamine_two_checkpoints(tmp_path):
    """Dopamine's own buffer saved twice by save() (true add counts): file 0 at add_count 15
    inside an episode that goes on in file 1 (add_count 30), which ends in an unfinished
    episode. File 1's new adds 15..29 wrap its ring: slots 0..9 (adds 20..29) come first in
    its stream, slots 15..19 (the spanning episode's last adds) last."""
    buf = LoggedBuffer(run_dir(tmp_path), capacity=20, log=False)
    label = play(buf, [4, 5], last_unfinished=True)
    buf.save(0)
    assert buf.add_count == 15
    label = play(buf, [3], first_label=label)  # the spanning episode's last 3 steps
    play(buf, [4, 2], first_label=label, last_unfinished=True)
    buf.save(1)
    assert buf.add_count == 30 and buf.adds[14][0] == 9 and buf.adds[15][0] == 10
    summary = import_dqn_replay(tmp_path / "src", "Pong", tmp_path / "out",
                                num_actions=NUM_ACTIONS, chunk_bytes=7 * 6)
    return buf, summary, stored(tmp_path / "out")


def test_episodes_in_time_order_across_files(tmp_path):
    # Hardening item 6, first finding: the spanning episode (labels 5..12) was listed after
    # the episodes that lie wholly in file 1.
    _, _, got = _dopamine_two_checkpoints(tmp_path)
    assert [e["labels"][0] for e in got] == [1, 5, 13, 17]
    assert [e["labels"][:-1] for e in got] == [[1, 2, 3, 4], list(range(5, 13)),
                                               [13, 14, 15, 16], [17, 18]]


def test_every_real_step_counted_including_the_last(tmp_path):
    # Hardening item 6, second finding: the last real step before the final save (label 18,
    # whose next frame was never stored) was dropped from the transitions.
    buf, summary, got = _dopamine_two_checkpoints(tmp_path)
    real_steps = sum(1 for add in buf.adds if not add[4])
    assert summary.transitions == real_steps == 4 + 8 + 4 + 2
    assert got[-1]["labels"] == [17, 18, 0] and got[-1]["flag"] == "unfinished"
    assert got[-1]["actions"] == [17 % NUM_ACTIONS, 18 % NUM_ACTIONS]
    assert got[-1]["rewards"] == [1.0 if 17 % 3 else -1.0, 1.0 if 18 % 3 else -1.0]
    assert got == expected(buf.adds, 0, 30, gap_follows=False, head_known=True)
    assert summary.episodes == 3


def test_unlogged_cycle_becomes_a_gap(tmp_path):
    # Padding steps over add 49 here, so batch_rl never logs that cycle: adds 39..44 are lost
    # in the source, and the final buffer's add_count (55 % 10) must be placed after the gap.
    buf = LoggedBuffer(run_dir(tmp_path), capacity=10)
    play(buf, [9, 14, 2, 5, 3, 4])
    buf.log_final_buffer()
    assert read_add_counts(buf) == [9, 19, 29, 39, 55 % 10]
    import_dqn_replay(tmp_path / "src", "Pong", tmp_path / "out", num_actions=NUM_ACTIONS)
    want = (expected(buf.adds, 0, 39, gap_follows=True, head_known=True)
            + expected(buf.adds, 45, 55, gap_follows=False, head_known=False))
    assert stored(tmp_path / "out") == want  # adds before 45 are lost: its start is unknown
    info = open_dataset(tmp_path / "out").info()["games"]["Pong"]
    assert info["provenance"]["source"] == "dqn-replay" and info["episodes"] == 5


def test_first_checkpoints_and_gap_cut_episodes(tmp_path):
    buf = LoggedBuffer(run_dir(tmp_path), capacity=10)
    play(buf, [9, 8, 9, 5, 9, 10, 6, 7, 12])
    assert read_add_counts(buf)[:5] == [9, 19, 29, 39, 49]
    assert buf.adds[18][:2] == (13, 13 % NUM_ACTIONS) and buf.adds[29][0] == 21  # mid-episode
    # First 40% of the run: files 0 .. k-1 → adds [0, 10 k - 1); the last episode is unfinished.
    k = int(0.4 * buf.log_count)
    import_dqn_replay(tmp_path / "src", "Pong", tmp_path / "a", num_actions=NUM_ACTIONS,
                      fraction=0.4)
    assert stored(tmp_path / "a") == expected(buf.adds, 0, 10 * k - 1, gap_follows=False,
                                              head_known=True)
    # Files 0, 1 and 3: a gap [19, 29) truncates the episode open at 19; file 3 starts mid-
    # episode at add 29, whose history comes from file 2 (on disk though not selected).
    import_dqn_replay(tmp_path / "src", "Pong", tmp_path / "b", num_actions=NUM_ACTIONS,
                      checkpoints=[0, 1, 3])
    want = (expected(buf.adds, 0, 19, gap_follows=True, head_known=True)
            + expected(buf.adds, 29, 39, gap_follows=False, head_known=False))
    got = stored(tmp_path / "b")
    assert got == want
    assert [e["flag"] for e in got if e["labels"][-2] == 13] == ["truncated"]
    assert [e["partial"] for e in got if e["labels"][0] == 21] == [True]


def test_wrapped_buffer_from_an_ordinary_checkpoint(tmp_path):
    # Dopamine's own save() at an arbitrary add_count: the ring buffer wraps mid-array.
    buf = LoggedBuffer(run_dir(tmp_path), capacity=12)
    play(buf, [5, 7, 6, 4, 8])
    buf.log_count = 0
    for p in run_dir(tmp_path).iterdir():
        p.unlink()
    assert buf.add_count % 12 not in (0, 11) and buf.add_count > 12
    buf.save(0)
    import_dqn_replay(tmp_path / "src", "Pong", tmp_path / "out", num_actions=NUM_ACTIONS,
                      chunk_bytes=5 * 6)
    lo = buf.add_count - 12
    got = stored(tmp_path / "out")
    assert got == expected(buf.adds, lo, buf.add_count, gap_follows=False, head_known=False)
    assert got[0]["partial"]


def test_runs_go_into_one_store(tmp_path):
    want = {}
    for run, first in (("1", 1), ("2", 100)):
        buf = LoggedBuffer(run_dir(tmp_path, run), capacity=10)
        play(buf, [4, 6, 5], first_label=first, every_cycle_logged=True)
        buf.log_final_buffer()
        want[run] = expected(buf.adds, 0, buf.add_count, gap_follows=False, head_known=True)
    summary = import_dqn_replay(tmp_path / "src", "Pong", tmp_path / "out",
                                num_actions=NUM_ACTIONS, runs=["2", "1"])
    # runs in the order given, each in time order
    assert stored(tmp_path / "out") == want["2"] + want["1"] and summary.runs == ["2", "1"]
    assert summary.episodes == 6


def _one_run(tmp_path):
    buf = LoggedBuffer(run_dir(tmp_path), capacity=10)
    play(buf, [6, 5, 8, 4], every_cycle_logged=True)
    assert buf.log_count >= 2
    return run_dir(tmp_path)


def _corrupt(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(("damage", "match"), [
    (lambda d: _corrupt(d / "$store$_observation_ckpt.1.gz"),
     r"observation_ckpt\.1\.gz: (truncated or corrupt|not a gzip)"),
    (lambda d: (d / "$store$_terminal_ckpt.0.gz").write_bytes(b"not gzip at all"),
     r"terminal_ckpt\.0\.gz: not a gzip"),
    (lambda d: gz_save(d / "$store$_action_ckpt.1.gz", np.zeros(7, np.int32)),
     r"action_ckpt\.1\.gz: shape \[7\] does not match"),
    (lambda d: gz_save(d / "$store$_observation_ckpt.0.gz", np.zeros((10, *HW), np.float32)),
     r"observation_ckpt\.0\.gz: holds float32"),
    (lambda d: gz_save(d / "$store$_reward_ckpt.0.gz", np.full(10, np.nan, np.float32)),
     r"reward_ckpt\.0\.gz: NaN"),
    (lambda d: gz_save(d / "$store$_action_ckpt.0.gz", np.full(10, 7, np.int32)),
     r"action_ckpt\.0\.gz: action 7 out of range"),
    (lambda d: gz_save(d / "add_count_ckpt.0.gz", np.array([1, 2], dtype=object)),
     r"add_count_ckpt\.0\.gz: (holds Python objects|not a gzip)"),
    (lambda d: (d / "$store$_reward_ckpt.1.gz").unlink(), r"reward_ckpt\.1\.gz: missing"),
])
def test_bad_files_fail_cleanly(tmp_path, damage, match):
    damage(_one_run(tmp_path))
    with pytest.raises(UserError, match=match):
        import_dqn_replay(tmp_path / "src", "Pong", tmp_path / "out", num_actions=NUM_ACTIONS)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_missing_checkpoint_in_range_and_bad_selection(tmp_path):
    _one_run(tmp_path)
    with pytest.raises(UserError, match=r"observation_ckpt\.7\.gz: missing"):
        import_dqn_replay(tmp_path / "src", "Pong", tmp_path / "out", num_actions=NUM_ACTIONS,
                          checkpoints=[0, 7])
    with pytest.raises(UserError, match="no run 9"):
        import_dqn_replay(tmp_path / "src", "Pong", tmp_path / "out", num_actions=NUM_ACTIONS,
                          runs=["9"])
    with pytest.raises(UserError, match="no such directory"):
        import_dqn_replay(tmp_path / "src", "Breakout", tmp_path / "out", num_actions=4)
    assert not (tmp_path / "out").exists()
