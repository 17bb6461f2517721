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


@functools.cache
def game_names(suite: str) -> frozenset[str]:
    """The canonical game names of a suite, without building the suite (cheap: checking a
    store's manifest must not load MinAtar's games)."""
    if suite == "minatar":
        from scaledql.suites.minatar import GAMES

        return frozenset(GAMES)
    if suite == "atari":
        from scaledql.suites.atari import _registry

        return frozenset(_registry())
    raise UserError(f"unknown suite {suite!r} (suites: {', '.join(SUITE_NAMES)})")


__all__ = ["SUITE_NAMES", "EnvOptions", "GameSpec", "Suite", "game_names", "get_suite"]
