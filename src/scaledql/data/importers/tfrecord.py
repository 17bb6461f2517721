"""TFRecord files, read without TensorFlow: the framing, its checksums, GZIP-compressed or not.

A TFRecord file is records back to back (tensorflow ``core/lib/io/record_writer.cc``; the format
is documented at https://www.tensorflow.org/tutorials/load_data/tfrecord)::

    uint64  length            little-endian
    uint32  masked_crc32c(length's 8 bytes)
    byte    data[length]
    uint32  masked_crc32c(data)

``masked_crc32c(x) = ((c >> 15 | c << 17) + 0xa282ead8) mod 2^32`` with ``c`` the CRC-32C
(Castagnoli) of ``x``. A ``compression_type="GZIP"`` file (RL Unplugged's raw episodes) is that
byte stream inside one gzip stream; TFDS's shards are plain.

Both checksums are checked on every record; a file that ends inside a record, a checksum that
does not match, or a damaged gzip stream is one ``UserError`` naming the file, the record and
its byte offset (in the uncompressed stream). CRC-32C comes from ``google-crc32c`` (Google's C
library, hardware-accelerated with SSE4.2/ARMv8 CRC instructions: an episode record is
megabytes of PNG, and a table-driven CRC in Python would run at a few MB/s, slower than
inflating and decoding it).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import google_crc32c

from scaledql.data.importers.gzip_npy import GZIP_ERRORS, gzip_reader
from scaledql.errors import UserError

MAX_RECORD_BYTES = 1 << 31  # an Atari episode record is at most ~100 MB (27,000 PNG frames)
_MASK_DELTA = 0xA282EAD8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def masked_crc32c(data: bytes | memoryview) -> int:
    c = google_crc32c.value(bytes(data) if isinstance(data, memoryview) else data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One record's bytes as a TFRecord file holds them (for tests and the fuzzer)."""
    head = _U64.pack(len(data))
    return (head + _U32.pack(masked_crc32c(head)) + data
            + _U32.pack(masked_crc32c(data)))


class TFRecordFile:
    """The records of one file, in order: ``for data in TFRecordFile(path, gzip): ...``.
    ``index`` is the number of the record last returned (0-based). Use as a context manager or
    call ``close``."""

    def __init__(self, path: Path, compressed: bool):
        self.path = Path(path)
        self.index = -1
        self.offset = 0  # uncompressed bytes consumed
        try:
            self._raw = open(self.path, "rb", buffering=0 if compressed else 1 << 20)  # noqa: SIM115
        except FileNotFoundError:
            raise UserError(f"{self.path}: missing") from None
        except OSError as exc:
            raise UserError(f"{self.path}: cannot read ({exc})") from None
        self._size = None if compressed else os.fstat(self._raw.fileno()).st_size
        try:
            self._f: BinaryIO = gzip_reader(self._raw) if compressed else self._raw
        except GZIP_ERRORS as exc:
            self._raw.close()
            raise UserError(f"{self.path}: not a GZIP TFRecord file ({exc})") from None
        self.compressed = compressed

    def __enter__(self) -> TFRecordFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self._f is not self._raw:
                self._f.close()
        finally:
            self._raw.close()

    def _read(self, n: int) -> bytes:
        try:
            data = self._f.read(n)
            while len(data) < n:  # a gzip reader may return less than asked
                more = self._f.read(n - len(data))
                if not more:
                    break
                data += more
        except GZIP_ERRORS as exc:
            raise UserError(f"{self.path}: damaged gzip stream in record {self.index + 1} "
                            f"(at byte {self.offset}): {exc}") from None
        return data

    def _fail(self, what: str) -> UserError:
        return UserError(f"{self.path}: record {self.index + 1} (at byte {self.offset}): {what}")

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self.next_record()
            if data is None:
                return
            yield data

    def next_record(self) -> bytes | None:
        """The next record's data; None at the end of the file (after the gzip stream's own
        CRC and length were checked)."""
        head = self._read(12)
        if not head:
            return None
        if len(head) < 12:
            raise self._fail(f"truncated: the file ends {len(head)} bytes into the record's "
                             "12-byte header")
        (length,) = _U64.unpack_from(head)
        (crc,) = _U32.unpack_from(head, 8)
        if masked_crc32c(head[:8]) != crc:
            raise self._fail("CRC mismatch on the length (damaged data)")
        if length > MAX_RECORD_BYTES or (self._size is not None
                                         and self.offset + 16 + length > self._size):
            raise self._fail(f"truncated: the record claims {length:,} bytes, more than the "
                             "file holds")
        body = self._read(length + 4)
        if len(body) < length + 4:
            raise self._fail(f"truncated: the record claims {length:,} bytes, the file ends "
                             f"after {max(0, len(body) - 4):,}")
        data = body[:length]
        (crc,) = _U32.unpack_from(body, length)
        if masked_crc32c(data) != crc:
            raise self._fail("CRC mismatch on the data (damaged data)")
        self.index += 1
        self.offset += 16 + length
        return data
