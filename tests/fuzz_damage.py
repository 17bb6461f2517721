"""Damage for the fuzz targets (``fuzz_cases``): Hypothesis strategies of changes to one file
(``Damage``) and the functions that apply them: bytes (truncation, flips, insertions, deep
nesting), JSON values set, nudged or deleted at any path, ``.npy`` headers rewritten and
elements set."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

# ------------------------------------------------------------------------------------------------
# Damage


@dataclass(frozen=True)
class Damage:
    """One change to one file: ``kind`` (what), ``file`` (relative to the input's root) and
    ``args`` (the drawn values)."""

    kind: str
    file: str
    args: tuple = ()


def damage(kind: str, file: str, *args: st.SearchStrategy) -> st.SearchStrategy[Damage]:
    """Damages of one kind to one file, the drawn ``args`` in order (shown as they are when a
    case fails, so that it can be copied into the corpus)."""
    return st.builds(Damage, st.just(kind), st.just(file), st.tuples(*args))


INTERESTING = [0, 1, -1, 2, 3, 5, 6, 9, 2**31 - 1, 2**31, -(2**31), 2**63 - 1, 2**63, 10**12,
               0.5, 1e308, float("nan"), float("inf"), float("-inf"), True, False, None, "",
               "3", "shard_00000", "../shard_00000", "/etc", "minatar", "atari", "breakout",
               [], {}, [10, 10, 10], [3]]
json_scalars = st.one_of(st.sampled_from(INTERESTING), st.none(), st.booleans(),
                         st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4)
                           | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=8)


def json_paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path in a JSON value (the root included)."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += json_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:6]):
            out += json_paths(v, (*prefix, i))
    return out


def _json_edit(obj: Any, path: tuple, op: str, value: Any) -> Any:
    if not path:
        return value if op != "delete" else {}
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if op == "delete":
        del parent[key]
    elif op == "nudge" and isinstance(parent[key], (int, float)) \
            and not isinstance(parent[key], bool):
        parent[key] = parent[key] + value
    else:
        parent[key] = value
    return obj


def text_damage(file: str) -> st.SearchStrategy[Damage]:
    """Byte-level damage of a text or binary file."""
    return st.one_of(
        damage("truncate", file, st.floats(0, 1)),
        damage("flip", file, st.floats(0, 1), st.integers(0, 255)),
        damage("insert", file, st.floats(0, 1), st.binary(min_size=1, max_size=16)),
        damage("nest", file, st.integers(1, 200_000)),
        damage("replace", file, st.binary(max_size=64)),
    )


def json_damage(file: str, base: Any) -> st.SearchStrategy[Damage]:
    """Damage of a JSON file: a value set, nudged by one or deleted at any path, or bytes."""
    paths = json_paths(base)
    edit = damage("json", file, st.sampled_from(paths),
                  st.sampled_from(["set", "set", "delete", "nudge"]), json_values)
    nudge = damage("json", file, st.sampled_from(paths), st.just("nudge"),
                   st.sampled_from([-1, 1, 2**32, 0.5]))
    return st.one_of(edit, edit, nudge, text_damage(file))


def apply_bytes(path: Path, d: Damage) -> None:
    data = path.read_bytes()
    at = lambda frac: min(len(data), int(frac * len(data)))  # noqa: E731
    if d.kind == "truncate":
        path.write_bytes(data[:at(d.args[0])])
    elif d.kind == "flip" and data:
        k = min(len(data) - 1, at(d.args[0]))
        path.write_bytes(data[:k] + bytes([data[k] ^ (d.args[1] or 1)]) + data[k + 1:])
    elif d.kind == "insert":
        path.write_bytes(data[:at(d.args[0])] + d.args[1] + data[at(d.args[0]):])
    elif d.kind == "nest":
        path.write_text("[" * d.args[0] + "]" * d.args[0])
    elif d.kind == "replace":
        path.write_bytes(d.args[0])


def apply_json(path: Path, d: Damage) -> None:
    if d.kind != "json":
        apply_bytes(path, d)
        return
    p, op, v = d.args
    obj = json.loads(path.read_text())
    try:
        obj = _json_edit(obj, p, op, v)
    except (KeyError, IndexError, TypeError):  # the path does not apply after all
        return
    path.write_text(json.dumps(obj))


# -- .npy files ----------------------------------------------------------------------------------

NPY_DESCRS = ["<i4", "<i8", "<f4", "<f8", "|u1", "|b1", "|O", "<U3", "|V4", ">i4", ">f4",
              "<c8", "<m8[s]", "float32", "'", "", "<i4 ", "[('a', '<i4')]"]
npy_shapes = st.one_of(st.tuples(), st.tuples(st.integers(-3, 40)),
                       st.tuples(st.integers(-1, 40), st.integers(-1, 12)),
                       st.lists(st.integers(-(2**65), 2**65), max_size=5).map(tuple),
                       st.tuples(st.integers(0, 40), st.just(10), st.just(10), st.just(10)))
npy_header_text = st.one_of(
    st.builds(lambda d, f, s: repr({"descr": d, "fortran_order": f, "shape": s}),
              st.sampled_from(NPY_DESCRS), st.sampled_from([False, True, 0, 1, "x", None]),
              npy_shapes),
    st.text(max_size=60),
    st.builds(lambda n: "{'descr': '<i4', 'fortran_order': False, 'shape': " + "(" * n
              + ")" * n + "}", st.integers(1, 5000)),
)


def npy_header_bytes(text: str, version: int) -> bytes:
    body = text.encode("latin1", "replace") + b"\n"
    if version == 1:
        return b"\x93NUMPY\x01\x00" + (len(body) & 0xFFFF).to_bytes(2, "little") + body
    return b"\x93NUMPY" + bytes([version, 0]) + len(body).to_bytes(4, "little") + body


def npy_offset(data: bytes) -> int:
    if len(data) < 10 or data[6] not in (1, 2, 3):
        return min(len(data), 10)
    if data[6] == 1:
        return 10 + int.from_bytes(data[8:10], "little")
    return 12 + int.from_bytes(data[8:12], "little")


def npy_damage(file: str, dtype: np.dtype) -> st.SearchStrategy[Damage]:
    """Damage of a ``.npy`` file: a new header (same data), bytes in or after the header, one
    element set to a drawn value, or the whole array replaced."""
    values = (st.integers(-(2**31), 2**31 - 1) if dtype.kind in "iu"
              else st.floats(width=32) if dtype == np.float32 else st.floats())
    if dtype == np.uint8:
        values = st.integers(0, 255)
    return st.one_of(
        damage("npy-header", file, npy_header_text, st.sampled_from([1, 1, 2, 3, 4, 0])),
        damage("npy-header-flip", file, st.integers(0, 127), st.integers(1, 255)),
        damage("npy-element", file, st.integers(0, 60), values),
        damage("npy-element", file, st.integers(0, 60),
               st.sampled_from([-1, 0, 1, 2, 3, 5, 6, 9, 255, 2**31 - 1] if dtype.kind in "iu"
                               else [np.nan, np.inf, -np.inf, 1e30, 0.0])),
        text_damage(file),
    )


def apply_npy(path: Path, d: Damage) -> None:
    data = path.read_bytes()
    off = npy_offset(data)
    if d.kind == "npy-header":
        path.write_bytes(npy_header_bytes(d.args[0], d.args[1]) + data[off:])
    elif d.kind == "npy-header-flip":
        k = min(d.args[0], max(0, off - 1))
        if k < len(data):
            path.write_bytes(data[:k] + bytes([data[k] ^ d.args[1]]) + data[k + 1:])
    elif d.kind == "npy-element":
        a = np.load(path)
        if a.size:
            flat = a.reshape(-1)
            with np.errstate(all="ignore"), contextlib.suppress(ValueError, OverflowError):
                flat[d.args[0] % flat.size] = d.args[1]
            np.save(path, a)
    else:
        apply_bytes(path, d)
