"""Typed dataclass fields from untyped mappings (TOML, JSON): one line naming any bad key."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

from scaledql.errors import UserError


def _accepts(hint: Any, value: Any) -> tuple[bool, Any]:
    """Does ``value`` fit the type ``hint``? Returns (ok, converted value)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return type(None) in args, None
        for arg in args:
            ok, v = _accepts(arg, value)
            if ok and arg is not type(None):
                return True, v
        return False, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    if typing.get_origin(hint) is list:
        ok = isinstance(value, list) and all(_accepts(args[0], v)[0] for v in value)
        return ok, list(value) if ok else value
    return isinstance(value, hint), value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def typed(cls: type, values: dict[str, Any], where: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check ``values`` against ``cls``'s dataclass fields: unknown keys and wrong types are one
    ``UserError`` naming the key. Returns the converted values (only those given)."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    out = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
            raise UserError(f"{where}: unknown key {key!r}{hint}")
        ok, converted = _accepts(hints[key], value)
        if not ok:
            raise UserError(f"{where}: {key} must be {_type_name(hints[key])}, got {value!r}")
        out[key] = converted
    return out
