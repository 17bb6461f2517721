"""The one reader of ``.npy`` headers in files nobody vouches for (game stores, DQN Replay
checkpoints).

numpy's own header functions raise whatever their parsing hits on a damaged header:
``ValueError`` mostly, but also ``SyntaxError`` and ``TypeError`` from ``ast.literal_eval``,
``tokenize.TokenError`` from the Python 2 header filter it falls back to, ``RecursionError`` on
deep nesting, and a ``UserWarning`` on stderr when that filter succeeds (found by
``benchmarks/fuzz_readers.py``). Here every such failure is one ``ValueError`` with a short
reason, and no warning is printed; errors of the stream itself (``OSError``, a gzip error)
pass through unchanged for the caller to name.
"""

from __future__ import annotations

import tokenize
import warnings
from typing import BinaryIO

import numpy as np

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
