"""The ``scaledql`` command: a thin shell that parses, validates and calls the library.

Each command group lives in its own module exposing ``register(subparsers)``; a registered
parser sets ``func`` (``args -> int`` exit code). Every invocation, ``--help`` included, builds
every command's parser, so ``register`` imports nothing heavy: torch and the games load inside
``func`` only (``tests/test_cli_help.py`` checks that ``--help`` never imports them). Every
option's help says its default. Bad input raises ``UserError`` anywhere below and becomes one
line on stderr with exit code 2 — never a traceback. ``--quiet`` is applied here, once
(``scaledql.progress``).

Checks that hold for every command live here, once: every ``type=float`` option of every
parser accepts finite numbers only (``nan``, ``inf`` and ``1e999`` are refused by argparse's
type registry, so a new float option cannot forget it); a failed file operation (an ``--out``
that is a file, a read-only directory, a full disk) is one line naming the path; running out of
memory is one line too.
"""

from __future__ import annotations

import os

# Idle OpenMP threads must not spin: on a shared 2-core machine spinning makes a training step
# many times slower. Set before torch is first imported (only when the user has not chosen).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import importlib
import math
import sys

from scaledql.errors import UserError

# Command-group modules, in the order they appear in --help (the data flow's order).
COMMAND_MODULES = ("suites", "data", "collect", "train", "evaluate", "play", "export", "finetune",
                   "study", "demo", "report", "diagnose")


def finite_float(text: str) -> float:
    """argparse type of every float option: a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse that reports a wrong flag as one line and exit code 2 (its default), no usage
    dump; ``type=float`` means ``finite_float`` in every parser and argument group."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register("type", float, finite_float)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message} (see --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scaledql", description="Scaled Q-Learning: offline multi-game Q-learning that scales.")
    from scaledql import __version__

    parser.add_argument("--version", action="version", version=f"scaledql {__version__}")
    # Read by main() before parsing (plugins.take_plugin_flags): declared for --help only.
    parser.add_argument("--plugin", action="append", metavar="MODULE", default=[],
                        help="import MODULE (a module name or a .py file) first: the learners "
                             "and suites it registers become --algo and --suite values; "
                             "repeatable, anywhere on the line; also SCALEDQL_PLUGINS=a,b "
                             "(docs/extending.md) (default: none)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"scaledql.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from scaledql.plugins import take_plugin_flags

    try:  # before the parsers: a plugin's learners are --algo choices
        argv = take_plugin_flags(sys.argv[1:] if argv is None else list(argv))
    except UserError as exc:
        sys.stderr.write(f"error: {_one_line(str(exc))}\n")
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    from scaledql.progress import set_quiet

    set_quiet(getattr(args, "quiet", False))  # every call: main() may run several times
    try:
        _check_out(getattr(args, "out", None))
        return int(args.func(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"error: {_one_line(str(exc))}\n")
        return 2
    except KeyboardInterrupt as exc:  # a multi-process command's Stopped says what it kept
        sys.stderr.write(f"{_one_line(str(exc)) or 'interrupted'}\n")
        return int(getattr(exc, "exit_code", 130))
    except BrokenPipeError:
        return 0
    except OSError as exc:  # the environment refused a file operation: say which and why
        # a rename names its destination second: that is the file the user asked for
        where = exc.filename2 or exc.filename or "a file operation"
        sys.stderr.write(f"error: {where}: {_one_line(exc.strerror or str(exc))}\n")
        return 2
    except MemoryError as exc:
        sys.stderr.write(f"error: out of memory ({_one_line(str(exc)) or 'MemoryError'}); "
                         "reduce the batch size or the data in memory\n")
        return 2


def _check_out(out: object) -> None:
    """Every command's ``--out`` is a directory: a file there (or on the way) is one line."""
    from pathlib import Path

    if not isinstance(out, Path):
        return
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "is not a directory" if p == out else f"cannot be made: {p} is a file"
                raise UserError(f"--out {out} {what}")
            return


def _one_line(text: str) -> str:
    """A message on one line, whatever the exception carried."""
    return " ".join(text.split())
