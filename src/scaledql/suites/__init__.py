"""Game suites: ``get_suite(name)`` → a ``Suite`` (see ``base``).

``minatar`` and ``atari`` are built in. Others are registered (docs/extending.md): with
``register_suite(suite)`` from user code — ``scaledql.suites.gym.GymSuite`` adapts any
gymnasium environments with discrete actions and image observations — or as entry points of
group ``scaledql.suites`` (a suite object, or a callable returning one), loaded on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from scaledql.errors import UserError
from scaledql.suites.base import EnvOptions, GameSpec, Suite

SUITE_NAMES = ("minatar", "atari")  # the built-in suites; suite_names() adds registered ones
ENTRY_POINT_GROUP = "scaledql.suites"
_REGISTERED: dict[str, Suite] = {}


def register_suite(suite: Suite) -> Suite:
    """Make ``suite`` available under ``suite.name`` to ``get_suite``, the commands' ``--suite``
    and every store, run and checkpoint that names it. Registering another suite under a name
    in use is refused (the built-in names included); the same suite again is a no-op."""
    name = getattr(suite, "name", None)
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"register_suite: {suite!r} has no valid name")
    if name in SUITE_NAMES:
        raise ValueError(f"register_suite: {name!r} is a built-in suite; choose another name")
    for method in ("games", "named_lists", "resolve_games", "spec", "make_env",
                   "make_vector_env"):
        if not callable(getattr(suite, method, None)):
            raise TypeError(f"register_suite: suite {name!r} has no {method}() (see "
                            "scaledql.suites.base.Suite)")
    for attr in ("default_sticky", "default_max_episode_steps"):
        if not isinstance(getattr(suite, attr, None), (int, float)):
            raise TypeError(f"register_suite: suite {name!r} has no {attr} (see "
                            "scaledql.suites.base.Suite)")
    old = _REGISTERED.get(name)
    if old is not None and old is not suite:
        raise ValueError(f"register_suite: a suite named {name!r} is already registered")
    _REGISTERED[name] = suite
    return suite


def _registered(name: str) -> Suite | None:
    """A registered suite: already, else from SCALEDQL_PLUGINS, else an entry point."""
    from scaledql import plugins

    if name not in _REGISTERED:
        plugins.load_env_plugins()
    if name not in _REGISTERED and name in plugins.entry_points(ENTRY_POINT_GROUP):
        obj = plugins.load_entry_point(ENTRY_POINT_GROUP, name)
        # a suite object, or a class or function that makes one
        suite = obj() if isinstance(obj, type) or not hasattr(obj, "make_env") else obj
        if name not in _REGISTERED:
            register_suite(suite)
        if getattr(suite, "name", None) != name:
            raise UserError(f"entry point {name!r} of group {ENTRY_POINT_GROUP} gives a suite "
                            f"named {getattr(suite, 'name', None)!r}")
    return _REGISTERED.get(name)


def suite_names() -> list[str]:
    """Every suite name: the built-in ones, then registered and entry-point ones (unloaded)."""
    from scaledql import plugins

    plugins.load_env_plugins()
    return list(dict.fromkeys([*SUITE_NAMES, *_REGISTERED,
                               *plugins.entry_points(ENTRY_POINT_GROUP)]))


def _unknown(name: str) -> UserError:
    return UserError(f"unknown suite {name!r} (suites: {', '.join(suite_names())}; a plugin's "
                     "suite needs its module loaded: docs/extending.md)")


def get_suite(name: str) -> Suite:
    if name in SUITE_NAMES:
        return _builtin(name)
    suite = _registered(name) if isinstance(name, str) else None
    if suite is None:
        raise _unknown(name)
    return suite


@functools.cache
def _builtin(name: str) -> Suite:
    return _builtin_class(name)()


def game_names(suite: str) -> frozenset[str]:
    """The canonical game names of a suite, without building a built-in suite (cheap: checking
    a store's manifest must not load MinAtar's games)."""
    if suite == "minatar":
        from scaledql.suites.minatar import GAMES

        return frozenset(GAMES)
    if suite == "atari":
        from scaledql.suites.atari import _registry

        return frozenset(_registry())
    return frozenset(get_suite(suite).games())


def suite_attribute(suite: str, attribute: str, default: Any) -> Any:
    """One of a suite's optional attributes (``Suite``'s docstring lists them), ``default``
    where the suite lacks it or is not registered in this process (a store of a plugin suite
    can still be checked and described). Built-in suites answer from their class, unbuilt
    (building the Atari suite loads ALE's registry)."""
    if suite in SUITE_NAMES:
        return getattr(_builtin_class(suite), attribute, default)
    if not isinstance(suite, str):
        return default
    try:
        found = _registered(suite)
    except UserError:
        return default
    return getattr(found, attribute, default)


def _builtin_class(name: str) -> type:
    if name == "minatar":
        from scaledql.suites.minatar import MinAtarSuite

        return MinAtarSuite
    from scaledql.suites.atari import AtariSuite

    return AtariSuite


def registered_scores(suite: str) -> Mapping[str, tuple[float, float]]:
    """A registered suite's reference table, game → (random, reference); empty when it has
    none (its scores are then raw returns only) or when no such suite is registered."""
    if suite in SUITE_NAMES or not isinstance(suite, str):
        return {}
    try:
        found = _registered(suite)
    except UserError:
        return {}
    return getattr(found, "reference_scores", None) or {}


__all__ = ["SUITE_NAMES", "EnvOptions", "GameSpec", "Suite", "game_names", "get_suite",
           "register_suite", "registered_scores", "suite_attribute", "suite_names"]
