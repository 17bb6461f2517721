"""``scaledql suites``: list suites, games, action counts and observation shapes."""

from __future__ import annotations

import argparse

from scaledql.cli.common import print_json
from scaledql.suites import get_suite, suite_names


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("suites", help="list suites, games, action counts, observation shapes")
    p.add_argument("--suite", choices=suite_names(), default=None, help="only this suite (default: every suite)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = {}
    for name in [args.suite] if args.suite else suite_names():
        suite = get_suite(name)
        games = {}
        for game in suite.games():
            spec = suite.spec(game)
            games[game] = {"num_actions": spec.num_actions, "obs_shape": list(spec.obs_shape),
                           "frame_shape": list(spec.frame_shape), "stack": spec.stack}
        out[name] = {"games": games, "named_lists": suite.named_lists()}
    if args.json:
        print_json(out)
        return 0
    for name, info in out.items():
        lists = ", ".join(f"{k} ({len(v)})" for k, v in info["named_lists"].items())
        print(f"{name}: {len(info['games'])} games; named lists: {lists}")
        for game, g in info["games"].items():
            shape = "×".join(map(str, g["obs_shape"]))
            print(f"  {game:<20} actions {g['num_actions']:>2}   obs uint8[{shape}]")
    return 0
