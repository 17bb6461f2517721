"""The bad-input corpus's machinery: cases, the valid assets each case damages, and helpers.

A ``Case`` is a command line (placeholders in braces) plus an optional ``setup`` that prepares
or damages its inputs in the case's own folder. Every placeholder names something built once per
session (``Assets``) and copied into the case's folder on first use, so that a case can damage
its copy freely:

``{tmp}`` the case's folder; ``{store}`` a valid two-game MinAtar store; ``{run}`` a finished
2-step Scaled QL run on it; ``{src}`` a DQN Replay source (Pong, 2 checkpoint files);
``{mds}`` the Minari datasets root (``MINARI_DATASETS_PATH``) holding ``toy/breakout-v0``;
``{ro}`` a directory nothing can be created in.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    expect: str  # a regular expression the error line must match (it names the problem)
    setup: Callable[[Ctx], None] | None = None


def case(name: str, argv: list[str], expect: str, setup: Callable[[Ctx], None] | None = None
         ) -> Case:
    return Case(name, tuple(argv), expect, setup)


@dataclass
class Assets:
    store: Path
    run: Path
    src: Path
    mds: Path
    collect_ckpt: Path


class Ctx:
    """One case's folder and lazily made copies of the assets."""

    def __init__(self, tmp: Path, assets: Assets):
        self.tmp, self.assets = tmp, assets
        self.held: list[int] = []  # lock descriptors a case holds while its command runs

    def hold(self, lock_file: Path) -> None:
        """Hold a writer's lock, as another process writing the same output would."""
        from scaledql.atomic_files import acquire_lock

        self.held.append(acquire_lock(lock_file, "test", lock_file))

    def release(self) -> None:
        for fd in self.held:
            os.close(fd)
        self.held.clear()

    def _copy(self, name: str) -> Path:
        dst = self.tmp / name
        if not dst.exists():
            shutil.copytree(getattr(self.assets, name), dst)
        return dst

    def store(self) -> Path:
        return self._copy("store")

    def run(self) -> Path:
        """A copy of the finished run (its config names the assets' store, left intact)."""
        return self._copy("run")

    def src(self) -> Path:
        return self._copy("src")

    def mds(self) -> Path:
        return self._copy("mds")

    def ro(self) -> Path:
        if os.geteuid() == 0:  # root writes through permissions: a filesystem that refuses
            return Path("/sys/scaledql-corpus")
        ro = self.tmp / "ro"
        ro.mkdir(exist_ok=True)
        ro.chmod(0o555)
        return ro

    def resolve(self, arg: str) -> str:
        def sub(m: re.Match) -> str:
            key = m.group(1)
            return str(self.tmp if key == "tmp" else getattr(self, key)())

        return re.sub(r"\{(tmp|store|run|src|mds|ro)\}", sub, arg)


# ------------------------------------------------------------------------------------------------
# Damage helpers


def edit_json(path: Path, fn: Callable[[dict], object]) -> None:
    """Change the parsed JSON in place with ``fn`` (its result is ignored) and write it back."""
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


def manifest(ctx: Ctx, game: str = "breakout") -> Path:
    return ctx.store() / game / "manifest.json"


def shard(ctx: Ctx, game: str = "breakout") -> Path:
    return ctx.store() / game / "shard_00000"


def npy_header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)  # the store writes version 1.0 headers
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        return {"shape": shape, "fortran": fortran, "dtype": dtype}, f.tell()


def rewrite_npy(path: Path, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    arr = np.load(path)
    np.save(path, fn(arr.copy()))


def set_header(path: Path, **changes: object) -> None:
    """Rewrite a ``.npy`` header (same data bytes): ``shape``, ``fortran_order``, ``descr``."""
    info, offset = npy_header(path)
    data = path.read_bytes()[offset:]
    d = {"descr": np.lib.format.dtype_to_descr(info["dtype"]), "fortran_order": info["fortran"],
         "shape": info["shape"], **changes}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, d)
    path.write_bytes(buf.getvalue() + data)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def gz_save(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=array.dtype.hasobject)
    with gzip.open(path, "wb") as f:
        f.write(buf.getvalue())


def gz_load(path: Path) -> np.ndarray:
    with gzip.open(path) as f:
        return np.load(io.BytesIO(f.read()), allow_pickle=False)


def replay_file(ctx: Ctx, name: str, n: int = 0) -> Path:
    return ctx.src() / "Pong" / "1" / "replay_logs" / f"{name}_ckpt.{n}.gz"


def minari_data(ctx: Ctx, dataset: str = "toy/breakout-v0") -> Path:
    return ctx.mds() / dataset / "data"


def edit_minari_meta(ctx: Ctx, fn: Callable[[dict], object]) -> None:
    edit_json(minari_data(ctx) / "metadata.json", fn)


def edit_hdf5(ctx: Ctx, fn: Callable[[object], None]) -> None:
    import h5py

    with h5py.File(minari_data(ctx) / "main_data.hdf5", "r+") as f:
        fn(f)


def replace_dataset(group, key: str, data: np.ndarray) -> None:
    del group[key]
    group.create_dataset(key, data=data)


def write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
