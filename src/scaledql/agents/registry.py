"""Learners by name: ``scaledql train --algo NAME`` and checkpoints find their class here.

``LEARNERS`` is a static table — name → module, config class, one-line summary — so that what
only needs names, summaries or options (``--help``, config files, ``--print-config``) never
imports a learner module, and with it torch. Adding a learner: one row here, the config
dataclass in ``agents/configs.py``, the module with its ``@register``-ed class. ``register``
refuses a class that does not match its row, and ``tests/test_registry.py`` imports every
module, so the table cannot drift from the classes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, NamedTuple

from scaledql.errors import UserError

if TYPE_CHECKING:
    from scaledql.agents.base import Learner
    from scaledql.agents.configs import LearnerConfig


class LearnerEntry(NamedTuple):
    module: str  # scaledql.agents.<module> defines the class
    config: str  # its config class in scaledql.agents.configs
    summary: str  # one line for --help


LEARNERS: dict[str, LearnerEntry] = {
    "scaled-ql": LearnerEntry("scaled_ql", "ScaledQLConfig", "offline multi-game Scaled "
                              "Q-Learning: C51 + CQL, feature normalization (the paper)"),
    "dqn": LearnerEntry("dqn", "DQNConfig", "double DQN (scalar Huber TD, no CQL): the online "
                        "learner that collects data"),
    "bc": LearnerEntry("bc", "BCConfig", "multi-game behaviour cloning: the Scaled QL network, "
                       "cross-entropy on data actions"),
    "dt": LearnerEntry("decision_transformer", "DecisionTransformerConfig", "multi-game "
                       "Decision Transformer (Lee et al. 2022): the paper's DT baseline"),
    "mae": LearnerEntry("mae", "MAEConfig", "masked-autoencoder pretraining of the Scaled QL "
                        "encoder on frames (plays randomly)"),
}

_REGISTRY: dict[str, type[Learner]] = {}


def register(cls: type[Learner]) -> type[Learner]:
    """Class decorator: make a learner available under ``cls.name`` (a row of ``LEARNERS``)."""
    entry = LEARNERS.get(cls.name)
    if entry is None:
        raise ValueError(f"learner {cls.name!r} has no row in agents.registry.LEARNERS")
    if cls.__module__ != f"scaledql.agents.{entry.module}":
        raise ValueError(f"learner {cls.name!r} is defined in {cls.__module__}, its row says "
                         f"scaledql.agents.{entry.module}")
    if cls.config_class is not learner_config_class(cls.name):
        raise ValueError(f"learner {cls.name!r}: config_class is not configs.{entry.config}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two learners named {cls.name!r}")
    cls.summary = entry.summary
    _REGISTRY[cls.name] = cls
    return cls


def _entry(name: str) -> LearnerEntry:
    if name not in LEARNERS:
        raise UserError(f"unknown learner {name!r} (registered: {', '.join(LEARNERS)})")
    return LEARNERS[name]


def learner_names() -> list[str]:
    """Registered learner names, in the table's order (no learner module is imported)."""
    return list(LEARNERS)


def learner_summary(name: str) -> str:
    return _entry(name).summary


def learner_config_class(name: str) -> type[LearnerConfig]:
    """The learner's config dataclass, without importing the learner (nor torch)."""
    from scaledql.agents import configs

    return getattr(configs, _entry(name).config)


def learner_class(name: str) -> type[Learner]:
    """The learner class (imports its module, and torch, on first use)."""
    entry = _entry(name)
    if name not in _REGISTRY:
        importlib.import_module(f"scaledql.agents.{entry.module}")
    if name not in _REGISTRY:
        raise ValueError(f"scaledql.agents.{entry.module} registers no learner {name!r}")
    return _REGISTRY[name]
