"""Corpus: damaged game stores, through ``data info`` / ``data verify`` / ``data card`` /
``train`` / ``data export minari``."""

from __future__ import annotations

import shutil

import numpy as np

from corpus_setup import (
    Case,
    Ctx,
    case,
    edit_json,
    manifest,
    rewrite_npy,
    set_header,
    shard,
    truncate,
    write,
)

INFO = ["data", "info", "{store}"]
VERIFY = ["data", "verify", "{store}"]


def m_set(key: str, value: object, game: str = "breakout"):
    def setup(ctx: Ctx) -> None:
        edit_json(manifest(ctx, game), lambda m: m.__setitem__(key, value))
    return setup


def m_del(key: str):
    def setup(ctx: Ctx) -> None:
        edit_json(manifest(ctx), lambda m: m.pop(key))
    return setup


def counts_set(key: str, value: object):
    def setup(ctx: Ctx) -> None:
        edit_json(manifest(ctx), lambda m: m["counts"].__setitem__(key, value))
    return setup


def shard_set(key: str, value: object):
    def setup(ctx: Ctx) -> None:
        edit_json(manifest(ctx), lambda m: m["shards"][0].__setitem__(key, value))
    return setup


def npy(name: str, fn):
    def setup(ctx: Ctx) -> None:
        rewrite_npy(shard(ctx) / f"{name}.npy", fn)
    return setup


def at(index: int, value: object):
    def fn(a: np.ndarray) -> np.ndarray:
        a[index] = value
        return a
    return fn


def header(name: str, **changes):
    def setup(ctx: Ctx) -> None:
        set_header(shard(ctx) / f"{name}.npy", **changes)
    return setup


def cut(name: str, keep: float = 0.5):
    def setup(ctx: Ctx) -> None:
        truncate(shard(ctx) / f"{name}.npy", keep)
    return setup


def huge_frames(ctx: Ctx) -> None:
    """A header and a manifest that both claim 10^12 frames (the file holds a few)."""
    def edit(m: dict) -> None:
        m["shards"][0]["frames"] = 10**12
        m["counts"]["frames"] = 10**12 + sum(s["frames"] for s in m["shards"][1:])

    edit_json(manifest(ctx), edit)
    set_header(shard(ctx) / "frames.npy", shape=(10**12, 10, 10, 10))


def shard_name(name: str):
    def setup(ctx: Ctx) -> None:
        ctx.store()
        (ctx.tmp / "outside").mkdir(exist_ok=True)
        shutil.copytree(shard(ctx), ctx.tmp / "outside" / "shard_00000")
        edit_json(manifest(ctx), lambda m: m["shards"][0].__setitem__(
            "name", name.replace("{tmp}", str(ctx.tmp))))
    return setup


def rename_game(ctx: Ctx) -> None:
    store = ctx.store()
    (store / "breakout").rename(store / "frobnicate")
    edit_json(store / "frobnicate" / "manifest.json", lambda m: m.__setitem__("game", "frobnicate"))


def dir_mismatch(ctx: Ctx) -> None:
    edit_json(manifest(ctx), lambda m: m.__setitem__("game", "asterix"))


def ep_table(name: str, fn):
    return npy(name, fn)


