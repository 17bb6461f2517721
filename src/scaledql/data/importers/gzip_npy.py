"""``gzip(np.save(array))`` files, the format of Dopamine's replay checkpoints: read fast, never unpickled.

Inflate: zlib-ng (the ``zlib-ng`` package), through its C gzip reader, which inflates straight
into the caller's buffer. Chosen by measurement against ISA-L (``isal``) and the standard
library (benchmarks/README.md, "DQN Replay import"): on Atari frames saved at gzip level 9 (as
Dopamine saves them) it inflated 1.3-3x faster than ISA-L and ~10x faster than ``gzip``. Without
zlib-ng the standard library's gzip is used: the same bytes, slower.

Every stream is read to its end, so its CRC and length are checked. Arrays are parsed with
``npy_header.read_header`` (numpy's header reader, every failure one ``ValueError``); object
dtypes (pickles) are refused.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from scaledql.data.store.npy_header import read_header
from scaledql.errors import UserError

try:  # the C reader of zlib-ng's gzip module: readinto() inflates into the caller's buffer
    from zlib_ng import zlib_ng as _zng

    _GzipReader = _zng._GzipReader
    BACKEND = "zlib-ng"
    _ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, zlib.error,
                                                 _zng.error)
except (ImportError, AttributeError):  # pragma: no cover - the pinned environment has zlib-ng
    _GzipReader = None
    BACKEND = "gzip"
    _ERRORS = (OSError, EOFError, ValueError, zlib.error)

_READ_BUFFER = 1 << 20  # compressed bytes read per system call
GZIP_ERRORS = _ERRORS  # what a damaged gzip stream raises from ``gzip_reader``'s reads


def gzip_reader(raw: BinaryIO) -> BinaryIO:
    """A reader inflating the gzip stream of the open binary file ``raw`` (zlib-ng's C reader;
    the standard library's without it); it checks the stream's CRC and length at its end."""
    return (_GzipReader(raw, _READ_BUFFER) if _GzipReader is not None
            else gzip.GzipFile(fileobj=raw, mode="rb"))
MAX_SMALL_BYTES = 1 << 31  # read_all's limit: DQN Replay's small arrays hold ~1M entries


class NpyStream:
    """A ``.npy`` array inside a gzip file, read sequentially; ``dtype`` and ``shape`` from its
    header. ``read_into`` the data in pieces, then ``finish`` (checks the CRC) or ``close``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._raw = open(self.path, "rb", buffering=0)  # noqa: SIM115 (closed by close)
        except FileNotFoundError:
            raise UserError(f"{self.path}: missing") from None
        except OSError as exc:
            raise UserError(f"{self.path}: cannot read ({exc})") from None
        try:
            self._f = gzip_reader(self._raw)
            shape, fortran, dtype = read_header(self._f, versions=((1, 0), (2, 0)))
        except _ERRORS as exc:
            self._raw.close()
            raise UserError(f"{self.path}: not a gzip-compressed .npy array ({exc})") from None
        if dtype.hasobject:
            self.close()
            raise UserError(f"{self.path}: holds Python objects (a pickle); refusing to load it")
        if fortran and len(shape) > 1:
            self.close()
            raise UserError(f"{self.path}: Fortran-ordered array, not what Dopamine writes")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype: np.dtype = dtype

    def read_into(self, out: np.ndarray) -> None:
        """Fill ``out`` (C-contiguous, this array's dtype) with the next ``out.nbytes`` bytes."""
        view = memoryview(out.reshape(-1).view(np.uint8))
        got = 0
        try:
            while got < len(view):
                n = self._f.readinto(view[got:])
                if not n:
                    raise EOFError("file ends before the array does")
                got += n
        except _ERRORS as exc:
            raise UserError(f"{self.path}: truncated or corrupt ({exc})") from None

    def read_all(self) -> np.ndarray:
        """The whole array; refused before anything is allocated when its header claims more
        than ``MAX_SMALL_BYTES`` (a damaged header must not exhaust memory)."""
        nbytes = int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize
        if nbytes > MAX_SMALL_BYTES:
            self.close()
            raise UserError(f"{self.path}: its header claims {self.dtype}{list(self.shape)}, "
                            f"{nbytes:,} bytes, more than the {MAX_SMALL_BYTES >> 30} GiB a "
                            "checkpoint's small array can hold")
        out = np.empty(self.shape, self.dtype)
        self.read_into(out)
        self.finish()
        return out

    def finish(self) -> None:
        """Read to the end of the gzip stream (checks its CRC and length) and close."""
        try:
            while self._f.read(1 << 16):
                pass
        except _ERRORS as exc:
            raise UserError(f"{self.path}: truncated or corrupt ({exc})") from None
        finally:
            self.close()

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            self._raw.close()


def read_small_array(path: Path) -> np.ndarray:
    """Load a whole (small) gzip-compressed ``.npy`` array; never unpickles."""
    return NpyStream(path).read_all()


def gzip_identity(path: Path) -> list[int]:
    """``[size, crc32, isize]`` of a gzip file from its 8-byte trailer: a cheap identity of the
    uncompressed content (the CRC of the last member). ``UserError`` when it is missing."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 18:  # smaller than an empty gzip member: caught as corrupt when read
                return [size, 0, 0]
            f.seek(size - 8)
            tail = f.read(8)
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    return [size, int.from_bytes(tail[:4], "little"), int.from_bytes(tail[4:], "little")]
