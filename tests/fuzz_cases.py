"""Fuzz targets for the readers of untrusted data: game-store manifests, ``.npy`` headers and
contents, DQN Replay ``.gz`` checkpoint files, Minari datasets (metadata and HDF5), RL
Unplugged / TFDS episode files (``fuzz_rlu``).

Each target is a Hypothesis strategy of damage (``Damage``: what to change, in which file) and
a ``run_*`` function that applies it to a fresh copy of a valid input and reads it the way the
CLI does. The contract, checked for every case (``Outcome``):

* the reader either refuses with one ``UserError`` or reads correctly: whatever it opened or
  published passes the full scan (``verify_game`` with frames) and a sampler draws batches
  whose actions are within each game's action count and whose rewards are finite;
* no other exception, and no hang (``time_limit``: ``Hang`` after ``LIMIT_S`` seconds);
* nothing is written outside the output folder, and a refused import publishes nothing.

``tests/test_fuzz_readers.py`` runs a few hundred cases of each; ``benchmarks/fuzz_readers.py``
runs ten thousand and more. A damage that broke the contract is added to the hardening corpus
(``tests/corpus_fuzz.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gzip
import io
import json
import os
import shutil
import signal
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from fuzz_damage import (
    Damage,
    apply_bytes,
    apply_json,
    apply_npy,
    damage,
    json_damage,
    json_values,
    npy_damage,
    npy_header_bytes,
    npy_header_text,
    npy_offset,
    text_damage,
)
from scaledql.errors import UserError

LIMIT_S = 60  # a case this slow on a 2-core VM under load is a hang

# ------------------------------------------------------------------------------------------------
# The contract


class Hang(BaseException):
    """A case ran past ``LIMIT_S`` (a BaseException, so no reader's ``except`` swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: int = LIMIT_S) -> Iterator[None]:
    def on_alarm(signum, frame):
        raise Hang(f"no answer after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple[int, int, int]]:
    """(size, mtime_ns, mode) of every file and folder under ``root`` but ``skip``."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        if skip is not None:
            dirs[:] = [d for d in dirs if Path(dirpath, d) != skip]
        for name in dirs + files:
            p = Path(dirpath, name)
            if p == skip:
                continue
            st_ = p.lstat()
            out[str(p.relative_to(root))] = (st_.st_size, st_.st_mtime_ns, st_.st_mode)
    return out


@dataclass
class Outcome:
    refused: bool
    message: str = ""


def outcome_of(work: Path, out: Path | None, fn: Callable[[], None]) -> Outcome:
    """Run ``fn`` under the contract: a ``UserError`` is a refusal, any other exception (or a
    hang) propagates, and nothing under ``work`` but ``out`` may change."""
    before = snapshot(work, out)
    try:
        with time_limit(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
        result = Outcome(False)
    except UserError as exc:  # the CLI prints it as one line, whatever it holds
        assert str(exc).strip(), "an empty error"
        result = Outcome(True, str(exc))
    after = snapshot(work, out)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"written outside the output: {changed}"
    if result.refused and out is not None and out.is_dir():
        from scaledql.data.store.dataset import list_games

        assert not list_games(out), f"refused, but published {list_games(out)}"
    return result


def read_correctly(root: Path, *, frames: bool = True) -> None:
    """What a correct read promises: the full scan passes and batches are sane."""
    from scaledql.data.sampling.sampler import TrajectorySampler, TransitionSampler
    from scaledql.data.store.dataset import open_dataset
    from scaledql.data.store.validate import verify_game

    ds = open_dataset(root, contents=True)
    for name in ds.games:
        verify_game(ds.game(name), frames=frames)
    actions = np.array([ds.game(g).num_actions for g in ds.games])
    for sampler in (TransitionSampler(ds, ds.games, batch_size=8, n_step=3, seed=0),
                    TrajectorySampler(ds, ds.games, batch_size=4, length=2, seed=0)):
        for _ in range(2):
            b = sampler.sample()
            limit = actions[b.game_id].reshape(-1, *([1] * (b.action.ndim - 1)))
            assert ((b.action >= 0) & (b.action < limit)).all(), "an action out of range"
            assert np.isfinite(b.reward).all(), "a reward not finite"


# ------------------------------------------------------------------------------------------------
# Valid inputs, built once per process


_ROOT = Path(tempfile.mkdtemp(prefix="scaledql-fuzz-"))
atexit.register(shutil.rmtree, _ROOT, True)
set_hypothesis_home_dir(str(_ROOT / "hypothesis"))  # Hypothesis's caches: not in the clone


@functools.cache
def base_store() -> Path:
    """Two MinAtar games: breakout in two shards (terminated, truncated, unfinished episodes),
    seaquest in one."""
    from scaledql.data.store.writer import GameWriter

    root = _ROOT / "store"
    rng = np.random.default_rng(0)
    for game, n, eps in (("breakout", 3, ((4, 1), (3, 2), (5, 1), (2, 0))),
                         ("seaquest", 6, ((6, 1), (3, 0)))):
        with GameWriter(root, suite="minatar", game=game, num_actions=n,
                        frame_shape=(10, 10, 10), stack=1, shard_steps=8,
                        provenance={"source": "fuzz"}) as w:
            for t, flag in eps:
                w.add_episode(255 * rng.integers(0, 2, (t + 1, 10, 10, 10), dtype=np.uint8),
                              rng.integers(0, n, t), rng.normal(size=t).astype(np.float32),
                              flag == 1, flag == 2)
    return root


@functools.cache
def base_replay() -> Path:
    """A DQN Replay source (Pong, run 1, four checkpoint files of 10 entries)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_dqn_replay import LoggedBuffer, play

    src = _ROOT / "replay"
    play(LoggedBuffer(src / "Pong" / "1" / "replay_logs", capacity=10), [5, 7, 6, 4],
         every_cycle_logged=True)
    return src


@functools.cache
def base_minari() -> Path:
    """Two Minari datasets: ``scaledql/breakout-v0``, exported by scaledql from breakout of
    ``base_store`` (its ``scaledql`` block and env_spec), and ``toy/grid-v0``, a foreign one
    (bool grids, no block, no env_spec)."""
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    from scaledql.data.importers.minari_io import export_minari

    root = _ROOT / "minari"
    export_minari(base_store(), "breakout", "scaledql/breakout-v0", out=root)
    rng = np.random.default_rng(1)
    buffers = [EpisodeBuffer(id=i, observations=rng.integers(0, 2, (t + 1, 10, 10, 4)).astype(bool),
                             actions=np.arange(t) % 3, rewards=[1.0] * t,
                             terminations=[False] * (t - 1) + [term],
                             truncations=[False] * (t - 1) + [not term])
               for i, (t, term) in enumerate(((3, True), (2, False)))]
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            minari.create_dataset_from_buffers(
                "toy/grid-v0", buffers, action_space=gym.spaces.Discrete(3),
                observation_space=gym.spaces.Box(0, 1, (10, 10, 4), bool), jpeg_encoding=False)
    finally:
        if old is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    return root


def fresh(base: Path, work: Path) -> Path:
    dst = work / base.name
    shutil.copytree(base, dst)
    return dst


# ------------------------------------------------------------------------------------------------
# Targets


STORE_ARRAYS = {"frames": np.dtype(np.uint8), "actions": np.dtype(np.int32),
                "rewards": np.dtype(np.float32), "returns_to_go": np.dtype(np.float32),
                "ep_frame_start": np.dtype(np.int64), "ep_length": np.dtype(np.int64),
                "ep_step_offset": np.dtype(np.int64), "ep_flags": np.dtype(np.uint8),
                "ep_return": np.dtype(np.float64)}


def manifest_damage() -> st.SearchStrategy[Damage]:
    base = json.loads((base_store() / "breakout" / "manifest.json").read_text())
    return json_damage("breakout/manifest.json", base)


def npy_store_damage() -> st.SearchStrategy[Damage]:
    return st.one_of(*[npy_damage(f"{game}/{shard}/{name}.npy", dtype)
                       for game, shard in (("breakout", "shard_00000"),
                                           ("breakout", "shard_00001"),
                                           ("seaquest", "shard_00000"))
                       for name, dtype in STORE_ARRAYS.items()])


def run_store(work: Path, d: Damage) -> Outcome:
    """Open the damaged store as training does (contents checked) and sample from it."""
    store = fresh(base_store(), work)
    path = store / d.file
    (apply_json if d.file.endswith(".json") else apply_npy)(path, d)
    return outcome_of(work, None, lambda: read_correctly(store))


REPLAY_FILES = [f"{p}_ckpt.{n}.gz" for n in range(4)
                for p in ("$store$_observation", "$store$_action", "$store$_reward",
                          "$store$_terminal", "add_count", "invalid_range")]
gz_arrays = st.tuples(
    st.sampled_from(["uint8", "int32", "int64", "float32", "float64", "bool", "int8", "U2",
                     "uint64"]),
    st.one_of(st.just(()), st.tuples(st.integers(0, 12)),
              st.tuples(st.integers(0, 12), st.integers(1, 3), st.integers(1, 3))),
    st.integers(0, 2**32 - 1))


def gz_damage() -> st.SearchStrategy[Damage]:
    def one(file: str) -> st.SearchStrategy[Damage]:
        return st.one_of(
            text_damage(file),  # the gzip bytes
            damage("gz-npy-header", file, npy_header_text, st.sampled_from([1, 2, 3])),
            damage("gz-element", file, st.integers(0, 40),
                   st.sampled_from([-1, 0, 1, 2, 3, 4, 5, 99, 255, 10**6, 2**31 - 1, np.nan,
                                    np.inf, -np.inf, 0.5])),
            damage("gz-array", file, gz_arrays),
            damage("gz-inner-flip", file, st.floats(0, 1), st.integers(1, 255)),
        )
    return st.one_of(*[one(f) for f in REPLAY_FILES])


def _gz_write(path: Path, raw: bytes) -> None:
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(raw)


def apply_gz(path: Path, d: Damage) -> None:
    if d.kind in ("truncate", "flip", "insert", "nest", "replace"):
        apply_bytes(path, d)
        return
    with gzip.open(path) as f:
        raw = f.read()
    if d.kind == "gz-npy-header":
        _gz_write(path, npy_header_bytes(d.args[0], d.args[1]) + raw[npy_offset(raw):])
    elif d.kind == "gz-inner-flip" and raw:
        k = min(len(raw) - 1, int(d.args[0] * len(raw)))
        _gz_write(path, raw[:k] + bytes([raw[k] ^ d.args[1]]) + raw[k + 1:])
    elif d.kind == "gz-element":
        a = np.load(io.BytesIO(raw))
        if a.size:
            flat = a.reshape(-1)
            with np.errstate(all="ignore"), contextlib.suppress(ValueError, OverflowError):
                flat[d.args[0] % flat.size] = d.args[1]
        buf = io.BytesIO()
        np.save(buf, a)
        _gz_write(path, buf.getvalue())
    elif d.kind == "gz-array":
        dtype, shape, seed = d.args[0]
        rng = np.random.default_rng(seed)
        a = rng.integers(-3, 300, shape).astype(dtype) if dtype != "U2" else np.full(shape, "x")
        buf = io.BytesIO()
        np.save(buf, a)
        _gz_write(path, buf.getvalue())


def run_replay(work: Path, d: Damage) -> Outcome:
    """Import the damaged DQN Replay source; a store it publishes must read correctly."""
    from test_dqn_replay import import_dqn_replay

    src = fresh(base_replay(), work)
    apply_gz(src / "Pong" / "1" / "replay_logs" / d.file, d)
    out = work / "out"

    def read() -> None:
        import_dqn_replay(src, "Pong", out)
        read_correctly(out)
    return outcome_of(work, out, read)


MINARI_DATA = ("scaledql/breakout-v0/data", "toy/grid-v0/data")
H5_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")
h5_arrays = st.tuples(
    st.sampled_from(["uint8", "int64", "int32", "float32", "float64", "bool", "int8", "S3"]),
    st.one_of(st.just(()), st.tuples(st.integers(0, 6)),
              st.tuples(st.integers(0, 6), st.integers(1, 2)),
              st.tuples(st.integers(0, 6), st.just(10), st.just(10), st.integers(1, 11))),
    st.integers(0, 2**32 - 1))


def minari_damage() -> st.SearchStrategy[Damage]:
    out = []
    for data in MINARI_DATA:
        meta = json.loads((base_minari() / data / "metadata.json").read_text())
        if "scaledql" in meta:  # reach the block's fields and the env_spec more often
            paths = [("scaledql", k) for k in meta["scaledql"]] + [("env_spec",)]
            out.append(damage("json", f"{data}/metadata.json", st.sampled_from(paths),
                              st.sampled_from(["set", "delete", "nudge"]), json_values))
        out.append(json_damage(f"{data}/metadata.json", meta))
        h5 = f"{data}/main_data.hdf5"
        out += [
            text_damage(h5),
            damage("h5-replace", h5, st.integers(0, 2), st.sampled_from(H5_KEYS), h5_arrays),
            damage("h5-delete", h5, st.integers(0, 2), st.sampled_from([*H5_KEYS, ""])),
            damage("h5-element", h5, st.integers(0, 2), st.sampled_from(H5_KEYS),
                   st.integers(0, 10),
                   st.sampled_from([-1, 0, 1, 2, 3, 9, 255, 2**40, np.nan, np.inf])),
        ]
    return st.one_of(*out)


def apply_h5(path: Path, d: Damage) -> None:
    import h5py

    if not d.kind.startswith("h5-"):
        apply_bytes(path, d)
        return
    with h5py.File(path, "r+") as f:
        group = f.get(f"episode_{d.args[0]}")
        if group is None:
            return
        key = d.args[1]
        if d.kind == "h5-delete":
            del f[f"episode_{d.args[0]}/{key}".rstrip("/")]
        elif d.kind == "h5-replace":
            dtype, shape, seed = d.args[2]
            rng = np.random.default_rng(seed)
            a = (rng.integers(0, 3, shape).astype(dtype) if dtype != "S3"
                 else np.full(shape, b"abc"))
            del group[key]
            group.create_dataset(key, data=a)
        elif d.kind == "h5-element":
            a = np.asarray(group[key][()])
            if a.size:
                flat = a.reshape(-1)
                with np.errstate(all="ignore"), contextlib.suppress(ValueError, OverflowError):
                    flat[d.args[2] % flat.size] = d.args[3]
                del group[key]
                group.create_dataset(key, data=a)


def run_minari(work: Path, d: Damage) -> Outcome:
    """Import the damaged Minari dataset (by path, no --game); a store it publishes must read
    correctly."""
    from scaledql.data.importers.minari_io import import_minari

    root = fresh(base_minari(), work)
    path = root / d.file
    (apply_json if d.file.endswith(".json") else apply_h5)(path, d)
    dataset = root / d.file.split("/data/")[0]
    out = work / "out"

    def read() -> None:
        import_minari(str(dataset), out, game=None if "scaledql" in d.file else "breakout")
        read_correctly(out)
    return outcome_of(work, out, read)


def rlu_damage() -> st.SearchStrategy[Damage]:
    from fuzz_rlu import base_rlu, rlu_damage

    return rlu_damage(base_rlu(_ROOT))


def run_rlu(work: Path, d: Damage) -> Outcome:
    """Import the damaged RL Unplugged source (TFDS or raw layout, ``fuzz_rlu``)."""
    from fuzz_rlu import apply_rlu, base_rlu
    from scaledql.data.importers.atari_import import ImportOptions, import_games

    src = fresh(base_rlu(_ROOT), work)
    apply_rlu(src, d)
    out = work / "out"
    layout = src / ("raw" if d.file.startswith("raw/") else "tfds")

    def read() -> None:
        import_games({"Pong": None}, ImportOptions(src=layout, out=out, source="rlu-atari"))
        read_correctly(out)
    return outcome_of(work, out, read)


def count_case(run: Callable[[Path, Damage], Outcome], root: Path, damage: Damage,
               seen: dict[str, int]) -> None:
    """Run one case in a fresh folder under ``root`` (removed after) and count its outcome in
    ``seen`` (``refused`` or ``read``): the body of every Hypothesis check of these targets."""
    work = Path(tempfile.mkdtemp(dir=root))
    try:
        seen["refused" if run(work, damage).refused else "read"] += 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


TARGETS: dict[str, tuple[Callable[[], st.SearchStrategy[Damage]],
                         Callable[[Path, Damage], Outcome]]] = {
    "manifest": (manifest_damage, run_store),
    "npy": (npy_store_damage, run_store),
    "dqn-gz": (gz_damage, run_replay),
    "minari": (minari_damage, run_minari),
    "rlu": (rlu_damage, run_rlu),
}
