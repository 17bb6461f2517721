"""``scaledql evaluate``: play a policy in the real games and report normalized scores."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scaledql.cli.common import (
    add_device_arg,
    add_game_args,
    add_progress_args,
    env_options,
    print_json,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="play a checkpoint or a random policy; IQM with CIs")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path,
                     help="a checkpoint file or a run folder: plays the game options it was "
                          "trained with unless a flag below overrides one")
    src.add_argument("--policy", choices=["random"], help="a built-in policy")
    add_game_args(p, default_suite=None, defaults=(
        "Defaults with --checkpoint: the run's suite, games and game options (mode, "
        "difficulty, sticky actions, episode cap, action set); a --suite other than the run's "
        "is refused. With --policy random: the suite's defaults, suite minatar."))
    p.add_argument("--episodes", type=int, default=10, help="episodes per game (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the environments, ε draws and "
                                                      "bootstrap CIs (default: 0)")
    p.add_argument("--epsilon", type=float, default=0.001, help="ε-greedy (default: 0.001)")
    p.add_argument("--num-envs", type=int, default=16, help="parallel environments per game (default: 16)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for eval.json and performance_profile.png (default: none, "
                        "print only)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_progress_args(p)
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from scaledql.device import pick_device
    from scaledql.errors import UserError
    from scaledql.evaluate import EvalConfig, evaluate, write_json
    from scaledql.progress import is_quiet
    from scaledql.suites import get_suite

    pick_device(args.device)  # a bad --device is refused even where the policy ignores it
    # the numbers are checked first, before anything is loaded; the game options come below
    cfg = EvalConfig(episodes=args.episodes, seed=args.seed, epsilon=args.epsilon,
                     num_envs=args.num_envs, progress=not args.no_progress)
    if args.checkpoint is not None:
        from scaledql.checkpoint import check_policy_games, load_policy

        policy, payload = load_policy(args.checkpoint, args.device)
        if args.suite is not None and args.suite != payload["suite"]:
            raise UserError(f"--suite {args.suite}: {args.checkpoint} plays {payload['suite']} "
                            f"games (leave --suite out to use the run's)")
        # the game the run learned, unless a flag changes it (a variant, on purpose)
        options = env_options(args, payload.get("env_options"), f"{args.checkpoint}")
        suite = get_suite(payload["suite"])
        games = (suite.resolve_games(args.games) if args.games is not None
                 else list(payload["games"]))
        check_policy_games(payload, games, options)
    else:
        from scaledql.policies import RandomPolicy

        options = env_options(args)
        suite = get_suite(args.suite or "minatar")
        games = suite.resolve_games(args.games)
        policy = RandomPolicy(games, [suite.spec(g, options).num_actions for g in games],
                              args.seed)
    cfg = replace(cfg, options=options)
    # said once every input is checked: a refused command prints its error line only
    set_options = {k: v for k, v in options.record().items() if v is not None and v is not False}
    if set_options and not is_quiet():
        print(f"[evaluate] game options: {', '.join(f'{k}={v}' for k, v in set_options.items())}"
              " (the suite's defaults for the rest)", file=sys.stderr)
    report = {**evaluate(suite.name, games, policy, cfg).to_dict(), "env_options": options.record()}
    if args.out is not None:
        write_json(report, args.out / "eval.json")
        from scaledql.evaluate import EvalReport
        from scaledql.reports.plots import plot_profiles
        from scaledql.stats import performance_profiles, profile_taus

        matrix = EvalReport(suite.name, {g: v["returns"] for g, v in report["games"].items()},
                            args.seed, args.epsilon).normalized_matrix()
        if matrix.size:
            name = str(args.checkpoint) if args.checkpoint is not None else f"{args.policy} policy"
            taus = profile_taus({name: matrix})
            profiles, bands = performance_profiles({name: matrix}, taus, seed=args.seed)
            plot_profiles(profiles, bands, taus, args.out / "performance_profile.png",
                          rows="episodes")
    if args.json:
        print_json(report)
    else:
        _print_table(report)
    return 0


def _print_table(report: dict) -> None:
    from scaledql.evaluate import results_lines

    print("\n".join(results_lines(report)))
