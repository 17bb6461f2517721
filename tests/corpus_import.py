"""Corpus: damaged DQN Replay files and Minari datasets, bad import options, bad outputs."""

from __future__ import annotations

import json

import numpy as np

from corpus_setup import (
    Case,
    Ctx,
    case,
    edit_hdf5,
    edit_minari_meta,
    gz_load,
    gz_save,
    minari_data,
    replace_dataset,
    replay_file,
    truncate,
    write,
)

DQN = ["data", "import", "dqn-replay", "{src}", "--game", "Pong", "--out", "{tmp}/o",
       "--checkpoints", "0-1"]


def gz_edit(name: str, fn, n: int = 0):
    def setup(ctx: Ctx) -> None:
        path = replay_file(ctx, name, n)
        gz_save(path, fn(gz_load(path).copy()))
    return setup


def slot(index: int, value: object):
    def fn(a: np.ndarray) -> np.ndarray:
        a[index] = value
        return a
    return fn


def gz_cut(name: str, keep: float = 0.5):
    return lambda c: truncate(replay_file(c, name), keep)


def gz_raw(name: str, data: bytes):
    return lambda c: write(replay_file(c, name), data)


def no_file(name: str):
    return lambda c: replay_file(c, name).unlink()


OBS, ACT, REW, TERM = ("$store$_observation", "$store$_action", "$store$_reward",
                       "$store$_terminal")
