"""A collected game kept as its recipe: the actions it took, replayed to rebuild the store exactly.

A game's episodes are a deterministic function of the environments' seed and the actions taken
(MinAtar and ALE draw every random number, sticky actions included, from the environment's own
generator, seeded at the first reset). So a ``collect`` run's store is rebuilt from its
action log — one byte per transition, a few hundred kB compressed — by stepping the same
vector environments with the logged actions: minutes instead of the hour the online DQN took,
and small enough to commit (a study that spans sessions keeps its data as logs; the frames are
made again). The log holds a digest of the store's arrays; a rebuild that does not reproduce
it is refused and removed (an emulator or library version that plays differently).

``LOG_DIR/<game>.npz``: ``actions`` (uint8, in the order the online loop recorded them: vector
step by vector step, environments 0..n-1) and ``meta`` (JSON: ``format``, the collection's
``recipe`` — suite, game, seed, environments, steps, env options, behaviour settings — its
``provenance`` as written in the store's manifest, and ``digest``).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.atomic_files import atomic_output
from scaledql.data.store.format import MANIFEST
from scaledql.errors import UserError

FORMAT = 1


def log_path(log_dir: Path, game: str) -> Path:
    return Path(log_dir) / f"{game}.npz"


class ActionLogger:
    """A ``Recorder`` that passes every call on to ``inner`` and keeps the actions in order."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.actions: list[int] = []

    def begin(self, env: int, obs: np.ndarray) -> None:
        self.inner.begin(env, obs)

    def record(self, env: int, action: int, reward: float, next_obs: np.ndarray) -> None:
        self.actions.append(int(action))
        self.inner.record(env, action, reward, next_obs)

    def end(self, env: int, terminated: bool, truncated: bool) -> float:
        return self.inner.end(env, terminated, truncated)

    def finish(self) -> None:
        self.inner.finish()


class ReplayPolicy:
    """Acts the logged actions, ``len(obs)`` at a time (the last vector step may record fewer
    environments than it steps: those get action 0, and their transitions are not kept)."""

    def __init__(self, actions: np.ndarray):
        self.actions = np.asarray(actions, dtype=np.int64)
        self.next = 0

    def reset(self, game: str, num_envs: int) -> None:
        self.next = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        chunk = self.actions[self.next:self.next + len(obs)]
        self.next += len(chunk)
        return np.concatenate([chunk, np.zeros(len(obs) - len(chunk), np.int64)])

    def observe(self, actions: np.ndarray, rewards: np.ndarray, done: np.ndarray) -> None:
        pass


def store_digest(game_dir: Path) -> str:
    """SHA-256 over every file of a game store but its manifest (names and bytes, sorted)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(game_dir).rglob("*") if p.is_file() and p.name != MANIFEST):
        h.update(path.relative_to(game_dir).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def write_log(path: Path, actions: list[int], recipe: dict[str, Any],
              provenance: dict[str, Any], digest: str) -> None:
    if actions and max(actions) > 255:
        raise ValueError("action logs hold actions 0..255")
    meta = {"format": FORMAT, "recipe": recipe, "provenance": provenance, "digest": digest}
    with atomic_output(Path(path)) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, actions=np.asarray(actions, np.uint8),
                            meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))


def read_log(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The actions and meta of an action log; ``UserError`` for a missing or damaged file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            actions = np.asarray(z["actions"], np.int64)
            meta = json.loads(z["meta"].tobytes().decode())
    except FileNotFoundError:
        raise UserError(f"{path}: no such action log") from None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable action log ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or \
            not {"recipe", "provenance", "digest"} <= set(meta):
        raise UserError(f"{path}: not an action log of format {FORMAT}")
    steps = meta["recipe"].get("steps")
    if steps != len(actions):
        raise UserError(f"{path}: {len(actions)} actions for a recipe of {steps} steps")
    return actions, meta


def check_recipe(path: Path, logged: dict[str, Any], wanted: dict[str, Any]) -> None:
    """The log was made by this very collection (same game, seed, steps, options, behaviour)."""
    differs = sorted(k for k in set(logged) | set(wanted) if logged.get(k) != wanted.get(k))
    if differs:
        k = differs[0]
        raise UserError(f"{path}: made by another collection ({k}: the log has "
                        f"{logged.get(k)!r}, this command {wanted.get(k)!r}); remove the log "
                        "or change the command")
