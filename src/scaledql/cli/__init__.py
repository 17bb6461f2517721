"""The ``scaledql`` command: a thin shell that parses, validates and calls the library.

Each command group lives in its own module exposing ``register(subparsers)``; a registered
parser sets ``func`` (``args -> int`` exit code). Bad input raises ``UserError`` anywhere below
and becomes one line on stderr with exit code 2 — never a traceback.
"""

from __future__ import annotations

import os

# Idle OpenMP threads must not spin: on a shared 2-core machine spinning makes a training step
# many times slower. Set before torch is first imported (only when the user has not chosen).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import importlib
import sys

from scaledql.errors import UserError

# Command-group modules, in the order they appear in --help (the data flow's order).
COMMAND_MODULES = ("suites", "data", "collect", "train", "evaluate", "finetune", "demo", "report")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a wrong flag as one line and exit code 2 (its default), no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message} (see --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scaledql", description="Scaled Q-Learning: offline multi-game Q-learning that scales.")
    from scaledql import __version__

    parser.add_argument("--version", action="version", version=f"scaledql {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"scaledql.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
