"""Corpus: what fuzzing the readers found (``benchmarks/fuzz_readers.py``, ``fuzz_cases.py``),
and stores whose *contents* are damaged (issue 21), refused by every command that learns from
or scores the data — ``train``, ``finetune offline``, ``data card``, ``data export minari`` —
before anything is created; and Minari datasets whose ``scaledql`` export block is damaged."""

from __future__ import annotations

import gzip
import io

import numpy as np

from corpus_commands import TRAIN
from corpus_import import DQN
from corpus_setup import (
    Case,
    Ctx,
    case,
    edit_json,
    manifest,
    replay_file,
    rewrite_npy,
    shard,
    write,
)
from corpus_store import CONTENT_DAMAGE, EXPORT, INFO


def npy_with_header(text: str, data: bytes = b"", version: int = 1) -> bytes:
    """A ``.npy`` file's bytes with ``text`` as its header, as a damaged file may hold."""
    body = text.encode("latin1") + b"\n"
    size = len(body).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + size + body + data


def gz_header(name: str, text: str, n: int = 0):
    """Checkpoint ``n``'s ``name`` file, its array header replaced by ``text``."""
    def setup(ctx: Ctx) -> None:
        path = replay_file(ctx, name, n)
        with gzip.open(path) as f:
            raw = f.read()
        buf = io.BytesIO(raw)
        np.lib.format.read_magic(buf)
        np.lib.format.read_array_header_1_0(buf)
        with gzip.open(path, "wb") as f:
            f.write(npy_with_header(text, raw[buf.tell():]))
    return setup


def store_header(name: str, text: str):
    def setup(ctx: Ctx) -> None:
        path = shard(ctx) / f"{name}.npy"
        data = path.read_bytes()
        buf = io.BytesIO(data)
        np.lib.format.read_magic(buf)
        np.lib.format.read_array_header_1_0(buf)
        write(path, npy_with_header(text, data[buf.tell():]))
    return setup


def step_actions(value: int, every: int = 1, game: str = "breakout"):
    """Every ``every``-th step's action of ``game`` set to ``value`` (the frames that are not
    steps keep their zeros), as the issue's users damaged their stores."""
    def setup(ctx: Ctx) -> None:
        d = shard(ctx, game)
        starts, lengths = np.load(d / "ep_frame_start.npy"), np.load(d / "ep_length.npy")
        steps = np.concatenate([np.arange(s, s + t) for s, t in zip(starts, lengths,
                                                                     strict=True)])

        def fn(a: np.ndarray) -> np.ndarray:
            a[steps[::every]] = value
            return a
        rewrite_npy(d / "actions.npy", fn)
    return setup


def compressed_store(ctx: Ctx) -> None:
    from scaledql.data.store.compress import compress_dataset

    compress_dataset(ctx.store(), ctx.tmp / "z", None, level=1, block_frames=64)


NEST = "[" * 5000 + "]" * 5000
UNCLOSED = "{'descr': '<i8', 'fortran_order': False, 'shape': (4,"
LONG = "{'descr': '<i8', 'fortran_order': False, 'shape': (4,)}" + " " * 10_050

CASES: list[Case] = [
    # found by fuzzing: each was a traceback (or an unbounded allocation) before
    case("fuzz-manifest-nested-too-deep", INFO, r"manifest\.json: unreadable manifest",
         lambda c: write(manifest(c), NEST)),
    case("fuzz-store-npy-header-unclosed", INFO, r"actions\.npy: corrupt array file",
         store_header("actions", UNCLOSED)),
    case("fuzz-store-npy-header-too-long", INFO, r"actions\.npy: corrupt array file",
         store_header("actions", LONG)),
    case("fuzz-dqn-npy-header-unclosed", DQN, r"add_count_ckpt\.0\.gz: not a gzip-compressed",
         gz_header("add_count", UNCLOSED)),
    case("fuzz-dqn-npy-header-too-long", DQN, r"reward_ckpt\.0\.gz: not a gzip-compressed "
         r"\.npy array \(bad \.npy header", gz_header("$store$_reward", LONG)),
    case("fuzz-dqn-add-count-header-huge", DQN, r"add_count_ckpt\.0\.gz: its header claims",
         gz_header("add_count", "{'descr': '<i4', 'fortran_order': False, "
                                "'shape': (6318998235,)}")),
    case("fuzz-dqn-add-count-negative-dimension", DQN, r"add_count_ckpt\.0\.gz: .*negative "
         r"dimension", gz_header("add_count", "{'descr': '<i4', 'fortran_order': False, "
                                              "'shape': (-1,)}")),
    case("fuzz-dqn-action-header-huge", DQN, r"action_ckpt\.0\.gz: shape \[1000000000000\] "
         r"does not match", gz_header("$store$_action", f"{{'descr': '<i4', 'fortran_order': "
                                                       f"False, 'shape': ({10**12},)}}")),
    case("fuzz-minari-metadata-nested-too-deep", ["data", "import", "minari", "toy/breakout-v0",
                                                  "--out", "{tmp}/o", "--game", "breakout"],
         r"metadata\.json: unreadable",
         lambda c: write(c.mds() / "toy" / "breakout-v0" / "data" / "metadata.json", NEST)),
]

