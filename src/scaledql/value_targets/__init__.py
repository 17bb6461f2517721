"""Value targets by name: what a Q-network outputs per action, how Q is read from those outputs,
and the TD loss against a target built from the backup (``base.ValueTarget``).

``scaledql train --loss NAME`` (``learner.loss``) picks one; the learner (``agents/scaled_ql.py``)
only ever talks to the interface, so the CQL term, double-Q selection, n-step returns and
feature normalization work with every target. ``VALUE_TARGETS`` is a static table — name →
module, one-line summary — so that what only needs names (``--help``, config validation) never
imports torch; ``tests/test_value_targets.py`` checks it against the classes.

Others are registered as learners are (docs/extending.md): ``@register_value_target`` on a
``ValueTarget`` subclass in your own module, loaded by ``--plugin`` / ``SCALEDQL_PLUGINS``, or an
entry point of group ``scaledql.value_targets``. Definitions and sources: docs/defaults.md,
"Value targets".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, NamedTuple

from scaledql.errors import UserError

if TYPE_CHECKING:
    import torch

    from scaledql.value_targets.base import TargetOptions, ValueTarget


class ValueTargetEntry(NamedTuple):
    module: str  # scaledql.value_targets.<module> defines the class
    summary: str  # one line for --help


VALUE_TARGETS: dict[str, ValueTargetEntry] = {
    "c51": ValueTargetEntry("categorical", "distributional: r + γ^k z projected onto the atoms "
                            "z, cross-entropy (the paper; Bellemare et al. 2017)"),
    "hl-gauss": ValueTargetEntry("categorical", "histogram loss: the scalar target smoothed by a "
                                 "Gaussian of σ = hl_gauss_sigma_ratio × bin width over "
                                 "num_atoms bins, cross-entropy (Farebrother et al. 2024)"),
    "two-hot": ValueTargetEntry("categorical", "histogram loss: the scalar target split between "
                                "its two nearest bin centres, cross-entropy"),
    "mse": ValueTargetEntry("scalar", "scalar Q regressed onto r + γ^k Q_target: ½ squared "
                            "error, or Huber with huber_delta"),
}

ENTRY_POINT_GROUP = "scaledql.value_targets"
_BUILTIN: dict[str, type[ValueTarget]] = {}
_PLUGINS: dict[str, type[ValueTarget]] = {}  # registered from outside the package, in order


def register_value_target(cls: type[ValueTarget]) -> type[ValueTarget]:
    """Class decorator: make a value target available as ``--loss cls.name``.

    A class of ``scaledql.value_targets`` must match its row of ``VALUE_TARGETS``. Any other is
    a plugin: a lower-case name no built-in target has, and a ``summary`` (default: its
    docstring's first line). Registering the same class again is a no-op."""
    from scaledql import plugins
    from scaledql.value_targets.base import ValueTarget

    if not (isinstance(cls, type) and issubclass(cls, ValueTarget)):
        raise TypeError(f"register_value_target: {cls!r} is not a subclass of "
                        "scaledql.value_targets.base.ValueTarget")
    if cls.__module__.startswith("scaledql.value_targets."):
        entry = VALUE_TARGETS.get(getattr(cls, "name", None))  # type: ignore[arg-type]
        if entry is None or cls.__module__ != f"scaledql.value_targets.{entry.module}":
            raise ValueError(f"value target {cls.__qualname__} ({cls.__module__}) has no "
                             "matching row in value_targets.VALUE_TARGETS")
        cls.summary = entry.summary
        _BUILTIN[cls.name] = cls
        return cls
    name = plugins.plugin_class_name(cls, VALUE_TARGETS, "value target", "register_value_target")
    return plugins.add_plugin_class(_PLUGINS, name, cls, "value target")


def value_target_names() -> list[str]:
    """Every value target name: the built-in ones in the table's order, then plugins' (no
    module is imported for it, nor an entry point loaded)."""
    from scaledql import plugins

    plugins.load_env_plugins()
    return list(dict.fromkeys([*VALUE_TARGETS, *_PLUGINS, *plugins.entry_points(ENTRY_POINT_GROUP)]))


def value_target_summary(name: str) -> str:
    """One line for --help; an entry point's target is described, not loaded."""
    from scaledql import plugins

    summary = plugins.registered_summary(name, (VALUE_TARGETS, _PLUGINS), ENTRY_POINT_GROUP,
                                         "value target")
    if summary is None:
        raise _unknown(name)
    return summary


def check_value_target_name(name: object) -> None:
    """``UserError`` unless ``name`` is a registered value target (imports no target module)."""
    if not isinstance(name, str) or name not in value_target_names():
        raise _unknown(name)


def _unknown(name: object) -> UserError:
    return UserError(f"unknown loss {name!r} (choose from {', '.join(value_target_names())}; a "
                     "plugin's value target needs its module loaded: docs/extending.md)")


def value_target_class(name: str) -> type[ValueTarget]:
    """The class registered as ``name`` (imports its module, and torch, on first use)."""
    from scaledql import plugins

    entry = VALUE_TARGETS.get(name)
    if entry is not None:
        if name not in _BUILTIN:
            importlib.import_module(f"scaledql.value_targets.{entry.module}")
        return _BUILTIN[name]
    cls = plugins.find_registered_class(ENTRY_POINT_GROUP, name, _PLUGINS, register_value_target,
                                        "a value target class")
    if cls is None:
        raise _unknown(name)
    return cls


def make_value_target(options: TargetOptions, device: torch.device | str | None = None
                      ) -> ValueTarget:
    """The value target ``options.loss`` names, built from ``options`` (a ``ScaledQLConfig``
    or anything with the fields of ``base.TargetOptions``), its tensors on ``device``."""
    return value_target_class(options.loss)(options, device)


__all__ = ["ENTRY_POINT_GROUP", "VALUE_TARGETS", "ValueTargetEntry", "check_value_target_name",
           "make_value_target", "register_value_target", "value_target_class",
           "value_target_names", "value_target_summary"]