def legacy_cells(ctx: Ctx) -> None:  # a store imported before 0/255 was the convention
    rewrite_npy(shard(ctx) / "frames.npy", lambda f: (f // 255).astype(np.uint8))


def swap_returns(ctx: Ctx) -> None:
    edit_json(manifest(ctx), lambda m: m.__setitem__(
        "episode_returns", [r + 1.0 for r in m["episode_returns"]]))


STORE_DAMAGE: list[tuple[str, object, str]] = [
    # (name, setup, what the error line must say) — caught by the cheap checks on open
    ("manifest-not-json", lambda c: write(manifest(c), "{not json"), r"unreadable manifest"),
    ("manifest-a-list", lambda c: write(manifest(c), "[1, 2]"), r"not a scaledql game-store"),
    ("manifest-non-utf8", lambda c: write(manifest(c), b"\xff\xfe{}"), r"unreadable manifest"),
    ("manifest-empty", lambda c: write(manifest(c), ""), r"unreadable manifest"),
    ("schema-wrong", m_set("schema", "other"), r"not a scaledql game-store"),
    ("schema-version-2", m_set("schema_version", 2), r"schema version 2"),
    ("no-num-actions", m_del("num_actions"), r"lacks num_actions"),
    ("no-shards", m_del("shards"), r"lacks shards"),
    ("num-actions-string", m_set("num_actions", "3"), r"num_actions must be an integer"),
    ("num-actions-zero", m_set("num_actions", 0), r"num_actions must be an integer"),
    ("num-actions-bool", m_set("num_actions", True), r"num_actions must be an integer"),
    ("num-actions-float", m_set("num_actions", 3.0), r"num_actions must be an integer"),
    ("frame-shape-2d", m_set("frame_shape", [10, 10]), r"frame_shape must be 3 positive"),
    ("frame-shape-strings", m_set("frame_shape", ["10", "10", "10"]),
     r"frame_shape must be 3 positive"),
    ("frame-shape-huge", m_set("frame_shape", [10**6, 10**6, 10]),
     r"frame_shape must be 3 positive"),
    ("stack-zero", m_set("stack", 0), r"stack must be an integer"),
    ("stack-string", m_set("stack", "1"), r"stack must be an integer"),
    ("rewards-clipped-string", m_set("rewards_clipped", "no"), r"rewards_clipped must be"),
    ("provenance-string", m_set("provenance", "x"), r"provenance must be a table"),
    ("counts-string", m_set("counts", "x"), r"counts must be a table"),
    ("counts-transitions-string", counts_set("transitions", "9"),
     r"counts\.transitions must be an integer"),
    ("counts-transitions-negative", counts_set("transitions", -1),
     r"counts\.transitions must be an integer"),
    ("counts-transitions-wrong", counts_set("transitions", 1), r"counts say 1"),
    ("counts-frames-wrong", counts_set("frames", 3), r"counts\.frames is 3"),
    ("returns-strings", m_set("episode_returns", ["a", "b"]), r"episode_returns must be a list"),
    ("returns-nan", lambda c: write(manifest(c), manifest(c).read_text().replace(
        '"episode_returns": [', '"episode_returns": [NaN, ')), r"episode_returns must be"),
    ("returns-count", m_set("episode_returns", [1.0]), r"1 episode returns for counts"),
    ("shards-empty", m_set("shards", []), r"shards must be a non-empty list"),
    ("shards-string", m_set("shards", "shard_00000"), r"shards must be a non-empty list"),
    ("shard-not-table", m_set("shards", [3]), r"shards\[0\] must be a table"),
    ("shard-path-dotdot", shard_name("../outside/shard_00000"), r"shards\[0\]\.name must be"),
    ("shard-path-absolute", shard_name("{tmp}/outside/shard_00000"), r"shards\[0\]\.name must be"),
    ("shard-name-duplicate", lambda c: edit_json(manifest(c), lambda m: m["shards"].append(
        dict(m["shards"][0]))), r"shards\[1\]\.name must be a distinct"),
    ("shard-frames-string", shard_set("frames", "20"), r"shards\[0\]\.frames must be"),
    ("shard-frames-negative", shard_set("frames", -1), r"shards\[0\]\.frames must be"),
    ("shard-transitions-beyond", shard_set("transitions", 10**6), r"shards\[0\]\.transitions"),
    ("shard-dir-missing", lambda c: shutil.rmtree(shard(c)), r"missing shard directory"),
    ("game-not-canonical", rename_game, r"'frobnicate' is not a minatar game"),
    ("game-dir-mismatch", dir_mismatch, r"its directory is named 'breakout'"),
    ("suite-unknown", m_set("suite", "nes"), r"unknown suite 'nes'"),
    ("frames-truncated", cut("frames"), r"frames\.npy: truncated"),
    ("frames-trailing-bytes", lambda c: write(shard(c) / "frames.npy", (
        shard(c) / "frames.npy").read_bytes() + b"\0" * 1000), r"frames\.npy: has trailing"),
    ("actions-truncated", cut("actions", 0.9), r"actions\.npy: truncated"),
    ("rewards-empty-file", lambda c: write(shard(c) / "rewards.npy", b""),
     r"rewards\.npy: corrupt array"),
    ("rewards-text", lambda c: write(shard(c) / "rewards.npy", "hello"),
     r"rewards\.npy: corrupt array"),
    ("actions-int64", npy("actions", lambda a: a.astype(np.int64)), r"actions\.npy: holds int64"),
    ("actions-missing", lambda c: (shard(c) / "actions.npy").unlink(), r"actions\.npy: missing"),
    ("actions-is-a-dir", lambda c: ((shard(c) / "actions.npy").unlink(),
                                    (shard(c) / "actions.npy").mkdir()), r"actions\.npy"),
    ("rewards-pickled", lambda c: np.save(shard(c) / "rewards.npy", np.array(
        [object()] * 3, dtype=object), allow_pickle=True), r"rewards\.npy: holds object"),
    ("frames-fortran", header("frames", fortran_order=True), r"Fortran-order"),
    ("frames-header-huge", huge_frames, r"frames\.npy: truncated"),
    ("frames-header-shape", header("frames", shape=(3, 10, 10, 10)), r"frames\.npy: holds uint8"),
    ("returns-to-go-big-endian", npy("returns_to_go", lambda a: a.astype(">f4")),
     r"returns_to_go\.npy: holds >f4"),
    ("ep-start-not-monotone", ep_table("ep_frame_start", lambda a: a[::-1].copy()),
     r"ep_frame_start\[0\]"),
    ("ep-length-beyond", ep_table("ep_length", at(0, 10**6)), r"episode 0 has length"),
    ("ep-length-negative", ep_table("ep_length", at(0, -2)), r"episode 0 has length -2"),
    ("ep-offset-wrong", ep_table("ep_step_offset", at(1, 0)), r"ep_step_offset\[1\]"),
    ("ep-flags-both", ep_table("ep_flags", at(0, 3)), r"episode 0 has flags 3"),
    ("ep-flags-unknown-bit", ep_table("ep_flags", at(0, 9)), r"episode 0 has flags 9"),
    ("ep-length-shorter", ep_table("ep_length", at(0, 1)), r"ep_frame_start\[1\]"),
]

CONTENT_DAMAGE: list[tuple[str, object, str]] = [
    # found by the full scan (``data verify``) only
    ("action-out-of-range", npy("actions", at(1, 7)), r"action 7 at frame 1 is out of range"),
    ("action-negative", npy("actions", at(2, -1)), r"action -1 at frame 2 is out of range"),
    ("reward-inf", npy("rewards", at(1, np.inf)), r"reward inf at frame 1 is not finite"),
    ("reward-nan", npy("rewards", at(2, np.nan)), r"reward nan at frame 2 is not finite"),
    ("action-on-final-frame", npy("actions", at(5, 1)), r"frame 5 is a sentinel or final"),
    ("reward-on-sentinel", npy("rewards", at(0, 1.0)), r"frame 0 is a sentinel or final"),
    ("return-to-go-wrong", npy("returns_to_go", at(1, 99.0)), r"returns_to_go\.npy: frame 1"),
    ("ep-return-wrong", npy("ep_return", at(0, 99.0)), r"ep_return\.npy: episode 0"),
    ("manifest-returns-wrong", swap_returns, r"episode_returns do not match"),
    ("counts-terminated-wrong", counts_set("terminated", 2), r"counts\.terminated is 2"),
    ("counts-unfinished-wrong", counts_set("unfinished", 0), r"counts\.unfinished is 0"),
    ("minatar-cells-0-1", legacy_cells, r"values other than 0 and 255"),
    ("sentinel-frame-set", npy("frames", at(0, 255)), r"sentinel frame 0 is not all zeros"),
]

CASES: list[Case] = []
for name, setup, expect in STORE_DAMAGE:
    CASES.append(case(f"info-{name}", INFO, expect, setup))
for name, setup, expect in STORE_DAMAGE[::4]:  # the same checks guard every reader
    CASES.append(case(f"verify-{name}", VERIFY, expect, setup))
for name, setup, expect in STORE_DAMAGE[2::7]:
    CASES.append(case(f"card-{name}", ["data", "card", "{store}"], expect, setup))
for name, setup, expect in CONTENT_DAMAGE:
    CASES.append(case(f"verify-{name}", VERIFY, expect, setup))

TRAIN = ["train", "--data", "{store}", "--out", "{tmp}/newrun", "--steps", "2", "--encoder",
         "nature", "--width", "0.25", "--feature-dim", "8", "--batch-size", "4",
         "--eval-every", "0", "--eval-episodes", "1", "--no-progress", "--device", "cpu"]
for name in ("shard-path-dotdot", "frames-truncated", "frames-fortran", "frames-header-huge",
             "ep-offset-wrong", "ep-start-not-monotone", "game-not-canonical", "actions-int64"):
    _, setup, expect = next(d for d in STORE_DAMAGE if d[0] == name)
    CASES.append(case(f"train-{name}", TRAIN, expect, setup))

CASES.append(case("train-num-actions-not-the-games", TRAIN, r"the store has 4 actions, minatar "
                  r"breakout as configured has 3", m_set("num_actions", 4)))

EXPORT = ["data", "export", "minari", "{store}", "--game", "breakout", "--dataset-id",
          "scaledql/breakout-v0"]
CASES += [
    case("info-missing-dir", ["data", "info", "{tmp}/nowhere"], r"does not exist"),
    case("info-a-file", ["data", "info", "{tmp}/f"], r"T?f is not a directory",
         lambda c: write(c.tmp / "f", "x")),
    case("info-empty-dir", ["data", "info", "{tmp}/e"], r"holds no game stores",
         lambda c: (c.tmp / "e").mkdir()),
    case("info-unknown-game", [*INFO, "--games", "frobnicate"], r"no complete game store"),
    case("info-games-empty", [*INFO, "--games", ","], r"no games"),
    case("verify-missing-dir", ["data", "verify", "{tmp}/nowhere"], r"does not exist"),
    case("verify-unknown-game", [*VERIFY, "--games", "pong"], r"no complete game store for pong"),
    case("card-missing-dir", ["data", "card", "{tmp}/nowhere"], r"does not exist"),
    case("card-unwritable", ["data", "card", "{store}"], r"DATACARD\.md",
         lambda c: (c.store() / "DATACARD.md").mkdir()),
    case("export-bad-id", [*EXPORT[:-1], "no id"], r"bad Minari dataset id"),
    case("export-id-traversal", [*EXPORT[:-1], "../../x-v0"], r"bad Minari dataset id"),
    case("export-missing-store", ["data", "export", "minari", "{tmp}/nowhere", "--game",
                                  "breakout", "--dataset-id", "a/b-v0"], r"does not exist"),
    case("export-unknown-game", [*EXPORT[:4], "--game", "pong", *EXPORT[6:]],
         r"no complete game store for pong"),
    case("export-exists", EXPORT, r"already exists",
         lambda c: (c.tmp / "mds" / "scaledql" / "breakout-v0").mkdir(parents=True)),
    case("export-id-in-use", EXPORT, r"breakout-v0 is in use by process \d+",
         lambda c: c.hold(c.tmp / "mds" / ".scaledql__breakout-v0.export.lock")),
    case("export-damaged-store", EXPORT, r"frames\.npy: truncated", cut("frames")),
    case("export-legacy-cells", EXPORT, r"values other than 0 and 255", legacy_cells),
    case("export-datasets-path-file", EXPORT, r"not a directory",
         lambda c: write(c.tmp / "mds", "x")),
]


def tiny_frames_store(ctx: Ctx) -> None:
    """A MinAtar-suite store whose frames are not MinAtar's 10x10 grids."""
    from scaledql.data.store.writer import GameWriter

    with GameWriter(ctx.tmp / "odd", suite="minatar", game="breakout", num_actions=3,
                    frame_shape=(1, 2, 2), stack=1) as w:
        w.add_episode(np.zeros((3, 1, 2, 2), np.uint8), np.zeros(2, int), np.zeros(2, np.float32),
                      True, False)


CASES.append(case("export-odd-frames", ["data", "export", "minari", "{tmp}/odd", "--game",
                                        "breakout", "--dataset-id", "a/b-v0"],
                  r"only Atari .* and MinAtar .* stores can be exported", tiny_frames_store))