# Damaged contents: `train` refuses before the run folder exists (the harness checks that no
# file or folder appeared), as does every other command that learns from the data.
for name, setup, expect in CONTENT_DAMAGE:
    if name != "minatar-cells-0-1":  # frames: data verify reads them, training never does
        CASES.append(case(f"train-{name}", TRAIN, expect, setup))
CASES += [
    case("train-actions-beyond-the-game", TRAIN, r"breakout/shard_00000/actions\.npy: action 9 "
         r"at frame \d+ is out of range \[0, 3\)", step_actions(9)),
    # asterix has 5 actions: breakout's 4 fits the padded head, silent garbage before
    case("train-actions-of-the-other-game", TRAIN, r"breakout/shard_00000/actions\.npy: "
         r"action 4 at frame \d+ is out of range \[0, 3\)", step_actions(4, every=2)),
    case("train-compressed-without-resident-gb", [*TRAIN[:2], "{tmp}/z", *TRAIN[3:]],
         r"compressed: sample them through the resident pool", compressed_store),
    case("card-action-out-of-range", ["data", "card", "{store}"], r"action 7 at frame 1",
         CONTENT_DAMAGE[0][1]),
    case("export-action-out-of-range", EXPORT, r"action 7 at frame 1 is out of range",
         CONTENT_DAMAGE[0][1]),
    case("export-reward-nan", EXPORT, r"reward nan at frame 2", CONTENT_DAMAGE[3][1]),
]


def unseen_game_store(ctx: Ctx) -> None:
    """freeway (a game the pretrained run never saw), its actions then damaged."""
    from scaledql.data.store.writer import GameWriter

    with GameWriter(ctx.tmp / "ft", suite="minatar", game="freeway", num_actions=3,
                    frame_shape=(10, 10, 10), stack=1) as w:
        w.add_episode(np.zeros((5, 10, 10, 10), np.uint8), np.arange(4) % 3,
                      np.ones(4, np.float32), True, False)
    rewrite_npy(ctx.tmp / "ft" / "freeway" / "shard_00000" / "actions.npy",
                lambda a: np.where(np.arange(len(a)) == 2, 8, a).astype(np.int32))


CASES.append(case("finetune-offline-actions-out-of-range",
                  ["finetune", "offline", "--from", "{run}", "--data", "{tmp}/ft", "--out",
                   "{tmp}/ftout", "--steps", "1", "--no-progress", "--device", "cpu"],
                  r"freeway/shard_00000/actions\.npy: action 8 at frame 2", unseen_game_store))


# Minari datasets exported by scaledql carry a `scaledql` block; a damaged one is refused.
EXPORTED = "{tmp}/mx/scaledql/breakout-v0"
MI_EXPORTED = ["data", "import", "minari", EXPORTED, "--out", "{tmp}/o"]


def exported(edit=None):
    def setup(ctx: Ctx) -> None:
        from scaledql.data.importers.minari_io import export_minari

        export_minari(ctx.store(), "breakout", "scaledql/breakout-v0", out=ctx.tmp / "mx")
        if edit is not None:
            edit_json(ctx.tmp / "mx" / "scaledql" / "breakout-v0" / "data" / "metadata.json",
                      edit)
    return setup


def block(key: str, value: object):
    return exported(lambda m: m["scaledql"].__setitem__(key, value))


CASES += [
    case("import-minari-game-not-the-exported", [*MI_EXPORTED, "--game", "asterix"],
         r"--game asterix, but the dataset was exported from breakout", exported()),
    case("import-minari-block-not-a-table", MI_EXPORTED, r"scaledql entry is not",
         exported(lambda m: m.__setitem__("scaledql", "breakout"))),
    case("import-minari-block-version", MI_EXPORTED, r"scaledql export version 2",
         block("version", 2)),
    case("import-minari-block-game-unknown", MI_EXPORTED, r"'pong' is not a minatar game",
         block("game", "pong")),
    case("import-minari-block-suite-atari", MI_EXPORTED, r"'breakout' is not a atari game",
         block("suite", "atari")),
    case("import-minari-block-stack", MI_EXPORTED, r"stack 2.*MinAtar stores have stack 1",
         block("stack", 2)),
    case("import-minari-block-channels", MI_EXPORTED, r"scaledql\.frame_channels must be",
         block("frame_channels", 11)),
    case("import-minari-block-channels-too-few", MI_EXPORTED, r"says 2 channels",
         block("frame_channels", 2)),
    case("import-minari-block-shards-sum", MI_EXPORTED, r"scaledql\.shard_episodes must",
         block("shard_episodes", [1])),
    case("import-minari-block-partial-start", MI_EXPORTED, r"scaledql\.partial_start must",
         block("partial_start", [99])),
    case("import-minari-block-env-options", MI_EXPORTED, r"scaledql\.env_options\.sticky",
         block("env_options", {"sticky": 2})),
    case("import-minari-block-env-options-key", MI_EXPORTED, r"scaledql\.env_options must",
         block("env_options", {"frameskip": 4})),
    case("import-minari-block-origin", MI_EXPORTED, r"scaledql\.origin must be a table",
         block("origin", [1])),
    case("import-minari-block-action-set", MI_EXPORTED, r"scaledql\.action_set must",
         block("action_set", 3)),
    # without the block, the game comes from env_spec's id: one nested too deep names none
    case("import-minari-env-spec-nested-too-deep", MI_EXPORTED, r"cannot tell the game",
         exported(lambda m: (m.pop("scaledql"), m.__setitem__("env_spec", NEST)))),
]
