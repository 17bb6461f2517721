"""Learners by name: ``scaledql train --algo NAME`` and checkpoints find their class here.

``LEARNERS`` is a static table — name → module, config class, one-line summary — so that what
only needs names, summaries or options (``--help``, config files, ``--print-config``) never
imports a learner module, and with it torch. Adding a learner: one row here, the config
dataclass in ``agents/configs.py``, the module with its ``@register``-ed class. ``register``
refuses a class that does not match its row, and ``tests/test_registry.py`` imports every
module, so the table cannot drift from the classes.
"""

from __future__ import annotations

import dataclasses
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
# Learners defined outside scaledql.agents (docs/extending.md): name → class, registration order.
_PLUGINS: dict[str, type[Learner]] = {}
ENTRY_POINT_GROUP = "scaledql.learners"


def register(cls: type[Learner]) -> type[Learner]:
    """Class decorator: make a learner available under ``cls.name``.

    A class of ``scaledql.agents`` must match its row of ``LEARNERS``. Any other class is a
    plugin (docs/extending.md): it brings its own ``config_class`` (a ``LearnerConfig``
    dataclass) and ``summary`` (default: its docstring's first line), and may not take a
    built-in learner's name."""
    from scaledql import plugins
    from scaledql.agents.base import Learner
    from scaledql.agents.configs import LearnerConfig

    if not (isinstance(cls, type) and issubclass(cls, Learner)):
        raise TypeError(f"register: {cls!r} is not a subclass of scaledql.agents.base.Learner")
    if cls.__module__.startswith("scaledql.agents."):
        return _register_builtin(cls)
    name = plugins.plugin_class_name(cls, LEARNERS, "learner", "register")
    config_class = getattr(cls, "config_class", None)
    if not (isinstance(config_class, type) and issubclass(config_class, LearnerConfig)
            and dataclasses.is_dataclass(config_class)):
        raise TypeError(f"register: {cls.__qualname__}.config_class must be a dataclass "
                        "subclass of scaledql.agents.configs.LearnerConfig")
    return plugins.add_plugin_class(_PLUGINS, name, cls, "learner")


def _register_builtin(cls: type[Learner]) -> type[Learner]:
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


def _plugin(name: str) -> type[Learner] | None:
    """A plugin learner by name: registered, else from SCALEDQL_PLUGINS, else an entry point
    (loaded only now: listing names never imports a plugin)."""
    from scaledql import plugins

    return plugins.find_registered_class(ENTRY_POINT_GROUP, name, _PLUGINS, register,
                                         "a learner class")


def _entry(name: str) -> LearnerEntry:
    if name not in LEARNERS:
        raise UserError(f"unknown learner {name!r} (registered: {', '.join(learner_names())}; "
                        "a plugin's learner needs its module loaded: docs/extending.md)")
    return LEARNERS[name]


def learner_names() -> list[str]:
    """Registered learner names: the built-in ones in the table's order, then plugins' (the
    learner modules are not imported, nor entry points loaded)."""
    from scaledql import plugins

    plugins.load_env_plugins()
    extra = [n for n in [*_PLUGINS, *plugins.entry_points(ENTRY_POINT_GROUP)] if n not in LEARNERS]
    return list(dict.fromkeys([*LEARNERS, *extra]))


def learner_summary(name: str) -> str:
    """One line for --help; an entry point's learner is described, not loaded."""
    from scaledql import plugins

    summary = plugins.registered_summary(name, (LEARNERS, _PLUGINS), ENTRY_POINT_GROUP, "learner")
    return summary if summary is not None else _entry(name).summary  # unknown: one UserError


def learner_config_class(name: str) -> type[LearnerConfig]:
    """The learner's config dataclass, without importing a built-in learner (nor torch)."""
    from scaledql.agents import configs

    if name not in LEARNERS and (cls := _plugin(name)) is not None:
        return cls.config_class
    return getattr(configs, _entry(name).config)


def learner_class(name: str) -> type[Learner]:
    """The learner class (imports its module, and torch, on first use)."""
    if name not in LEARNERS and (cls := _plugin(name)) is not None:
        return cls
    entry = _entry(name)
    if name not in _REGISTRY:
        importlib.import_module(f"scaledql.agents.{entry.module}")
    if name not in _REGISTRY:
        raise ValueError(f"scaledql.agents.{entry.module} registers no learner {name!r}")
    return _REGISTRY[name]
