"""``scaledql train``: train any registered learner offline on a multi-game dataset.

Configuration layers (later wins, key by key): the learner's defaults → the suite's preset →
``--config FILE`` → ``--set KEY=VALUE`` and the named flags. ``--resume`` starts from the run's
own saved config instead of the preset; flags then may only change run length and cadences.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scaledql.cli.common import add_device_arg, check_batch_memory

# Flag (argparse dest) → run option; None-valued flags are left to the layers below them.
RUN_FLAGS = ("steps", "seed", "log_every", "checkpoint_every", "eval_every", "eval_episodes",
             "sample_workers", "prefetch", "init_from", "init_parts", "data_fraction",
             "keep_every")
# Flag → learner option (an error if the chosen learner has no such option).
LEARNER_FLAGS = ("encoder", "width", "feature_dim", "batch_size", "lr", "cql_alpha", "loss",
                 "n_step", "reward_clip", "target_update_period", "grad_clip")
SWITCHES = {"no_feature_norm": ("feature_norm", False), "bf16": ("bf16", True),
            "compile": ("compile", True)}


def register(sub: argparse._SubParsersAction) -> None:
    from scaledql.agents.registry import learner_class, learner_names

    names = learner_names()
    algos = "; ".join(f"{n}: {learner_class(n).summary}" for n in names)
    p = sub.add_parser("train", help="train a learner offline on a multi-game dataset",
                       description="Offline multi-game training of any registered learner. "
                                   "Run under torchrun for DDP.")
    p.add_argument("--data", type=Path, help="dataset directory (DIR/<GAME>/...); with --resume "
                                             "the run's own by default")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--algo", choices=names, default=None,
                   help=f"learner (default: scaled-ql). {algos}")
    p.add_argument("--config", default=None,
                   help="preset name (minatar, atari) or a TOML file layered over the suite's "
                        "preset; see --print-config for the shape")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any option, e.g. --set steps=500 --set learner.lr=1e-3 "
                        "(VALUE in TOML syntax)")
    p.add_argument("--games", default=None, help="comma list of dataset games (default: all)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its saved config and checkpoint")
    p.add_argument("--print-config", action="store_true",
                   help="print the merged configuration as TOML and exit")
    g = p.add_argument_group("run options")
    g.add_argument("--steps", type=int, help="gradient steps")
    g.add_argument("--seed", type=int)
    g.add_argument("--log-every", type=int)
    g.add_argument("--checkpoint-every", type=int)
    g.add_argument("--keep-every", type=int,
                   help="also keep RUN/checkpoints/step_N.pt every K steps, for re-evaluation "
                        "or fine-tuning from an earlier step (0: the latest only; default 0)")
    g.add_argument("--eval-every", type=int, help="gradient steps between evaluations (0: end only)")
    g.add_argument("--eval-episodes", type=int)
    g.add_argument("--sample-workers", type=int,
                   help="background sampling threads (0: none; default 1 on CUDA, 0 on CPU)")
    g.add_argument("--prefetch", type=int, help="batches each sampling thread keeps ready")
    g.add_argument("--init-from", help="a run whose torso initialises this network (transfer)")
    g.add_argument("--init-parts", choices=["encoder", "torso"],
                   help="what --init-from transfers (default: encoder, as the paper)")
    g.add_argument("--freeze-encoder", action="store_true", help="keep the encoder fixed")
    g.add_argument("--data-fraction", type=float,
                   help="share of each game's data: its first episodes, whole, holding at least "
                        "this share of its transitions (default 1)")
    g = p.add_argument_group("learner options (the paper's comparisons: --loss mse for scalar "
                             "CQL, --encoder impala|nature, --no-feature-norm)")
    g.add_argument("--encoder", help="nature, impala, resnet18, resnet34, resnet50, resnet101")
    g.add_argument("--width", type=float, help="encoder channel multiplier")
    g.add_argument("--feature-dim", type=int)
    g.add_argument("--batch-size", type=int, help="global batch (split over DDP processes)")
    g.add_argument("--lr", type=float, help="learning rate")
    g.add_argument("--cql-alpha", type=float, help="CQL weight α (0 disables CQL)")
    g.add_argument("--loss", choices=["c51", "mse"], help="c51 (distributional) or mse (scalar Q)")
    g.add_argument("--n-step", type=int, help="n-step returns")
    g.add_argument("--reward-clip", type=float)
    g.add_argument("--target-update-period", type=int)
    g.add_argument("--grad-clip", type=float)
    g.add_argument("--no-feature-norm", action="store_true", help="ablate feature normalization")
    g.add_argument("--bf16", action="store_true", help="bf16 autocast (GPUs)")
    g.add_argument("--compile", action="store_true", help="torch.compile the network (GPUs)")
    p.add_argument("--no-progress", action="store_true")
    add_device_arg(p, default=None)
    p.set_defaults(func=run)


def _parse_set(items: list[str]) -> tuple[dict, dict]:
    """``--set key=value`` → (run overrides, learner overrides); values parsed as TOML."""
    from scaledql.errors import UserError
    from scaledql.training.config import parse_toml_value

    run, learner = {}, {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        value = parse_toml_value(text.strip(), f"--set {key}")
        if key.startswith("learner."):
            learner[key[len("learner."):]] = value
        else:
            run[key] = value
    return run, learner


def _overrides(args: argparse.Namespace) -> tuple[dict, dict]:
    from scaledql.errors import UserError

    run, learner = _parse_set(args.set)
    run.update({k: getattr(args, k) for k in RUN_FLAGS if getattr(args, k) is not None})
    if args.freeze_encoder:
        run["freeze_encoder"] = True
    if args.games is not None:
        games = [g.strip() for g in args.games.split(",") if g.strip()]
        twice = sorted({g for g in games if games.count(g) > 1})
        if twice:
            raise UserError(f"--games lists {', '.join(twice)} twice")
        run["games"] = games
    if args.device is not None:
        run["device"] = args.device
    learner.update({k: getattr(args, k) for k in LEARNER_FLAGS if getattr(args, k) is not None})
    learner.update({key: value for flag, (key, value) in SWITCHES.items() if getattr(args, flag)})
    return run, learner


def _typed_overrides(algo: str, run: dict, learner: dict) -> tuple[dict, dict]:
    """``--set`` values are TOML: check them against the options' types as the config layers
    are checked (``steps=5.5`` is an error, ``lr=1`` becomes 1.0)."""
    from scaledql.agents.registry import learner_class
    from scaledql.training.config import RunConfig
    from scaledql.typed import typed

    run = {**run, **typed(RunConfig, run, "--set/flags", skip=("learner",))}
    learner = {**learner, **typed(learner_class(algo).config_class, learner,
                                  f"--set/flags learner ({algo})")}
    return run, learner


def build_config(args: argparse.Namespace):
    """The merged, validated RunConfig for these arguments (fresh run or resume)."""
    from scaledql.errors import UserError
    from scaledql.training.config import merge, preset_path, read_toml

    run, learner = _overrides(args)
    if args.resume:
        import json

        saved_file = args.out / "config.json"
        if not saved_file.is_file():
            raise UserError(f"--resume: {args.out} holds no run (no config.json)")
        try:
            saved = json.loads(saved_file.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{saved_file}: not valid JSON ({exc})") from None
        if not isinstance(saved, dict):
            raise UserError(f"{saved_file}: not a run configuration")
        algo = args.algo or saved.get("algo", "scaled-ql")
        if not isinstance(algo, str):
            raise UserError(f"{saved_file}: algo must be a learner name, got {algo!r}")
        run, learner = _typed_overrides(algo, run, learner)
        user = read_toml(preset_path(args.config)) if args.config else None
        run.update(out=str(args.out))
        if args.data is not None:
            run["data"] = str(args.data)
        saved_learner = saved.pop("learner", {})
        if not isinstance(saved_learner, dict):
            raise UserError(f"{saved_file}: learner must be a table of learner options")
        return merge(algo, {**saved, "learner": {algo: saved_learner}}, user, run, learner,
                     preset_name=str(saved_file), user_name=str(args.config))
    if args.data is None:
        raise UserError("--data is required (except with --resume)")
    from scaledql.api import make_config

    algo = args.algo or "scaled-ql"
    run, learner = _typed_overrides(algo, run, learner)
    # the data, the folder and the learner come from their own flags (as --set would be
    # overridden by them); the rest are run options
    options = {k: v for k, v in run.items() if k not in ("data", "out", "algo", "learner", "config")}
    return make_config(args.data, args.out, algo, config=args.config, learner=learner, **options)


def run(args: argparse.Namespace) -> int:
    from scaledql.api import train_run
    from scaledql.data.store import open_dataset
    from scaledql.training.config import to_toml

    cfg = build_config(args)
    if args.print_config:
        print(to_toml(cfg), end="")
        return 0
    dataset = open_dataset(Path(cfg.data), cfg.games)
    check_batch_memory(int(cfg.learner.batch_size), dataset.game(dataset.games[0]).obs_shape,
                       "--batch-size")
    summary = train_run(cfg, resume=args.resume, progress=not args.no_progress)
    if summary.get("interrupted"):
        return 130
    if summary.get("rank", 0) == 0:
        print(f"[train] done: {summary['step']} steps; run folder {summary['run']}")
    return 0
