"""``scaledql finetune offline|online|report``: transfer of a pretrained Scaled QL run.

The experiments live in ``scaledql.finetune``; this module only parses and hands over.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from scaledql.cli.common import add_device_arg, add_progress_args

# Named learner flags (every arm's learner that has the option gets it).
LEARNER_FLAGS = ("lr", "batch_size", "target_update_period")


def _common(p: argparse.ArgumentParser, kind: str) -> None:
    from scaledql.finetune.common import OFFLINE_ARMS, ONLINE_ARMS, PAPER_ARMS

    table = OFFLINE_ARMS if kind == "offline" else ONLINE_ARMS
    arms = "; ".join(f"{name}: {arm.label}" for name, arm in table.items())
    p.add_argument("--from", dest="from_run", type=Path, required=True,
                   help="the pretrained Scaled QL run (folder or checkpoint)")
    p.add_argument("--out", type=Path, required=True,
                   help="experiment folder: OUT/<arm>/... run folders, OUT/report.md")
    p.add_argument("--arms", default=None,
                   help=f"comma list of arms, or all ({', '.join(PAPER_ARMS[kind])}); default "
                        f"pretrained. {arms}")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="freeze every transferred encoder (pretrained → pretrained-frozen, ...)")
    p.add_argument("--mae", type=Path, default=None,
                   help="an MAE run (scaledql train --algo mae) whose encoder the mae arm loads "
                        "(default: none; the mae arms need it)")
    p.add_argument("--seeds", default="0", help="comma list of seeds (default: 0)")
    g = p.add_argument_group("learner options (every arm's learner that has them)")
    base = ("the pretrained run's for Scaled QL arms, the suite preset's for the others"
            if kind == "offline" else "the pretrained run's for Scaled QL arms, the dqn "
            "learner's for the dqn arm")
    g.add_argument("--lr", type=float, help=f"learning rate (default: {base})")
    g.add_argument("--batch-size", type=int, help=f"global batch (default: {base})")
    g.add_argument("--target-update-period", type=int,
                   help=f"steps between target copies (default: {base})")
    g.add_argument("--cql-alpha", type=float,
                   help="CQL weight of the Scaled QL arms (0: none); default: "
                        + ("the pretrained run's" if kind == "offline" else "0 (online)"))
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any option: learner.KEY=VALUE for the learners"
                        + (", KEY=VALUE for the runs (e.g. sample_workers=0)"
                           if kind == "offline" else "") + " (repeatable; default: none)")
    add_progress_args(p)
    add_device_arg(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a pretrained run: offline to unseen games, "
                                        "online to game variants; reports")
    fine = p.add_subparsers(dest="finetune_command", metavar="KIND")
    p.set_defaults(func=lambda args: p.print_help() or 2)

    off = fine.add_parser("offline", help="offline fine-tuning to games the run never saw",
                          description="Each arm × game × seed trains offline on the first "
                                      "--fraction of each game's data in --data.")
    _common(off, "offline")
    off.add_argument("--data", type=Path, required=True, help="store of the new games")
    off.add_argument("--games", default=None,
                     help="comma list or named list (heldout5); default: the data's games the "
                          "pretrained run never saw")
    off.add_argument("--fraction", type=float, default=1.0,
                     help="share of each game's data, e.g. 0.01 or 0.1 (default 1)")
    off.add_argument("--steps", type=int, help="gradient steps per run (default: the preset's)")
    off.add_argument("--eval-every", type=int, help="gradient steps between evaluations "
                                                    "(default: steps / 4)")
    off.add_argument("--eval-episodes", type=int,
                     help="episodes per game at each evaluation (default: the preset's)")
    off.set_defaults(func=run_offline)

    on = fine.add_parser("online", help="online fine-tuning to a game variant",
                         description="Each arm × seed learns online in the variant for --steps "
                                     "environment steps. MinAtar variants: --reversed-controls, --sticky.")
    _common(on, "online")
    on.add_argument("--suite", default="minatar", help="minatar or atari (default: minatar)")
    on.add_argument("--game", required=True, help="the game whose variant is learned")
    on.add_argument("--mode", type=int, default=None,
                    help="ALE game mode (atari; default: the game's default mode)")
    on.add_argument("--difficulty", type=int, default=None,
                    help="ALE difficulty (atari; default: the game's default difficulty)")
    on.add_argument("--sticky", type=float, default=None,
                    help="sticky-action probability, the MinAtar variant, e.g. 0.3 (default: "
                         "atari 0.25, minatar 0.1)")
    on.add_argument("--max-episode-steps", type=int, default=None,
                    help="agent-step cap per episode (default: atari 27000, minatar 10000)")
    on.add_argument("--full-action-space", action="store_true",
                    help="all 18 Atari actions instead of each game's minimal set")
    on.add_argument("--reversed-controls", action="store_true", default=None,
                    help="every movement action does its opposite, left <-> right, up <-> down "
                         "(the MinAtar variant whose pretrained policy scores at random: "
                         "docs/finetune.md)")
    on.add_argument("--steps", type=int, required=True, help="environment steps per run")
    on.add_argument("--dqn-steps", type=int, default=None,
                    help="environment steps of the dqn arm (default: --steps)")
    on.add_argument("--num-envs", type=int, default=4,
                    help="parallel environments (default: 4)")
    on.add_argument("--eval-every", type=int, default=None,
                    help="environment steps between evaluations (default: steps / 5)")
    on.add_argument("--eval-episodes", type=int, default=10,
                    help="episodes at each evaluation (default: 10)")
    on.add_argument("--checkpoint-every", type=int, default=None,
                    help="environment steps between checkpoints (default: --eval-every)")
    from scaledql.training.schedule import OnlineSchedule

    # scaled to --steps by finetune.online.default_schedule; the others are OnlineSchedule's
    scaled = {"learning_starts": "steps / 10, at most 2000",
              "epsilon_decay_steps": "steps / 4, at most 25000"}
    g = on.add_argument_group("online schedule")
    for f in fields(OnlineSchedule):
        kind = float if isinstance(f.default, float) else int
        g.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None,
                       dest=f"schedule_{f.name}",
                       help=f"(default: {scaled.get(f.name, f.default)})")
    on.set_defaults(func=run_online)

    rep = fine.add_parser("report", help="(re)write OUT/report.md and curves.png")
    rep.add_argument("out", type=Path, help="the experiment folder a finetune command wrote")
    rep.set_defaults(func=run_report)


def _overrides(args: argparse.Namespace) -> tuple[dict, dict]:
    from scaledql.cli.train import _parse_set

    run, learner = _parse_set(args.set)
    learner.update({k: getattr(args, k) for k in LEARNER_FLAGS if getattr(args, k) is not None})
    return run, learner


def run_offline(args: argparse.Namespace) -> int:
    from scaledql.cli.common import check_data_dir

    check_data_dir(args.data)  # before torch loads
    from scaledql.data.store.dataset import open_dataset
    from scaledql.finetune.common import parse_arms, parse_seeds
    from scaledql.finetune.new_games import OfflineFinetune, run_offline
    from scaledql.suites import get_suite

    run, learner = _overrides(args)
    if args.cql_alpha is not None:
        learner["cql_alpha"] = args.cql_alpha
    run.update({k: getattr(args, k) for k in ("eval_every", "eval_episodes")
                if getattr(args, k) is not None})
    if args.device is not None:
        run["device"] = args.device
    games = None
    if args.games:
        dataset = open_dataset(args.data)
        games = get_suite(dataset.game(dataset.games[0]).suite).resolve_games(args.games)
    cfg = OfflineFinetune(
        pretrained=args.from_run, data=args.data, out=args.out, games=games,
        fraction=args.fraction, arms=parse_arms(args.arms, "offline", args.freeze_encoder),
        seeds=parse_seeds(args.seeds), mae=args.mae, steps=args.steps, run_overrides=run,
        learner_overrides=learner, progress=not args.no_progress)
    if cfg.steps is not None and cfg.steps <= 0:
        from scaledql.errors import UserError

        raise UserError(f"--steps must be positive, got {cfg.steps}")
    summary = run_offline(cfg)
    if summary["interrupted"]:
        return 130
    print(f"[finetune] report: {summary['report']}")
    return 0


def run_online(args: argparse.Namespace) -> int:
    from scaledql.cli.common import env_options
    from scaledql.errors import UserError
    from scaledql.finetune.common import parse_arms, parse_seeds
    from scaledql.finetune.variants import OnlineFinetune, run_online_finetune
    from scaledql.suites import get_suite

    run, learner = _overrides(args)
    if run:
        raise UserError(f"--set {next(iter(run))}: online fine-tuning takes learner.KEY=VALUE "
                        "only (run options have flags)")
    suite = get_suite(args.suite)
    game = suite.resolve_games(args.game)
    if len(game) != 1:
        raise UserError(f"--game {args.game!r}: one game, please")
    schedule = {k[len("schedule_"):]: v for k, v in vars(args).items()
                if k.startswith("schedule_") and v is not None}
    cfg = OnlineFinetune(
        pretrained=args.from_run, game=game[0], out=args.out, steps=args.steps, suite=suite.name,
        options=env_options(args), arms=parse_arms(args.arms, "online", args.freeze_encoder),
        seeds=parse_seeds(args.seeds), mae=args.mae, dqn_steps=args.dqn_steps,
        cql_alpha=0.0 if args.cql_alpha is None else args.cql_alpha,
        learner_overrides=learner, schedule=schedule,
        num_envs=args.num_envs, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
        checkpoint_every=args.checkpoint_every, device=args.device or "auto",
        progress=not args.no_progress)
    summary = run_online_finetune(cfg)
    if summary["interrupted"]:
        return 130
    print(f"[finetune] report: {summary['report']}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from scaledql.finetune.report import write_report

    print(write_report(args.out))
    return 0
