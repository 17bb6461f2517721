"""Small file helpers every writer shares: atomic writes and exclusive locks per output.

Temporary files are named ``.NAME.tmp-PID`` beside their destination; a writer killed mid-write
leaves one behind, and the next write of the same file removes those of dead processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scaledql.errors import UserError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_path(path: Path) -> Path:
    """Where a write of ``path`` by this process goes before its rename."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def remove_stale_temporaries(path: Path) -> None:
    """Delete ``.NAME.tmp-PID`` files left beside ``path`` by writers that were killed mid-write."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def remove_stale_temporaries_in(directory: Path) -> None:
    """Every ``.NAME.tmp-PID`` in ``directory`` whose writer is dead (whatever NAME)."""
    directory = Path(directory)
    if not directory.is_dir():
        return
    for tmp in directory.glob(".*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)) \
                and tmp.is_file():
            with contextlib.suppress(OSError):
                tmp.unlink()


@contextmanager
def atomic_output(path: Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; renamed into place when the block
    succeeds, removed when it fails. Readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = temp_path(path)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file and a rename: readers never see half a file."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: Path, obj: Any, *, indent: int = 2, durable: bool = False) -> None:
    """``obj`` as JSON (``indent``) written like ``atomic_write_text``. ``durable``: fsync the
    file before its rename and the directory after, so that what was published survives a
    crash (a game store's manifest)."""
    with atomic_output(path, fsync=durable) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n")
    if durable:
        fsync_dir(Path(path).parent)


def fsync_dir(path: Path) -> None:
    """fsync a directory, making the renames and new files in it durable (skipped on
    filesystems that do not let a directory be fsynced)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def acquire_lock(lock_file: Path, what: str, subject: Path | str) -> int:
    """Take an exclusive ``flock`` on ``lock_file`` (created if needed) and write our pid in it;
    returns its descriptor (closing it releases the lock). A second holder gets one
    ``UserError`` line naming ``subject`` and the first holder. Filesystems without ``flock``
    go unguarded."""
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # a failed holder removed its empty folder meanwhile
            lock_file.parent.mkdir(parents=True, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{subject} is in use by {holder} (one {what} writer at a time)") \
                from None
        except OSError:  # no flock on this filesystem (some network ones)
            return fd
        try:  # a holder that released it may have removed the file meanwhile: lock the new one
            same = os.stat(lock_file).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()}".encode(), 0)
    return fd


def release_lock(fd: int, lock_file: Path) -> None:
    """Remove ``lock_file`` and release the lock ``acquire_lock`` returned as ``fd``."""
    with contextlib.suppress(OSError):
        os.unlink(lock_file)
    os.close(fd)


@contextmanager
def file_lock(lock_file: Path, what: str, subject: Path | str | None = None,
              remove: bool = False) -> Iterator[None]:
    """Hold ``acquire_lock(lock_file, ...)`` for the block; ``remove``: delete the lock file
    when done (for locks beside data that should leave no trace)."""
    fd = acquire_lock(lock_file, what, subject if subject is not None else lock_file)
    try:
        yield
    finally:
        if remove:
            release_lock(fd, Path(lock_file))
        else:
            os.close(fd)


@contextmanager
def exclusive_lock(directory: Path, what: str = "output") -> Iterator[None]:
    """Hold ``DIR/.lock`` for the block; a second holder gets one line naming the first.

    An ``flock`` dies with its process, so a killed run never leaves a stale lock behind. When
    the block raises, the folders the lock created (``DIR`` and missing parents) are removed if
    they are still empty: an input refused inside the block leaves nothing behind.
    """
    directory = Path(directory)
    made = missing_dirs(directory)
    try:
        with file_lock(directory / ".lock", what, directory, remove=True):
            yield
    except BaseException:
        remove_empty_dirs(made)  # a block that failed before writing leaves no empty folder
        raise


def missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first: what creating ``path``
    would make, and what ``remove_empty_dirs`` takes back when nothing was written there."""
    out = []
    path = Path(path)
    while not path.exists() and path != path.parent:
        out.append(path)
        path = path.parent
    return out


def remove_empty_dirs(dirs: list[Path]) -> None:
    """Remove each of ``dirs`` (deepest first) while it is empty; stop at the first that is not
    (another writer's files, or ours after a partial success, are never touched)."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            return