CASES: list[Case] = [
    case("dqn-obs-truncated-gzip", DQN, r"observation_ckpt\.0\.gz", gz_cut(OBS)),
    case("dqn-action-truncated-gzip", DQN, r"action_ckpt\.0\.gz", gz_cut(ACT, 0.7)),
    case("dqn-reward-not-gzip", DQN, r"reward_ckpt\.0\.gz", gz_raw(REW, b"not gzip at all")),
    case("dqn-terminal-empty", DQN, r"terminal_ckpt\.0\.gz", gz_raw(TERM, b"")),
    case("dqn-action-wrong-shape", DQN, r"action_ckpt\.0\.gz: shape \[9\]",
         gz_edit(ACT, lambda a: a[:9])),
    case("dqn-terminal-2d", DQN, r"terminal_ckpt\.0\.gz: shape \[10, 1\]",
         gz_edit(TERM, lambda a: a[:, None])),
    case("dqn-reward-int", DQN, r"reward_ckpt\.0\.gz: dtype int32 is not a reward",
         gz_edit(REW, lambda a: np.nan_to_num(a).astype(np.int32))),
    case("dqn-action-float", DQN, r"action_ckpt\.0\.gz: dtype float32 is not an? action",
         gz_edit(ACT, lambda a: a.astype(np.float32))),
    case("dqn-obs-2d", DQN, r"observation_ckpt\.0\.gz: holds uint8\[10, 6\]",
         gz_edit(OBS, lambda a: a.reshape(10, 6))),
    case("dqn-obs-float", DQN, r"observation_ckpt\.0\.gz: holds float32",
         gz_edit(OBS, lambda a: a.astype(np.float32))),
    case("dqn-add-count-array", DQN, r"add_count_ckpt\.0\.gz: expected an integer scalar",
         gz_edit("add_count", lambda a: np.array([1, 2]))),
    case("dqn-add-count-negative", DQN, r"negative add_count",
         gz_edit("add_count", lambda a: np.array(-5))),
    case("dqn-add-count-float", DQN, r"add_count_ckpt\.0\.gz: expected an integer scalar",
         gz_edit("add_count", lambda a: np.array(9.5))),
    case("dqn-action-missing", DQN, r"action_ckpt\.0\.gz: missing", no_file(ACT)),
    case("dqn-add-count-missing", DQN, r"add_count_ckpt\.0\.gz: missing", no_file("add_count")),
    case("dqn-action-pickled", DQN, r"action_ckpt\.0\.gz: holds Python objects",
         lambda c: gz_save(replay_file(c, ACT), np.array([object()] * 10, dtype=object))),
    case("dqn-action-out-of-range", DQN, r"action 9 out of range \[0, 6\)",
         gz_edit(ACT, slot(5, 9))),
    case("dqn-reward-nan", DQN, r"reward_ckpt\.0\.gz: NaN or infinite",
         gz_edit(REW, slot(5, np.nan))),
    case("dqn-reward-inf-second-file", DQN, r"reward_ckpt\.1\.gz: NaN or infinite",
         gz_edit(REW, slot(2, np.inf), n=1)),
    case("dqn-fraction-nan", [*DQN[:-2], "--fraction", "nan"], r"--fraction.*finite"),
    case("dqn-fraction-zero", [*DQN[:-2], "--fraction", "0"], r"fraction must be in \(0, 1\]"),
    case("dqn-fraction-big", [*DQN[:-2], "--fraction", "1.5"], r"fraction must be in \(0, 1\]"),
    case("dqn-fraction-negative", [*DQN[:-2], "--fraction", "-0.2"],
         r"fraction must be in \(0, 1\]"),
    case("dqn-fraction-text", [*DQN[:-2], "--fraction", "half"], r"--fraction"),
    case("dqn-jobs-zero", [*DQN, "--jobs", "0"], r"--jobs must be at least 1"),
    case("dqn-jobs-negative", [*DQN, "--jobs", "-2"], r"--jobs must be at least 1"),
    case("dqn-run-missing", [*DQN, "--runs", "7"], r"no run 7"),
    case("dqn-runs-empty", [*DQN, "--runs", ","], r"no runs"),
    case("dqn-runs-backwards", [*DQN, "--runs", "3-1"], r"end before start"),
    case("dqn-checkpoints-letters", [*DQN[:-1], "a-b"], r"bad checkpoint range"),
    case("dqn-checkpoint-missing", [*DQN[:-1], "5"], r"checkpoint 5"),
    case("dqn-checkpoints-empty", [*DQN[:-1], ","], r"no checkpoints"),
    case("dqn-game-unknown", [*DQN[:4], "--game", "frobnicate", *DQN[6:]],
         r"unknown atari game 'frobnicate'"),
    case("dqn-game-named-list", [*DQN[:4], "--game", "heldout5", *DQN[6:]], r"--game takes one"),
    case("dqn-games-comma", [*DQN[:4], "--games", ",", *DQN[6:]], r"no games"),
    case("dqn-games-empty", [*DQN[:4], "--games", "", *DQN[6:]], r"no games"),
    case("dqn-out-a-file", [*DQN[:6], "--out", "{tmp}/f", *DQN[8:]], r"not a directory",
         lambda c: write(c.tmp / "f", "x")),
    case("dqn-out-unwritable", [*DQN[:6], "--out", "{ro}/o", *DQN[8:]], r"scaledql-corpus|ro/o"),
    case("dqn-src-missing", ["data", "import", "dqn-replay", "{tmp}/nowhere", *DQN[4:]],
         r"no such directory"),
    case("dqn-src-a-file", ["data", "import", "dqn-replay", "{tmp}/f", *DQN[4:]],
         r"no such directory", lambda c: write(c.tmp / "f", "x")),
    case("dqn-game-in-use", DQN, r"T?o/Pong is in use by process \d+",
         lambda c: c.hold(c.tmp / "o" / ".Pong.lock")),
    case("dqn-already-there", DQN, r"already holds a dataset for Pong",
         lambda c: _published_pong(c)),
]


def _published_pong(ctx: Ctx) -> None:
    from scaledql.data.store.writer import GameWriter

    frames = np.zeros((3, 1, 2, 3), np.uint8)
    with GameWriter(ctx.tmp / "o", suite="atari", game="Pong", num_actions=6,
                    frame_shape=(1, 2, 3), stack=4) as w:
        w.add_episode(frames, np.zeros(2, int), np.zeros(2, np.float32), True, False)


MI = ["data", "import", "minari", "toy/breakout-v0", "--out", "{tmp}/o", "--game", "breakout"]


def meta(fn):
    return lambda c: edit_minari_meta(c, fn)


def meta_set(key: str, value: object):
    return meta(lambda m: m.__setitem__(key, value))


def space(key: str, value: dict):
    return meta_set(key, json.dumps(value))


def h5(fn):
    return lambda c: edit_hdf5(c, fn)


def ep(key: str, fn):
    return h5(lambda f: replace_dataset(f["episode_0"], key, fn(f["episode_0"][key][()])))


