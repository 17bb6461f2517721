"""Learners by name: ``scaledql train --algo NAME`` and checkpoints find their class here."""

from __future__ import annotations

import importlib

from scaledql.agents.base import Learner
from scaledql.errors import UserError

_REGISTRY: dict[str, type[Learner]] = {}
# Modules that define learners, imported on first lookup (so importing the registry is cheap).
LEARNER_MODULES = ("scaled_ql", "dqn", "bc", "decision_transformer", "mae")


def register(cls: type[Learner]) -> type[Learner]:
    """Class decorator: make a learner available under ``cls.name``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two learners named {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for module in LEARNER_MODULES:
        try:
            importlib.import_module(f"scaledql.agents.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"scaledql.agents.{module}":
                raise


def learner_names() -> list[str]:
    """Registered learner names, in registration order."""
    _load_all()
    return list(_REGISTRY)


def learner_class(name: str) -> type[Learner]:
    _load_all()
    if name not in _REGISTRY:
        raise UserError(f"unknown learner {name!r} (registered: {', '.join(_REGISTRY)})")
    return _REGISTRY[name]
