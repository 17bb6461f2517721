"""Learners: each one module behind one interface (``base.Learner``), found by name in the
registry. ``learner_class("scaled-ql")`` → the class; ``learner_names()`` → every registered one.

Names are resolved on first use (PEP 562): importing ``scaledql.agents.configs`` or the
registry must not import torch through this package's ``__init__``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"BatchSpec": "base", "Learner": "base", "Problem": "base",
            "LearnerConfig": "configs", "learner_class": "registry",
            "learner_names": "registry", "register": "registry"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
