"""Argument groups shared by several commands (one definition each)."""

from __future__ import annotations

import argparse
import json
import math
import sys

from scaledql.progress import LINE_SECONDS as PROGRESS_LINE_SECONDS
from scaledql.suites import EnvOptions, suite_names


def add_game_args(parser: argparse.ArgumentParser, default_suite: str | None = "minatar",
                  defaults: str = "") -> None:
    """The game options. ``default_suite=None``: the caller picks the suite (a checkpoint's);
    ``defaults`` then says where the defaults come from, for every option's help."""
    g = parser.add_argument_group("games", defaults or None)
    g.add_argument("--suite", default=default_suite,
                   help=f"game suite: {', '.join(suite_names())} (default: "
                        f"{default_suite or 'see above'})")
    g.add_argument("--games", default=None,
                   help="comma list of games or a named list (train40, heldout5, all); "
                        "default: every minatar game / the 40 training Atari games")
    g.add_argument("--mode", type=int, default=None,
                   help="ALE game mode (atari; default: the game's default mode)")
    g.add_argument("--difficulty", type=int, default=None,
                   help="ALE difficulty (atari; default: the game's default difficulty)")
    g.add_argument("--full-action-space", action=argparse.BooleanOptionalAction, default=None,
                   help="all 18 Atari actions instead of each game's minimal set (default: "
                        "minimal)")
    g.add_argument("--sticky", type=float, default=None,
                   help="sticky-action probability (default: atari 0.25, minatar 0.1)")
    g.add_argument("--max-episode-steps", type=int, default=None,
                   help="agent-step cap per episode (default: atari 27000, minatar 10000)")
    g.add_argument("--reversed-controls", action=argparse.BooleanOptionalAction, default=None,
                   help="every movement action does its opposite, left <-> right, up <-> down "
                        "(minatar; a variant of the game; default: off)")


def env_options(args: argparse.Namespace, base: dict | None = None,
                where: str = "checkpoint") -> EnvOptions:
    """The game options the flags give; ``base`` (a checkpoint's options, checked here: it
    comes from a file) fills every option whose flag was not given."""
    from scaledql.errors import UserError
    from scaledql.typed_fields import typed

    given = {"sticky": args.sticky, "max_episode_steps": args.max_episode_steps,
             "full_action_space": args.full_action_space, "mode": args.mode,
             "difficulty": args.difficulty, "reversed_controls": args.reversed_controls}
    if base:
        if not isinstance(base, dict):
            raise UserError(f"{where}: env_options must be a table of game options")
        base = typed(EnvOptions, base, f"{where} env_options")
        given = {k: base.get(k) if v is None else v for k, v in given.items()}
    given["full_action_space"] = bool(given["full_action_space"])
    given["reversed_controls"] = bool(given["reversed_controls"])
    return EnvOptions(**given).validate()


def check_data_dir(path: object) -> None:
    """A missing or wrong dataset directory is one line before anything heavy loads (torch
    takes seconds to import): the same line ``open_dataset`` would give."""
    from pathlib import Path

    from scaledql.errors import UserError

    p = Path(str(path))
    if not p.is_dir():
        raise UserError(f"dataset directory {p} "
                        + ("is not a directory" if p.exists() else "does not exist"))


def check_batch_memory(batch_size: int, obs_shape: tuple[int, ...], flag: str) -> None:
    """Refuse a batch whose observations alone (uint8, two stacks a row: obs and next_obs) would
    not fit in this machine's memory; it would fail later, allocating, after output exists."""
    import os

    from scaledql.errors import UserError

    need = 2 * batch_size * math.prod(obs_shape)
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: let the allocation decide
        return
    if need > have:
        raise UserError(f"{flag} {batch_size}: its observations alone need {need / 2**30:,.0f} "
                        f"GiB, more than this machine's memory ({have / 2**30:,.0f} GiB)")


def add_device_arg(parser: argparse.ArgumentParser, default: str | None = "auto",
                   note: str = "") -> None:
    parser.add_argument("--device", default=default,
                        help=f"cpu, cuda, cuda:N or auto: CUDA when present (default: auto{note})")


def add_progress_args(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` and ``--quiet`` (``scaledql.progress`` acts on them)."""
    g = parser.add_argument_group("progress output (stderr)")
    g.add_argument("--no-progress", action="store_true",
                   help="no live bar: a plain progress line every "
                        f"{PROGRESS_LINE_SECONDS:g} s instead (what a non-terminal stderr, "
                        "e.g. a log file, gets anyway)")
    g.add_argument("--quiet", action="store_true",
                   help="no progress output at all, neither bars nor lines (results, "
                        "warnings and errors still print)")


def print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")
