"""Reading a local Minari dataset without trusting it: metadata checked first, episodes via h5py.

minari's own reader is not used for import: when ``metadata.json`` lacks a space it builds the
environment named by the metadata's ``env_spec`` (``gym.make``), i.e. it imports and calls
whatever ``entry_point`` the file names. Here nothing read from a dataset ever becomes a callable:

* ``metadata.json`` is parsed as plain JSON (at most 16 MiB) and checked before anything else:
  ``data_format`` must be ``hdf5``; ``observation_space`` (a ``Box`` of ``uint8`` or ``bool``)
  and ``action_space`` (a ``Discrete`` starting at 0) must be present — there is no fallback to
  the environment; ``total_episodes`` must be a non-negative integer. The spaces are built by
  this module from those checked fields (no deserializer registry).
* ``env_spec``, when present, is a JSON string of which only ``id`` (a string, matched against
  the Atari / MinAtar id patterns to name the game) is ever looked at: its ``entry_point``,
  ``kwargs`` and wrappers are never resolved, imported or called.
* ``main_data.hdf5`` is read with h5py, one episode group at a time, every dataset's kind, shape
  and dtype checked before its data is read: ``T + 1`` observations for ``T`` actions, rewards,
  terminations and truncations; an episode ends where its flags say, and only there.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.errors import UserError

MAX_METADATA_BYTES = 16 << 20
MAX_EPISODE_BYTES = 2 << 30  # observations of one episode read at once
MAX_OBS_ELEMENTS = 1 << 20
DATASET_ID = re.compile(r"(?:[\w.-]+/)*[\w.-]+-v\d+")


@dataclass
class BoxSpace:
    """The observation space: shape, dtype and the uniform bounds of every element."""

    shape: tuple[int, ...]
    dtype: np.dtype
    low: float
    high: float


@dataclass
class Episode:
    observations: np.ndarray  # [T + 1, *shape]
    actions: np.ndarray  # int64[T]
    rewards: np.ndarray  # float32[T]
    terminated: bool
    truncated: bool


def datasets_root() -> Path:
    """Where local Minari datasets live (``MINARI_DATASETS_PATH`` or ``~/.minari/datasets``)."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def dataset_dir(path_or_id: str) -> Path:
    """The ``data`` directory of a dataset given as a path or a local id (never downloaded)."""
    path = Path(path_or_id)
    if path.exists():
        return path / "data" if (path / "data").is_dir() else path
    if not DATASET_ID.fullmatch(path_or_id) or ".." in path_or_id.split("/"):
        raise UserError(f"cannot open Minari dataset {path_or_id!r} locally: no such path, and "
                        "not a dataset id (namespace/name-v0)")
    data = datasets_root() / path_or_id / "data"
    if not data.is_dir():
        raise UserError(f"cannot open Minari dataset {path_or_id!r} locally (no {data}); "
                        "nothing is downloaded: set MINARI_DATASETS_PATH or give a path")
    return data


def _space_dict(meta: dict, key: str, where: str) -> dict:
    raw = meta.get(key)
    if raw is None:
        raise UserError(f"{where}: metadata has no {key} (required: datasets are never read "
                        "through their environment)")
    try:
        space = json.loads(raw) if isinstance(raw, str) else raw
    except (ValueError, RecursionError):  # RecursionError: nesting too deep for the parser
        raise UserError(f"{where}: {key} is not valid JSON") from None
    if not isinstance(space, dict):
        raise UserError(f"{where}: {key} is not a serialized space")
    return space


