"""Game suites: ``get_suite("atari" | "minatar")`` → a ``Suite`` (see ``base``)."""

from __future__ import annotations

import functools

from scaledql.errors import UserError
from scaledql.suites.base import EnvOptions, GameSpec, Suite

SUITE_NAMES = ("minatar", "atari")


@functools.cache
def get_suite(name: str) -> Suite:
    if name == "minatar":
        from scaledql.suites.minatar import MinAtarSuite

        return MinAtarSuite()
    if name == "atari":
        from scaledql.suites.atari import AtariSuite

        return AtariSuite()
    raise UserError(f"unknown suite {name!r} (suites: {', '.join(SUITE_NAMES)})")


__all__ = ["SUITE_NAMES", "EnvOptions", "GameSpec", "Suite", "get_suite"]
