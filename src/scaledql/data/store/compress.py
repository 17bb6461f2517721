"""``scaledql data compress``: a copy of a store with its frames as zstd blocks of whole episodes.

Each game is written like every other store write: under ``OUT/.GAME.lock``, into the hidden
``OUT/.GAME.partial``, every block decoded again and compared with its source as it is written,
the episode tables and counts checked by the full scan (``validate.verify_game``), the manifest
written last, then one ``rename`` publishes it. A game already compressed from the same source
(same manifest) is skipped, so an interrupted conversion of many games resumes where it stopped.
The format: ``frame_blocks.py`` (the manifest's ``frame_codec``: ``format.check_codec``).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scaledql.atomic_files import acquire_lock, atomic_write_json, release_lock
from scaledql.data.store.dataset import data_identity, open_dataset
from scaledql.data.store.format import (
    CODEC,
    MANIFEST,
    game_lock_path,
    provenance_of,
    read_manifest,
    save_shard_tables,
)
from scaledql.data.store.frame_blocks import episode_blocks, write_blocks
from scaledql.data.store.game import GameData
from scaledql.data.store.validate import verify_game
from scaledql.data.store.writer import publish_game_dir
from scaledql.errors import UserError
from scaledql.progress import human_bytes

MAX_LEVEL = 22  # zstd's highest level


@dataclass
class CompressSummary:
    """One game's conversion: bytes of frames before and after, of everything else, seconds."""

    game: str
    transitions: int
    raw_frame_bytes: int
    compressed_frame_bytes: int
    other_bytes: int  # actions, rewards, returns-to-go, episode and block tables
    seconds: float
    skipped: bool = False

    @property
    def ratio(self) -> float:
        return self.raw_frame_bytes / max(1, self.compressed_frame_bytes)


def _check_options(level: int, block_frames: int) -> None:
    if not 1 <= level <= MAX_LEVEL:
        raise UserError(f"--level must be in [1, {MAX_LEVEL}] (zstd), got {level}")
    if block_frames < 1:
        raise UserError(f"--block-transitions must be positive, got {block_frames}")


def _other_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*")
               if p.is_file() and p.name not in ("frames.zst", "frames.npy"))


def compress_game(src: GameData, out: Path, *, level: int, block_frames: int,
                  overwrite: bool = False, command: str = "") -> CompressSummary:
    """Write ``out/<game>``: ``src`` with compressed frames (see the module docstring)."""
    _check_options(level, block_frames)
    if src.frame_codec is not None:
        raise UserError(f"{src.directory}: its frames are compressed already")
    out = Path(out)
    final = out / src.name
    if final.resolve() == src.directory.resolve():
        raise UserError(f"--out {out} is the source's own directory; choose another")
    out.mkdir(parents=True, exist_ok=True)
    source_id = data_identity([src])
    lock = game_lock_path(out, src.name)
    fd = acquire_lock(lock, "game-store", final)
    work = out / f".{src.name}.partial"
    t0 = time.perf_counter()
    raw_bytes = sum(sh.frames.nbytes for sh in src.shards)
    try:
        if (final / MANIFEST).is_file() and not overwrite:
            old = read_manifest(final)
            if provenance_of(old).get("compressed", {}).get("source_identity") == source_id:
                g = GameData(final)
                return CompressSummary(src.name, g.num_transitions, raw_bytes, sum(
                    sh.frames.compressed_bytes for sh in g.shards), _other_bytes(final), 0.0, True)
            raise UserError(f"{final} already holds a dataset for {src.name}; pass --overwrite "
                            "to replace it")
        if final.exists() and not (final / MANIFEST).is_file() and not overwrite:
            raise UserError(f"{final} exists and is not a complete game store; remove it or "
                            "pass --overwrite")
        if work.exists():  # left by an interrupted earlier conversion
            shutil.rmtree(work)
        work.mkdir()
        shards, packed = [], 0
        for info, sh in zip(src.manifest["shards"], src.shards, strict=True):
            d = work / info["name"]
            d.mkdir()
            bounds = episode_blocks(sh.ep_frame_start, sh.ep_length, len(sh.frames), block_frames)
            packed += write_blocks(d, np.asarray(sh.frames), bounds, level)
            episodes = list(zip(*(np.asarray(a).tolist() for a in (
                sh.ep_frame_start, sh.ep_length, sh.ep_step_offset, sh.ep_flags, sh.ep_return)),
                strict=True))
            save_shard_tables(d, [np.asarray(sh.actions)], [np.asarray(sh.rewards)],
                              [np.asarray(sh.returns_to_go)], episodes)
            shards.append({**info, "blocks": len(bounds) - 1})
        provenance = dict(src.provenance)
        provenance["compressed"] = {"command": command, "from": str(src.directory),
                                    "source_identity": source_id}
        manifest = {**src.manifest, "shards": shards, "provenance": provenance,
                    "frame_codec": {"name": CODEC, "level": level, "block_frames": block_frames}}
        verify_game(GameData(work, name=src.name, manifest=manifest), frames=False)
        atomic_write_json(work / MANIFEST, manifest, indent=1, durable=True)
        publish_game_dir(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        release_lock(fd, lock)
    return CompressSummary(src.name, src.num_transitions, raw_bytes, packed, _other_bytes(final),
                           time.perf_counter() - t0)


def compress_dataset(src: Path, out: Path, games: list[str] | None = None, *, level: int,
                     block_frames: int, overwrite: bool = False, command: str = "",
                     progress: bool = False) -> list[CompressSummary]:
    """``compress_game`` for each game of the dataset ``src`` (default: all), in order."""
    _check_options(level, block_frames)
    dataset = open_dataset(src, games)
    summaries = []
    for name in dataset.games:
        s = compress_game(dataset.game(name), out, level=level, block_frames=block_frames,
                          overwrite=overwrite, command=command)
        summaries.append(s)
        if progress:
            with contextlib.suppress(OSError):
                what = "already compressed" if s.skipped else f"{s.seconds:.1f} s"
                print(f"[compress] {name}: {human_bytes(s.raw_frame_bytes)} of frames -> "
                      f"{human_bytes(s.compressed_frame_bytes)} ({s.ratio:.1f}x) + "
                      f"{human_bytes(s.other_bytes)} of tables; {what}", flush=True)
    return summaries
