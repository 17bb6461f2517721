"""Argument groups shared by several commands (one definition each)."""

from __future__ import annotations

import argparse
import json
import math
import sys

from scaledql.suites import SUITE_NAMES, EnvOptions


def add_game_args(parser: argparse.ArgumentParser, default_suite: str = "minatar") -> None:
    g = parser.add_argument_group("games")
    g.add_argument("--suite", default=default_suite,
                   help=f"game suite: {', '.join(SUITE_NAMES)} (default: %(default)s)")
    g.add_argument("--games", default=None,
                   help="comma list of games or a named list (train40, heldout5, all); "
                        "default: every minatar game / the 40 training Atari games")
    g.add_argument("--mode", type=int, default=None, help="ALE game mode (atari)")
    g.add_argument("--difficulty", type=int, default=None, help="ALE difficulty (atari)")
    g.add_argument("--full-action-space", action="store_true",
                   help="all 18 Atari actions instead of each game's minimal set")
    g.add_argument("--sticky", type=float, default=None,
                   help="sticky-action probability (default: atari 0.25, minatar 0.1)")
    g.add_argument("--max-episode-steps", type=int, default=None,
                   help="agent-step cap per episode (default: atari 27000, minatar 10000)")


def env_options(args: argparse.Namespace) -> EnvOptions:
    from scaledql.errors import UserError

    if args.sticky is not None and not 0.0 <= args.sticky <= 1.0:
        raise UserError(f"--sticky must be in [0, 1], got {args.sticky}")
    if args.max_episode_steps is not None and args.max_episode_steps <= 0:
        raise UserError(f"--max-episode-steps must be positive, got {args.max_episode_steps}")
    return EnvOptions(sticky=args.sticky, max_episode_steps=args.max_episode_steps,
                      full_action_space=args.full_action_space, mode=args.mode,
                      difficulty=args.difficulty)


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


def add_device_arg(parser: argparse.ArgumentParser, default: str | None = "auto") -> None:
    parser.add_argument("--device", default=default,
                        help="cpu, cuda, cuda:N or auto (CUDA when present; default)")


def print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")
