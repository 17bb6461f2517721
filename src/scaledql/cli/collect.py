"""``scaledql collect``: behaviour data the DQN-Replay way (or from a fixed policy)."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from scaledql.cli.common import (
    add_device_arg,
    add_game_args,
    add_progress_args,
    check_batch_memory,
    env_options,
)

# Options of the online DQN a flag may set: learner options and the online schedule.
DQN_LEARNER_FLAGS = ("encoder", "width", "feature_dim", "lr", "adam_eps", "batch_size",
                     "target_update_period", "gamma", "reward_clip")


def register(sub: argparse._SubParsersAction) -> None:
    from scaledql.agents.configs import DQNConfig
    from scaledql.training.schedule import OnlineSchedule

    p = sub.add_parser("collect", help="collect multi-game data: online DQN per game, every "
                                       "transition logged (DQN-Replay style)")
    add_game_args(p)
    p.add_argument("--steps", type=int, required=True, help="environment steps per game")
    p.add_argument("--out", type=Path, required=True, help="dataset directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the first game, +1 per game (default: 0)")
    p.add_argument("--num-envs", type=int, default=4,
                   help="parallel environments per game (default: 4)")
    p.add_argument("--policy", default="dqn",
                   help="'dqn' (learn online, log everything) or a checkpoint to log as is "
                        "(default: dqn)")
    p.add_argument("--epsilon", type=float, default=0.01, help="ε of a fixed --policy (default: 0.01)")
    p.add_argument("--overwrite", action="store_true", help="replace games already in --out")
    p.add_argument("--skip-existing", action="store_true", help="keep games already in --out")
    p.add_argument("--json", action="store_true",
                   help="print the per-game summary as JSON (default: a table)")
    p.add_argument("--snapshot-every", type=int, default=None, metavar="N",
                   help="also keep the DQN every N steps as OUT/_agents/GAME/step_N.pt "
                        "(default: only the final one)")
    p.add_argument("--log-dir", type=Path, default=None, metavar="DIR",
                   help="keep each game's action log as DIR/GAME.npz (about a byte a step, "
                        "small enough to commit); a game whose log is there is rebuilt from it "
                        "in minutes, exactly, instead of collected again (default: no logs)")
    p.add_argument("--jobs", type=int, default=1,
                   help="games collected in parallel processes, the cores shared among them "
                        "(default 1)")
    g = p.add_argument_group("online DQN (the dqn learner and its online schedule; CPU-sized "
                             "defaults)")
    defaults = {**{k: getattr(DQNConfig(), k) for k in DQN_LEARNER_FLAGS},
                **{f.name: f.default for f in fields(OnlineSchedule)}}
    for name, default in defaults.items():
        kind = float if isinstance(default, float) else type(default)
        g.add_argument(f"--dqn-{name.replace('_', '-')}", type=kind, default=None,
                       dest=f"dqn_{name}", help=f"(default: {default})")
    add_progress_args(p)
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scaledql.agents.configs import DQNConfig
    from scaledql.cli.common import print_json
    from scaledql.collect import CollectConfig, collect
    from scaledql.suites import get_suite
    from scaledql.training.schedule import OnlineSchedule

    suite = get_suite(args.suite)
    given = {k[4:]: v for k, v in vars(args).items() if k.startswith("dqn_") and v is not None}
    dqn = DQNConfig(**{k: v for k, v in given.items() if k in DQN_LEARNER_FLAGS})
    schedule = OnlineSchedule(**{k: v for k, v in given.items() if k not in DQN_LEARNER_FLAGS})
    if schedule.replay_capacity >= 1 and dqn.batch_size >= 1:
        games = suite.resolve_games(args.games)
        obs = suite.spec(games[0], env_options(args)).obs_shape
        check_batch_memory(dqn.batch_size, obs, "--dqn-batch-size")
        check_batch_memory(schedule.replay_capacity // 2, obs, "--dqn-replay-capacity")
    cfg = CollectConfig(
        suite=suite.name, games=suite.resolve_games(args.games), steps=args.steps, out=args.out,
        seed=args.seed, num_envs=args.num_envs, policy=args.policy, epsilon=args.epsilon,
        options=env_options(args), dqn=dqn, schedule=schedule, overwrite=args.overwrite,
        device=args.device, progress=not args.no_progress, snapshot_every=args.snapshot_every,
        jobs=args.jobs, log_dir=args.log_dir)
    if cfg.policy != "dqn" and not Path(cfg.policy).exists():
        from scaledql.errors import UserError

        raise UserError(f"--policy {cfg.policy}: no such checkpoint (or use 'dqn')")
    results = collect(cfg, skip_existing=args.skip_existing)
    if args.json:
        print_json(results)
    else:
        print(summary_table(results, cfg.out))
    return 0


def summary_table(results: list[dict], out: Path) -> str:
    """One row per game, rounded for reading (``--json`` keeps the full floats)."""
    from scaledql.progress import human_rate

    def ret(value: float | None) -> str:
        return "—" if value is None else f"{value:,.2f}"

    width = max(len("game"), *(len(r["game"]) for r in results))
    head = (f"{'game':<{width}}  {'steps':>9}  {'episodes':>8}  {'mean return':>11}  "
            f"{'last 20':>9}  {'time':>8}  {'step/s':>7}")
    rows = [head]
    for r in results:
        if r.get("reused"):
            rows.append(f"{r['game']:<{width}}  kept: already in {out}")
            continue
        rows.append(f"{r['game']:<{width}}  {r['steps']:>9,}  {r['episodes']:>8,}  "
                    f"{ret(r['mean_return']):>11}  {ret(r['last_20_return']):>9}  "
                    f"{_duration(r['seconds']):>8}  {human_rate(r['steps_per_second']):>7}"
                    + ("  rebuilt from its action log" if r.get("rebuilt") else ""))
    return "\n".join(rows)


def _duration(seconds: float) -> str:
    """``42.3 s``, ``12:05`` (min:s), ``1:02:05`` (h:min:s)."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
