"""Loading user code that registers learners, value targets and suites (docs/extending.md).

Three ways, all ending in the same registries (``agents.registry.register``,
``value_targets.register_value_target``, ``suites.register_suite``):

- **entry points** of an installed package, groups ``scaledql.learners``,
  ``scaledql.value_targets`` and ``scaledql.suites`` (``name = "module:attr"``): found by name and
  loaded only when that name is first used, so ``--help`` lists them without importing them;
- **``SCALEDQL_PLUGINS``**: modules to import, separated by commas, each a module name
  (``my_pkg.plugin``) or the path of a ``.py`` file; read once per process, when a name is
  first looked up. Child processes (collection jobs, torchrun workers) inherit it;
- **``scaledql --plugin MODULE``** (repeatable, anywhere on the command line): appended to
  ``SCALEDQL_PLUGINS`` before anything else is parsed, so its learners are ``--algo`` choices
  and its suites ``--suite`` values, in this process and in those it starts.

A module that fails to import is one ``UserError`` naming it (the CLI prints one line).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Collection, Mapping
from importlib.metadata import EntryPoint
from importlib.metadata import entry_points as _entry_points
from pathlib import Path
from typing import Any

from scaledql.errors import UserError

ENV_VAR = "SCALEDQL_PLUGINS"
FLAG = "--plugin"
_loaded: set[str] = set()  # what SCALEDQL_PLUGINS named and was imported (by its text)
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")  # a plugin class's registered name


def plugin_specs(text: str | None = None) -> list[str]:
    """The modules ``SCALEDQL_PLUGINS`` (or ``text``) names, in order, without repeats."""
    text = os.environ.get(ENV_VAR, "") if text is None else text
    return list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))


def load_env_plugins() -> None:
    """Import every module ``SCALEDQL_PLUGINS`` names that is not imported yet."""
    for spec in plugin_specs():
        if spec not in _loaded:
            _loaded.add(spec)  # first: a plugin that looks a name up must not recurse here
            try:
                import_plugin(spec)
            except BaseException:
                _loaded.discard(spec)
                raise


def import_plugin(spec: str) -> Any:
    """Import ``spec``: a module name, or the path of a ``.py`` file (imported as its stem)."""
    where = f"plugin {spec!r}"
    try:
        if spec.endswith(".py") or os.sep in spec or "/" in spec:
            path = Path(spec).expanduser().resolve()
            if not path.is_file():
                raise UserError(f"{where}: no such file")
            name = path.stem
            module = sys.modules.get(name)
            if module is not None and Path(getattr(module, "__file__", "") or "").resolve() == path:
                return module
            loader = importlib.util.spec_from_file_location(name, path)
            if loader is None or loader.loader is None:
                raise UserError(f"{where}: not an importable Python file")
            module = importlib.util.module_from_spec(loader)
            sys.modules[name] = module  # before running it: its classes pickle by this name
            try:
                loader.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            return module
        return importlib.import_module(spec)
    except UserError:
        raise
    except ModuleNotFoundError as exc:
        hint = ""
        if exc.name == spec.split(".")[0] and Path(f"{exc.name}.py").is_file():
            hint = f" (./{exc.name}.py is not on sys.path: pass {FLAG} ./{exc.name}.py)"
        raise UserError(f"{where}: {exc}{hint}") from None
    except Exception as exc:  # the plugin's own error: say whose, in one line
        raise UserError(f"{where} failed to import: {type(exc).__name__}: {exc}") from None


def take_plugin_flags(argv: list[str]) -> list[str]:
    """``argv`` without its ``--plugin X`` / ``--plugin=X`` (before a ``--``); each X is
    appended to ``SCALEDQL_PLUGINS`` and imported now."""
    rest, named, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        if arg == FLAG:
            if i + 1 >= len(argv):
                raise UserError(f"{FLAG} needs a module name or a .py file")
            named.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith(FLAG + "="):
            named.append(arg[len(FLAG) + 1:])
        else:
            rest.append(arg)
        i += 1
    if named:
        os.environ[ENV_VAR] = ",".join(plugin_specs(",".join([os.environ.get(ENV_VAR, ""),
                                                              *named])))
    load_env_plugins()
    return rest


@functools.cache
def entry_points(group: str) -> dict[str, EntryPoint]:
    """Installed packages' entry points of ``group``, by name (none is loaded)."""
    return {ep.name: ep for ep in _entry_points(group=group)}


def load_entry_point(group: str, name: str) -> Any:
    ep = entry_points(group)[name]
    try:
        return ep.load()
    except Exception as exc:
        raise UserError(f"entry point {name!r} ({ep.value}) of group {group} failed to load: "
                        f"{type(exc).__name__}: {exc}") from None


def find_registered_class(group: str, name: str, registered: Mapping[str, type],
                          register: Callable[[type], object], what: str) -> type | None:
    """The class registered as ``name`` in ``registered``: already, else after importing
    ``SCALEDQL_PLUGINS``, else from the entry point ``name`` of ``group`` (loaded only now, and
    passed to ``register`` when its module did not register it). ``what`` names the kind of
    class in the error for an entry point that gives something else ("a learner class")."""
    if name not in registered:
        load_env_plugins()
    if name not in registered and name in entry_points(group):
        obj = load_entry_point(group, name)
        if isinstance(obj, type) and name not in registered:
            register(obj)  # a class its module did not decorate
        if registered.get(name) is not obj:
            raise UserError(f"entry point {name!r} of group {group} is {obj!r}, not {what} "
                            f"named {name!r}")
    return registered.get(name)


def plugin_class_name(cls: type, builtin: Collection[str], kind: str, caller: str) -> str:
    """``cls.name``, checked for registering a plugin class as a ``kind`` ("learner"): a
    lower-case name that no built-in one has (``ValueError`` naming ``caller`` otherwise)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{caller}: {cls.__qualname__}.name must be a lower-case name "
                         f"(letters, digits, '-', '_', '.'), got {name!r}")
    if name in builtin:
        raise ValueError(f"{caller}: {name!r} is a built-in {kind}; choose another name")
    return name


def add_plugin_class(registered: dict[str, type], name: str, cls: type, kind: str) -> type:
    """Record a plugin's ``cls`` as ``name`` in ``registered``; another class of that name is
    refused (the same class imported twice, by path and by name, replaces itself). Its
    ``summary`` for --help defaults to its docstring's first line."""
    old = registered.get(name)
    if old is not None and old is not cls and _where(old) != _where(cls):
        raise ValueError(f"two {kind}s named {name!r}: {_where(old)} and {_where(cls)}")
    if "summary" not in cls.__dict__ or not getattr(cls, "summary", ""):
        cls.summary = (inspect.getdoc(cls) or f"plugin {kind} from {cls.__module__}"  # type: ignore[attr-defined]
                       ).strip().splitlines()[0]
    registered[name] = cls
    return cls


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def registered_summary(name: str, tables: tuple[dict, ...], group: str, kind: str) -> str | None:
    """The one-line summary of a registered class (built-in or plugin) for --help; an entry
    point's is described, not loaded; None for an unknown name."""
    for table in tables:
        if name in table:
            return table[name].summary
    points = entry_points(group)
    return f"plugin {kind} ({points[name].value})" if name in points else None
