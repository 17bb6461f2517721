"""``scaledql train``: offline multi-game Scaled QL on a dataset directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from scaledql.cli.common import add_device_arg

# CLI flag → (TrainConfig field or "agent.<field>", type). None-valued flags are left to the preset.
_OVERRIDES = {
    "steps": "steps", "n_step": "n_step", "seed": "seed", "log_every": "log_every",
    "checkpoint_every": "checkpoint_every", "eval_every": "eval_every",
    "eval_episodes": "eval_episodes", "reward_clip": "reward_clip",
    "encoder": "agent.encoder", "width": "agent.width", "feature_dim": "agent.feature_dim",
    "batch_size": "agent.batch_size", "lr": "agent.lr", "cql_alpha": "agent.cql_alpha",
    "loss": "agent.loss", "target_update_period": "agent.target_update_period",
    "grad_clip": "agent.grad_clip",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one Scaled QL agent offline on a multi-game dataset",
                       description="Offline multi-game Scaled Q-Learning (C51 + CQL + feature "
                                   "normalization). Run under torchrun for DDP.")
    p.add_argument("--data", type=Path, required=True, help="dataset directory (DIR/<GAME>/...)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--config", default=None,
                   help="preset name (minatar, atari) or a TOML file; default: by the data's suite")
    p.add_argument("--games", default=None, help="comma list of dataset games (default: all)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    g = p.add_argument_group("overrides of the preset")
    g.add_argument("--steps", type=int, help="gradient steps")
    g.add_argument("--n-step", type=int)
    g.add_argument("--seed", type=int)
    g.add_argument("--encoder", help="nature, impala, resnet18, resnet34, resnet50, resnet101")
    g.add_argument("--width", type=float, help="encoder channel multiplier")
    g.add_argument("--feature-dim", type=int)
    g.add_argument("--batch-size", type=int, help="global batch (split over DDP processes)")
    g.add_argument("--lr", type=float, help="learning rate at lr_batch_size (scaled by sqrt)")
    g.add_argument("--cql-alpha", type=float, help="CQL weight α (0 disables CQL)")
    g.add_argument("--loss", choices=["c51", "mse"], help="c51 (distributional) or mse (scalar Q)")
    g.add_argument("--no-feature-norm", action="store_true", help="ablate feature normalization")
    g.add_argument("--target-update-period", type=int)
    g.add_argument("--grad-clip", type=float)
    g.add_argument("--reward-clip", type=float)
    g.add_argument("--log-every", type=int)
    g.add_argument("--checkpoint-every", type=int)
    g.add_argument("--eval-every", type=int, help="gradient steps between evaluations (0: end only)")
    g.add_argument("--eval-episodes", type=int)
    g.add_argument("--bf16", action="store_true", help="bf16 autocast (GPUs)")
    g.add_argument("--compile", action="store_true", help="torch.compile the network (GPUs)")
    p.add_argument("--no-progress", action="store_true")
    add_device_arg(p)
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace, suite: str):
    """Preset (by name, file, or the dataset's suite) + flags → a validated TrainConfig."""
    from scaledql.train import TrainConfig, load_preset, preset_path

    games = [g.strip() for g in args.games.split(",") if g.strip()] if args.games else None
    preset = load_preset(preset_path(args.config or suite))
    preset.update(data=str(args.data), out=str(args.out), games=games, device=args.device)
    agent = dict(preset.pop("agent", {}))
    for flag, target in _OVERRIDES.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if target.startswith("agent."):
            agent[target[6:]] = value
        else:
            preset[target] = value
    if args.no_feature_norm:
        agent["feature_norm"] = False
    if args.bf16:
        agent["bf16"] = True
    if args.compile:
        agent["compile"] = True
    return TrainConfig.from_dict({**preset, "agent": agent}).validate()


def run(args: argparse.Namespace) -> int:
    from scaledql.data.store import open_dataset
    from scaledql.evaluate import EvalConfig, agent_evaluator
    from scaledql.suites import EnvOptions
    from scaledql.train import env_options_of, train

    dataset = open_dataset(args.data)
    first = dataset.game(dataset.games[0])
    cfg = build_config(args, first.suite)
    options = EnvOptions(**env_options_of(first))
    evaluator = agent_evaluator(
        first.suite,
        EvalConfig(episodes=cfg.eval_episodes, seed=cfg.seed, epsilon=cfg.eval_epsilon,
                   options=options, progress=False),
        Path(cfg.out) / "eval",
    )
    summary = train(cfg, resume=args.resume, evaluate_fn=evaluator,
                    progress=not args.no_progress)
    if summary.get("interrupted"):
        return 130
    if summary.get("rank", 0) == 0:
        print(f"[train] done: {summary['step']} steps; run folder {summary['run']}")
    return 0
