"""Opening a multi-game dataset directory for reading: ``open_dataset``, ``Dataset``.

The layout of a game store, its manifest and its cheap checks are ``format``'s; one game's store,
opened, is a ``game.GameData``; writing one is ``writer.GameWriter``'s, the full scan
``validate``'s.

Checks: opening a game store runs the cheap structural checks (manifest types and ranges, shard
paths inside the store, array headers against the manifest and the file sizes, episode tables);
``open_dataset(contents=True)``, for whatever learns from the data, also scans the small arrays;
``GameWriter.close`` runs the full scan (``validate.verify_game``) before it publishes. One
writer per game: ``DIR/.GAME.lock`` (``io.acquire_lock``) is held from the writer's creation to
its publication; a second writer gets one line naming the first.

Atomic writes: a ``GameWriter`` (``writer.py``) builds the whole game store in a hidden
temporary directory next to its destination (``DIR/.Pong.partial``), fsyncs every file, writes
the manifest last and publishes the directory with one ``rename``. An interrupted write leaves only the hidden
directory, which the next writer for that game removes; ``open_dataset`` never lists it. Growing a
game (``append=True``) writes new shards under temporary names, then renames them and replaces the
manifest atomically (``os.replace``): shards that no manifest lists are invisible.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from scaledql.data.store.format import MANIFEST
from scaledql.data.store.game import GameData
from scaledql.data.store.validate import verify_game
from scaledql.errors import UserError


class Dataset:
    """A multi-game dataset directory, opened read-only. ``games``: names in sorted order."""

    def __init__(self, root: Path, games: dict[str, GameData]):
        self.root = Path(root)
        self._games = games
        self.games: list[str] = list(games)

    def game(self, name: str) -> GameData:
        try:
            return self._games[name]
        except KeyError:
            raise UserError(f"{self.root}: no game {name!r} in this dataset "
                            f"(it has {', '.join(self.games)})") from None

    def info(self) -> dict:
        """The ``data info --json`` dict: ``{"games": {GAME: {...}}, "total_transitions": n}``."""
        games = {name: g.info() for name, g in self._games.items()}
        return {"root": str(self.root), "games": games,
                "total_transitions": sum(g["transitions"] for g in games.values())}


def data_identity(data: list[GameData]) -> str:
    """A fingerprint of the games a run trains on: their manifests (counts, shards, episode
    returns, provenance). A resumed run must see the same data, wherever it now lies; reports
    name the data of each run by it."""
    manifests = {d.name: d.manifest for d in data}
    return hashlib.sha256(json.dumps(manifests, sort_keys=True, default=str).encode()).hexdigest()


def list_games(root: Path) -> list[str]:
    """Names of the complete game stores under ``root`` (directories with a manifest)."""
    root = Path(root)
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file())


def open_dataset(root: Path, games: list[str] | None = None, *,
                 contents: bool = False) -> Dataset:
    """Open ``root`` (a multi-game dataset directory) for reading; only manifests and headers are read.

    ``games``: the games to open (default: every complete game store). ``UserError`` when the
    directory, a requested game or any file is missing or corrupt. A single game directory
    (``DIR/Pong``) is accepted too and opens as a one-game dataset.

    ``contents``: also scan what the small arrays hold (``validate.verify_game`` without the
    frames), as whatever learns from or scores the data needs (training, fine-tuning, the data
    card, export): ~18 ms per million transitions (``benchmarks/contents_check.py``).
    """
    dataset = _open_dataset(Path(root), games)
    if contents:
        check_contents(dataset)
    return dataset


def check_contents(dataset: Dataset) -> None:
    """``open_dataset(contents=True)``'s scan for a dataset already open (opened once, by the
    caller): what each game's small arrays hold, ``UserError`` at the first fault."""
    for name in dataset.games:
        verify_game(dataset.game(name), frames=False)


def select_games(dataset: Dataset, root: Path, games: list[str] | None) -> Dataset:
    """``dataset`` (``open_dataset(root)``'s) narrowed to ``games`` (None: all of it), as
    ``open_dataset(root, games)`` would open it, without reading the store again."""
    if games is None or list(games) == dataset.games:
        return dataset
    if any(g not in dataset.games for g in games):
        return _open_dataset(Path(root), games)  # raises open_dataset's own error
    return Dataset(dataset.root, {g: dataset.game(g) for g in games})


def game_directories(root: Path, games: list[str] | None = None) -> list[Path]:
    """The game stores under ``root`` (``games`` of them; default: every complete one), found
    without opening them: ``UserError`` for a missing directory or game. A single game's
    directory is its own one store (which game it holds, its manifest says). What
    ``open_dataset`` opens and ``data verify`` checks one by one."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset directory {root} " + (
            "is not a directory" if root.exists() else "does not exist"))
    if (root / MANIFEST).is_file():  # pointed at one game's store
        return [root]
    available = list_games(root)
    if games is None:
        if not available:
            partial = [p.name for p in root.iterdir() if p.name.endswith(".partial")]
            hint = " (only interrupted writes: " + ", ".join(partial) + ")" if partial else ""
            raise UserError(f"{root} holds no game stores{hint}")
        names = available
    else:
        names = list(games)
        unknown = [g for g in names if g not in available]
        if unknown:
            raise UserError(f"{root}: no complete game store for {', '.join(unknown)} "
                            f"(it has {', '.join(available) or 'none'})")
    return [root / name for name in names]


def _open_dataset(root: Path, games: list[str] | None) -> Dataset:
    directories = game_directories(root, games)
    if (root / MANIFEST).is_file():
        g = GameData(root)
        if games is not None and list(games) != [g.name]:
            raise UserError(f"{root} holds only game {g.name!r}")
        return Dataset(root.parent, {g.name: g})
    return Dataset(root, {d.name: GameData(d) for d in directories})