EVIL_SPEC = json.dumps({"id": "MinAtar/Breakout-v1", "entry_point": "os:system",
                        "kwargs": {"command": "touch /tmp/scaledql-corpus-pwned"},
                        "additional_wrappers": [], "vector_entry_point": None})
BOX = {"type": "Box", "dtype": "bool", "shape": [10, 10, 4], "low": False, "high": True}
CASES += [
    case("minari-missing-id", [*MI[:3], "nowhere/none-v0", *MI[4:]],
         r"cannot open Minari dataset 'nowhere/none-v0' locally", lambda c: c.mds()),
    case("minari-not-an-id", [*MI[:3], "no such thing", *MI[4:]], r"not a dataset id"),
    case("minari-no-metadata", MI, r"no metadata\.json",
         lambda c: (minari_data(c) / "metadata.json").unlink()),
    case("minari-metadata-not-json", MI, r"metadata\.json: unreadable",
         lambda c: write(minari_data(c) / "metadata.json", "{nope")),
    case("minari-metadata-list", MI, r"metadata\.json: not a JSON object", lambda c: write(
        minari_data(c) / "metadata.json", json.dumps([(minari_data(c) / "metadata.json")
                                                      .read_text()]))),
    case("minari-metadata-non-utf8", MI, r"metadata\.json: unreadable",
         lambda c: write(minari_data(c) / "metadata.json", b"\xff\xfe\x00")),
    case("minari-no-action-space-evil-spec", MI, r"metadata has no action_space",
         meta(lambda m: (m.pop("action_space"), m.__setitem__("env_spec", EVIL_SPEC)))),
    case("minari-no-observation-space", MI, r"metadata has no observation_space",
         meta(lambda m: m.pop("observation_space"))),
    case("minari-space-not-json", MI, r"action_space is not valid JSON",
         meta_set("action_space", "{oops")),
    case("minari-action-box", MI, r"action space 'Box' is not Discrete",
         space("action_space", {"type": "Box", "dtype": "float32", "shape": [2], "low": 0,
                                "high": 1})),
    case("minari-action-start-1", MI, r"start 0",
         space("action_space", {"type": "Discrete", "n": 3, "start": 1})),
    case("minari-action-n-zero", MI, r"1 <= n",
         space("action_space", {"type": "Discrete", "n": 0, "start": 0})),
    case("minari-action-n-string", MI, r"is not Discrete",
         space("action_space", {"type": "Discrete", "n": "3", "start": 0})),
    case("minari-obs-dict", MI, r"observation space of type 'Dict' is not supported",
         space("observation_space", {"type": "Dict", "subspaces": {}})),
    case("minari-obs-float", MI, r"dtype 'float32' is not supported",
         space("observation_space", {**BOX, "dtype": "float32"})),
    case("minari-obs-object-dtype", MI, r"dtype 'object' is not supported",
         space("observation_space", {**BOX, "dtype": "object"})),
    case("minari-obs-shape", MI, r"Box\(4,\) uint8 is not supported",
         space("observation_space", {**BOX, "dtype": "uint8", "shape": [4], "low": 0,
                                     "high": 1})),
    case("minari-obs-shape-huge", MI, r"shape .* is not supported",
         space("observation_space", {**BOX, "shape": [10**6, 10**6]})),
    case("minari-obs-bounds-mixed", MI, r"bounds must be one value",
         space("observation_space", {**BOX, "dtype": "uint8", "low": 0,
                                     "high": [[[1, 2, 1, 1]] * 10] * 10})),
    case("minari-data-format-arrow", MI, r"data format 'arrow' is not supported",
         meta_set("data_format", "arrow")),
    case("minari-no-episodes", MI, r"holds no episodes", meta_set("total_episodes", 0)),
    case("minari-total-episodes-string", MI, r"total_episodes must be a non-negative integer",
         meta_set("total_episodes", "2")),
    case("minari-episode-missing", MI, r"episode 2 is missing", meta_set("total_episodes", 3)),
    case("minari-no-terminations", MI, r"episode 0 has no terminations array",
         h5(lambda f: f["episode_0"].__delitem__("terminations"))),
    case("minari-no-observations", MI, r"episode 0 has no observations array",
         h5(lambda f: f["episode_0"].__delitem__("observations"))),
    case("minari-obs-length-mismatch", MI,
         r"observations have shape \(3, 10, 10, 4\), expected \(4, 10, 10, 4\)",
         ep("observations", lambda o: o[:-1])),
    case("minari-rewards-length-mismatch", MI, r"rewards has shape \(2,\)",
         ep("rewards", lambda r: r[:-1])),
    case("minari-truncations-2d", MI, r"truncations has shape \(3, 2\)",
         ep("truncations", lambda t: np.stack([t, t], 1))),
    case("minari-actions-scalar", MI, r"actions have shape \(\), expected one per step",
         ep("actions", lambda a: np.int64(1))),
    case("minari-actions-float", MI, r"actions have dtype float64",
         ep("actions", lambda a: a.astype(np.float64))),
    case("minari-rewards-strings", MI, r"rewards have dtype",
         ep("rewards", lambda r: np.array([b"a"] * len(r)))),
    case("minari-actions-out-of-range", MI, r"action 7 out of range \[0, 3\)",
         ep("actions", lambda a: np.where(np.arange(len(a)) == 1, 7, a))),
    case("minari-rewards-nan", MI, r"rewards contain NaN",
         ep("rewards", lambda r: np.where(np.arange(len(r)) == 0, np.nan, r))),
    case("minari-terminated-mid-episode", MI, r"terminations set at step 0, before",
         ep("terminations", lambda t: np.ones_like(t))),
    case("minari-obs-wrong-dtype", MI, r"observations have dtype uint8",
         ep("observations", lambda o: o.astype(np.uint8))),
    case("minari-hdf5-truncated", MI, r"main_data\.hdf5: not a readable HDF5",
         lambda c: truncate(minari_data(c) / "main_data.hdf5", 0.5)),
    case("minari-hdf5-garbage", MI, r"main_data\.hdf5: not a readable HDF5",
         lambda c: write(minari_data(c) / "main_data.hdf5", b"\0" * 100)),
    case("minari-hdf5-missing", MI, r"no main_data\.hdf5",
         lambda c: (minari_data(c) / "main_data.hdf5").unlink()),
    case("minari-cells-255-in-01-box", MI, r"MinAtar grid values must be 0 or 1",
         lambda c: _uint8_grids(c, high=1, values=(0, 255))),
    case("minari-game-unknown", [*MI[:-1], "frobnicate"], r"unknown minatar game 'frobnicate'",
         lambda c: c.mds()),
    case("minari-game-list", [*MI[:-1], "all"], r"--game takes one minatar game",
         lambda c: c.mds()),
    case("minari-no-game", MI[:-2], r"cannot tell the game", lambda c: c.mds()),
    case("minari-game-from-evil-spec", MI[:-2], r"unknown minatar game 'Pong'",
         meta_set("env_spec", json.dumps({"id": "ALE/Pong-v5", "entry_point": "os:system"}))),
    case("minari-out-a-file", [*MI[:4], "--out", "{tmp}/f", *MI[6:]], r"not a directory",
         lambda c: (c.mds(), write(c.tmp / "f", "x"))),
    case("minari-out-unwritable", [*MI[:4], "--out", "{ro}/o", *MI[6:]], r"scaledql-corpus|ro",
         lambda c: c.mds()),
    case("minari-game-in-use", MI, r"o/breakout is in use by process \d+",
         lambda c: (c.mds(), c.hold(c.tmp / "o" / ".breakout.lock"))),
    case("minari-already-imported", MI, r"already holds a dataset for breakout",
         lambda c: _import_once(c)),
]


def _uint8_grids(ctx: Ctx, high: int, values: tuple[int, int]) -> None:
    edit_minari_meta(ctx, lambda m: m.__setitem__("observation_space", json.dumps(
        {**BOX, "dtype": "uint8", "low": 0, "high": high})))
    edit_hdf5(ctx, lambda f: replace_dataset(
        f["episode_0"], "observations",
        np.where(f["episode_0"]["observations"][()], values[1], values[0]).astype(np.uint8)))


def _import_once(ctx: Ctx) -> None:
    from scaledql.data.importers.minari_io import import_minari

    ctx.mds()
    import_minari("toy/breakout-v0", ctx.tmp / "o", game="breakout")
