"""``.npy`` headers: the one reader of those in files nobody vouches for (game stores, DQN
Replay checkpoints), and the fixed-size header of a game store's streamed ``frames.npy``.

numpy's own header functions raise whatever their parsing hits on a damaged header:
``ValueError`` mostly, but also ``SyntaxError`` and ``TypeError`` from ``ast.literal_eval``,
``tokenize.TokenError`` from the Python 2 header filter it falls back to, ``RecursionError`` on
deep nesting, and a ``UserWarning`` on stderr when that filter succeeds (found by
``benchmarks/fuzz_readers.py``). Here every such failure is one ``ValueError`` with a short
reason, and no warning is printed; errors of the stream itself (``OSError``, a gzip error)
pass through unchanged for the caller to name.

A game store's ``frames.npy`` is written as a stream of frames, or created at its final size and
filled in any order (``dqn_layout``): its header has a fixed size, ``FIXED_HEADER_BYTES``, so the
frames' offsets are known before the frame count is, and the header can be rewritten last.
"""

from __future__ import annotations

import tokenize
import warnings
from typing import BinaryIO

import numpy as np

FIXED_HEADER_BYTES = 128

_PARSE_ERRORS = (ValueError, SyntaxError, TypeError, tokenize.TokenError, RecursionError,
                 OverflowError, MemoryError, KeyError, IndexError)


def read_header(f: BinaryIO, versions: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (3, 0))
                ) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from the start of a ``.npy`` stream, which is left at the
    first data byte; ``ValueError`` for anything but a header numpy writes, of ``versions``."""
    fmt = np.lib.format
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            version = fmt.read_magic(f)
            if version not in versions:
                raise ValueError(f"unsupported .npy version {version}")
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = fmt.read_array_header_2_0(f)  # 2.0 and 3.0 alike
    except _PARSE_ERRORS as exc:
        reason = " ".join(str(exc).split())[:100]  # numpy's messages run over several lines
        raise ValueError(f"bad .npy header ({type(exc).__name__}: {reason})") from None
    if any(s < 0 for s in shape):  # numpy's own check lets negative dimensions through
        raise ValueError(f"bad .npy header (negative dimension in shape {tuple(shape)})")
    return tuple(shape), bool(fortran), dtype


def fixed_header(dtype: np.dtype | type, shape: tuple[int, ...]) -> bytes:
    """A version-1.0 ``.npy`` header padded to exactly ``FIXED_HEADER_BYTES`` bytes."""
    d = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
         "shape": tuple(int(s) for s in shape)}
    body = repr(d).encode("latin1")
    prefix = b"\x93NUMPY\x01\x00"
    pad = FIXED_HEADER_BYTES - len(prefix) - 2 - len(body) - 1
    if pad < 0:
        raise ValueError(f"shape {shape} too long for a fixed .npy header")
    header = body + b" " * pad + b"\n"
    return prefix + len(header).to_bytes(2, "little") + header