def _bound(value: Any, shape: tuple[int, ...], where: str) -> float:
    """A Box's low/high (a number or nested lists of one shape) → its single value."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{where}: bounds must be numbers") from None
    if arr.shape not in ((), shape) or arr.size == 0 or not (arr == arr.flat[0]).all():
        raise UserError(f"{where}: bounds must be one value for every element")
    return float(arr.flat[0])


def _box(space: dict, where: str) -> BoxSpace:
    if space.get("type") != "Box":
        raise UserError(f"{where}: observation space of type {space.get('type')!r} is not "
                        "supported (need a Box of Atari frames or MinAtar grids)")
    shape = space.get("shape")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 4
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
            or int(np.prod(shape)) > MAX_OBS_ELEMENTS):
        raise UserError(f"{where}: observation space shape {shape!r} is not supported")
    if space.get("dtype") not in ("uint8", "bool"):
        raise UserError(f"{where}: observation space dtype {space.get('dtype')!r} is not "
                        "supported (uint8 or bool)")
    shape_t = tuple(shape)
    return BoxSpace(shape_t, np.dtype(space["dtype"]), _bound(space.get("low"), shape_t, where),
                    _bound(space.get("high"), shape_t, where))


def _discrete(space: dict, where: str) -> int:
    n, start = space.get("n"), space.get("start", 0)
    if space.get("type") != "Discrete" or not isinstance(n, int) or isinstance(n, bool):
        raise UserError(f"{where}: action space {space.get('type')!r} is not Discrete")
    if not 1 <= n <= 1 << 16 or start != 0:
        raise UserError(f"{where}: Discrete action space needs 1 <= n <= 65536 and start 0, got "
                        f"n={n!r} start={start!r}")
    return n


def env_id(meta: dict) -> str:
    """The environment id of ``env_spec`` (a string), or ''. Nothing else of it is read."""
    spec = meta.get("env_spec")
    if not isinstance(spec, str):
        return ""
    try:
        d = json.loads(spec)
    except (ValueError, RecursionError):
        return ""
    return d.get("id") if isinstance(d, dict) and isinstance(d.get("id"), str) else ""


class MinariSource:
    """A local Minari dataset opened for import; ``episodes()`` yields checked ``Episode``s."""

    def __init__(self, path_or_id: str):
        self.where = f"Minari dataset {path_or_id}"
        self.data = dataset_dir(path_or_id)
        meta_file = self.data / "metadata.json"
        try:
            if meta_file.stat().st_size > MAX_METADATA_BYTES:
                raise UserError(f"{meta_file}: larger than {MAX_METADATA_BYTES >> 20} MiB")
            meta = json.loads(meta_file.read_bytes())
        except FileNotFoundError:
            raise UserError(f"{self.where}: no metadata.json in {self.data}") from None
        except (OSError, ValueError, RecursionError) as exc:
            raise UserError(f"{meta_file}: unreadable ({str(exc)[:120]})") from None
        if not isinstance(meta, dict):
            raise UserError(f"{meta_file}: not a JSON object")
        if meta.get("data_format", "hdf5") != "hdf5":
            raise UserError(f"{self.where}: data format {meta.get('data_format')!r} is not "
                            "supported (hdf5)")
        self.meta = meta
        self.obs = _box(_space_dict(meta, "observation_space", self.where), self.where)
        self.num_actions = _discrete(_space_dict(meta, "action_space", self.where), self.where)
        total = meta.get("total_episodes")
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise UserError(f"{meta_file}: total_episodes must be a non-negative integer, got "
                            f"{total!r}")
        if total == 0:
            raise UserError(f"{self.where}: holds no episodes")
        self.total_episodes = total
        self.jpeg = bool(meta.get("jpeg_encoding", True)) and self._image_space()
        self.file = self.data / "main_data.hdf5"
        if not self.file.is_file():
            raise UserError(f"{self.where}: no main_data.hdf5 in {self.data}")

    def _image_space(self) -> bool:
        """Minari JPEG-encodes exactly these spaces when ``jpeg_encoding`` is on."""
        o = self.obs
        return (len(o.shape) in (2, 3) and o.shape[0] >= 32 and o.shape[1] >= 32
                and o.dtype == np.uint8 and o.low == 0 and o.high == 255)

    def episodes(self) -> Iterator[Episode]:
        import h5py

        try:
            f = h5py.File(self.file, "r")
        except OSError as exc:
            raise UserError(f"{self.file}: not a readable HDF5 file ({str(exc)[:120]})") from None
        with f:
            for i in range(self.total_episodes):
                try:
                    yield self._episode(f, i)
                except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
                    raise UserError(f"{self.where}: episode {i} is unreadable "
                                    f"({str(exc)[:120]})") from None

    def _dataset(self, group: Any, key: str, i: int) -> Any:
        import h5py

        ds = group.get(key)
        if not isinstance(ds, h5py.Dataset):
            raise UserError(f"{self.where}: episode {i} has no {key} array")
        return ds

    def _episode(self, f: Any, i: int) -> Episode:
        import h5py

        group = f.get(f"episode_{i}")
        if not isinstance(group, h5py.Group):
            raise UserError(f"{self.where}: episode {i} is missing ({self.total_episodes} "
                            "listed in metadata.json)")
        arrays = {k: self._dataset(group, k, i) for k in ("observations", "actions", "rewards",
                                                          "terminations", "truncations")}
        if arrays["actions"].ndim not in (1, 2):
            raise UserError(f"{self.where}: episode {i}: actions have shape "
                            f"{arrays['actions'].shape}, expected one per step")
        t = arrays["actions"].shape[0]
        for key in ("actions", "rewards", "terminations", "truncations"):
            ds = arrays[key]
            if ds.shape not in ((t,), (t, 1)):
                raise UserError(f"{self.where}: episode {i}: {key} has shape {ds.shape}, "
                                f"expected ({t},) like actions")
        if arrays["actions"].dtype.kind not in "iu":
            raise UserError(f"{self.where}: episode {i}: actions have dtype "
                            f"{arrays['actions'].dtype}, expected integers")
        if arrays["rewards"].dtype.kind not in "iuf":
            raise UserError(f"{self.where}: episode {i}: rewards have dtype "
                            f"{arrays['rewards'].dtype}, expected numbers")
        obs = self._observations(arrays["observations"], t, i)
        flags = {}
        for key in ("terminations", "truncations"):
            ds = arrays[key]
            if ds.dtype.kind not in "biu":
                raise UserError(f"{self.where}: episode {i}: {key} have dtype {ds.dtype}")
            v = np.asarray(ds[()]).reshape(t) != 0
            if v[:-1].any():
                raise UserError(f"{self.where}: episode {i}: {key} set at step "
                                f"{int(np.flatnonzero(v[:-1])[0])}, before the episode's end")
            flags[key] = bool(v[-1]) if t else False
        return Episode(obs, np.asarray(arrays["actions"][()]).reshape(t).astype(np.int64),
                       np.asarray(arrays["rewards"][()], np.float64).reshape(t).astype(np.float32),
                       flags["terminations"], flags["truncations"])

    def _observations(self, ds: Any, t: int, i: int) -> np.ndarray:
        o = self.obs
        if self.jpeg:
            return self._jpeg_frames(ds, t, i)
        if ds.shape != (t + 1, *o.shape):
            raise UserError(f"{self.where}: episode {i}: observations have shape {ds.shape}, "
                            f"expected {(t + 1, *o.shape)} (T + 1 for {t} actions)")
        if ds.dtype != o.dtype:
            raise UserError(f"{self.where}: episode {i}: observations have dtype {ds.dtype}, "
                            f"the space says {o.dtype}")
        if (t + 1) * int(np.prod(o.shape)) * o.dtype.itemsize > MAX_EPISODE_BYTES:
            raise UserError(f"{self.where}: episode {i}: {t + 1} observations are more than "
                            f"{MAX_EPISODE_BYTES >> 30} GiB")
        return np.asarray(ds[()])

    def _jpeg_frames(self, ds: Any, t: int, i: int) -> np.ndarray:
        import io

        from PIL import Image

        if ds.shape[:1] != (t + 1,):
            raise UserError(f"{self.where}: episode {i}: {ds.shape[0] if ds.shape else 0} "
                            f"observations for {t} actions (expected {t + 1})")
        out = np.empty((t + 1, *self.obs.shape), np.uint8)
        for k in range(t + 1):
            try:
                with Image.open(io.BytesIO(np.asarray(ds[k], np.uint8).tobytes())) as img:
                    frame = np.asarray(img, np.uint8)
            except Exception as exc:  # PIL raises many kinds for a damaged image
                raise UserError(f"{self.where}: episode {i}: JPEG frame {k} is unreadable "
                                f"({str(exc)[:80]})") from None
            if frame.shape != self.obs.shape:
                raise UserError(f"{self.where}: episode {i}: JPEG frame {k} is {frame.shape}, "
                                f"the space says {self.obs.shape}")
            out[k] = frame
        return out
