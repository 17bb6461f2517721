"""``scaledql train``: train any registered learner offline on a multi-game dataset.

Configuration layers (later wins, key by key): the learner's defaults → the suite's preset →
``--config FILE`` → ``--set KEY=VALUE`` and the named flags. ``--resume`` starts from the run's
own saved config instead of the preset; flags then may only change run length and cadences.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from scaledql.cli.common import (
    add_device_arg,
    add_progress_args,
    check_batch_memory,
    check_data_dir,
)

# Flag (argparse dest) → run option; None-valued flags are left to the layers below them.
RUN_FLAGS = ("steps", "seed", "log_every", "checkpoint_every", "eval_every", "eval_episodes",
             "final_eval_episodes",
             "sample_workers", "prefetch", "init_from", "init_parts", "data_fraction",
             "data_sample", "validation", "split_seed", "keep_every", "resident_gb", "rotate_every", "rotate_share")
# Flag → learner option (an error if the chosen learner has no such option).
LEARNER_FLAGS = ("encoder", "width", "feature_dim", "batch_size", "lr", "cql_alpha", "loss",
                 "n_step", "reward_clip", "target_update_period", "grad_clip")
SWITCHES = {"no_feature_norm": ("feature_norm", False)}
# --bf16/--no-bf16, --compile/--no-compile: unset leaves the learner's "auto" (on for CUDA).
TRISTATE = ("bf16", "compile")


def register(sub: argparse._SubParsersAction) -> None:
    from scaledql.agents.registry import learner_names, learner_summary
    from scaledql.data.store.episodes import SAMPLES
    from scaledql.training.config import TRANSFER_PARTS
    from scaledql.value_targets import value_target_names, value_target_summary

    names = learner_names()
    algos = "; ".join(f"{n}: {learner_summary(n)}" for n in names)
    targets = value_target_names()
    target_help = "; ".join(f"{n}: {value_target_summary(n)}" for n in targets)
    d = _DefaultText()
    p = sub.add_parser("train", help="train a learner offline on a multi-game dataset",
                       description="Offline multi-game training of any registered learner. "
                                   "Run under torchrun for DDP. Option defaults come from the "
                                   "data's suite preset (the packaged scaledql/configs/<suite>"
                                   ".toml) where it sets them, else from the learner or the run "
                                   "config; with --resume they are the run's saved values. "
                                   "--print-config shows the merged values.")
    p.add_argument("--data", type=Path, help="dataset directory (DIR/<GAME>/...); required "
                                             "except with --resume (default there: the run's)")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--algo", choices=names, default=None,
                   help=f"learner (default: scaled-ql; with --resume the run's). {algos}")
    p.add_argument("--config", default=None,
                   help="preset name (minatar, atari) or a TOML file layered over the suite's "
                        "preset; see --print-config for the shape (default: the data's suite "
                        "preset alone)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any option, e.g. --set steps=500 --set learner.lr=1e-3 "
                        "(VALUE in TOML syntax; repeatable; default: none)")
    p.add_argument("--games", default=None,
                   help="comma list of dataset games (default: every game of the data)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its saved config and checkpoint")
    p.add_argument("--print-config", action="store_true",
                   help="print the merged configuration as TOML and exit")
    g = p.add_argument_group("run options")
    g.add_argument("--steps", type=int, help=f"gradient steps ({d.run('steps')})")
    g.add_argument("--seed", type=int, help=f"seed of the network, sampling and evaluation "
                                            f"({d.run('seed')})")
    g.add_argument("--log-every", type=int, help=f"steps between logged rows ({d.run('log_every')})")
    g.add_argument("--checkpoint-every", type=int,
                   help=f"steps between checkpoints ({d.run('checkpoint_every')})")
    g.add_argument("--keep-every", type=int,
                   help="also keep RUN/checkpoints/step_N.pt every K steps, for re-evaluation "
                        f"or fine-tuning from an earlier step, 0: the latest only "
                        f"({d.run('keep_every')})")
    g.add_argument("--eval-every", type=int, help="gradient steps between evaluations, 0: at the "
                                                  f"end only ({d.run('eval_every')})")
    g.add_argument("--eval-episodes", type=int, help="episodes per game at each evaluation "
                                                     f"({d.run('eval_episodes')})")
    g.add_argument("--final-eval-episodes", type=int,
                   help="episodes per game at the last evaluation (default: --eval-episodes)")
    g.add_argument("--sample-workers", type=int,
                   help="background sampling threads, 0: none (default: 1 on CUDA, 0 on CPU)")
    g.add_argument("--prefetch", type=int,
                   help=f"batches each sampling thread keeps ready ({d.run('prefetch')})")
    g.add_argument("--init-from", help="a run whose torso initialises this network (transfer; "
                                       "default: none, fresh weights)")
    g.add_argument("--init-parts", choices=TRANSFER_PARTS,
                   help="what --init-from transfers: the encoder (default, as the paper), the "
                        "torso (and projection), or the whole network (and the heads of games "
                        "it was trained on)")
    g.add_argument("--freeze-encoder", action="store_true", help="keep the encoder fixed")
    g.add_argument("--data-fraction", type=float,
                   help="share of each game's data: its first episodes, whole, holding at least "
                        f"this share of its transitions ({d.run('data_fraction')})")
    g.add_argument("--data-sample", choices=SAMPLES,
                   help="which episodes --data-fraction keeps: the first ones, or a uniform "
                        f"sample over the whole run, seeded by --split-seed ({d.run('data_sample')})")
    g.add_argument("--validation", type=float, metavar="SHARE",
                   help="hold out this share of each game's episodes (seeded by --split-seed, "
                        "the same split for every --seed) and log the TD and CQL losses on them "
                        f"at each evaluation ({d.run('validation')})")
    g.add_argument("--split-seed", type=int,
                   help="seed of --validation's split and --data-sample uniform "
                        f"({d.run('split_seed')})")
    g.add_argument("--resident-gb", type=float,
                   help="sample from a pool of at most this many GB of decoded blocks per "
                        "process, rotated (needed for compressed stores; docs in README's "
                        "'DQN Replay at paper scale') (default: off, memory-map everything)")
    g.add_argument("--rotate-every", type=int,
                   help=f"with --resident-gb: batches between pool rotations ({d.run('rotate_every')})")
    g.add_argument("--rotate-share", type=float,
                   help="with --resident-gb: share of each game's resident blocks replaced at "
                        f"a rotation ({d.run('rotate_share')})")
    g = p.add_argument_group(
        "learner options", "Defaults shown are scaled-ql's (the default --algo); other learners "
        "have their own (docs/defaults.md, docs/defaults_bc_mae.md; --print-config shows them). "
        "The paper's comparisons: --loss mse for scalar CQL, --encoder impala|nature, "
        "--no-feature-norm; beyond it: --loss hl-gauss / two-hot (docs/defaults.md).")
    g.add_argument("--encoder", help="nature, impala, resnet18, resnet34, resnet50, resnet101 "
                                     f"({d.learner('encoder')})")
    g.add_argument("--width", type=float,
                   help=f"encoder channel multiplier ({d.learner('width')})")
    g.add_argument("--feature-dim", type=int, help="width of the dense projection before the "
                                                   f"heads ({d.learner('feature_dim')})")
    g.add_argument("--batch-size", type=int, help="global batch, split over DDP processes "
                                                  f"({d.learner('batch_size')})")
    g.add_argument("--lr", type=float, help="learning rate at the preset's lr_batch_size, "
                                            f"sqrt-scaled to --batch-size ({d.learner('lr')})")
    g.add_argument("--cql-alpha", type=float,
                   help=f"CQL weight α, 0 disables CQL ({d.learner('cql_alpha')})")
    g.add_argument("--loss", choices=targets,
                   help=f"the value target ({d.learner('loss')}): {target_help}; "
                        "hl-gauss's σ: --set learner.hl_gauss_sigma_ratio=R (bin widths, "
                        f"{d.learner('hl_gauss_sigma_ratio')})")
    g.add_argument("--n-step", type=int, help=f"n-step returns ({d.learner('n_step')})")
    g.add_argument("--reward-clip", type=float,
                   help=f"clip rewards to [-c, c] for learning ({d.learner('reward_clip')})")
    g.add_argument("--target-update-period", type=int,
                   help=f"gradient steps between target copies ({d.learner('target_update_period')})")
    g.add_argument("--grad-clip", type=float,
                   help=f"max global gradient norm ({d.learner('grad_clip')})")
    g.add_argument("--no-feature-norm", action="store_true", help="ablate feature normalization")
    g.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast of the forward passes (default: on for CUDA, off on a CPU)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the training forward (default: on for CUDA, off on a "
                        "CPU)")
    add_progress_args(p)
    g = p.add_argument_group("Weights & Biases (optional: pip install wandb)")
    g.add_argument("--wandb", action="store_true",
                   help="also log the config, parameter counts and metrics to W&B")
    g.add_argument("--wandb-project", default="scaledql", help="W&B project (default: %(default)s)")
    g.add_argument("--wandb-entity", default=None,
                   help="W&B entity (default: your W&B default entity)")
    g.add_argument("--wandb-name", default=None,
                   help="W&B run name (default: the name of the --out folder)")
    g.add_argument("--wandb-mode", choices=["online", "offline"], default=None,
                   help="W&B mode (default: W&B's own, e.g. WANDB_MODE)")
    add_device_arg(p, default=None, note="; with --resume the run's")
    p.set_defaults(func=run)


class _DefaultText:
    """"default: …" for the help of a run or learner option: the suite presets' values where
    they set the option (per suite when they differ), else the dataclass default. Reads the two
    packaged TOML files only; a broken preset becomes a vaguer text, never a failed --help."""

    def __init__(self) -> None:
        from scaledql.agents.registry import learner_config_class
        from scaledql.errors import UserError
        from scaledql.suites import SUITE_NAMES
        from scaledql.training.config import RunConfig, preset_layers

        self.run_defaults = {f.name: f.default for f in fields(RunConfig)}
        self.learner_defaults = {f.name: f.default for f in fields(learner_config_class("scaled-ql"))}
        self.presets: dict[str, tuple[dict, dict]] = {}
        for suite in SUITE_NAMES:
            try:
                self.presets[suite] = preset_layers(suite, "scaled-ql")
            except UserError:
                self.presets = {}
                break

    def run(self, key: str) -> str:
        return self._text(key, self.run_defaults[key], 0)

    def learner(self, key: str) -> str:
        return self._text(key, self.learner_defaults[key], 1)

    def _text(self, key: str, default: object, which: int) -> str:
        if not self.presets:
            return "default: the suite preset's"
        values = {s: layers[which].get(key, default) for s, layers in self.presets.items()}
        if not any(key in layers[which] for layers in self.presets.values()):
            return f"default: {_show(default)}"
        if len(set(map(repr, values.values()))) == 1:
            return f"default: {_show(next(iter(values.values())))} in both suite presets"
        return "default: " + "; ".join(f"{s} preset {_show(v)}" for s, v in values.items())


def _show(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


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
    learner.update({k: getattr(args, k) for k in TRISTATE if getattr(args, k) is not None})
    return run, learner


def build_config(args: argparse.Namespace):
    """The merged, validated RunConfig for these arguments (fresh run or resume)."""
    return _config_and_data(args)[0]


def _config_and_data(args: argparse.Namespace):
    """(the merged, validated RunConfig, the store as a fresh run's config opened it or None)."""
    from scaledql.errors import UserError

    run, learner = _overrides(args)
    if args.resume:
        from scaledql.training.resume_config import resume_config

        return resume_config(args.out, run, learner, algo=args.algo, config=args.config,
                             data=args.data), None
    if args.data is None:
        raise UserError("--data is required (except with --resume)")
    if not args.print_config:
        check_data_dir(args.data)  # before torch loads (scaledql.api.functions imports it)
    from scaledql.api.functions import layered_config, suite_of
    from scaledql.data.store.dataset import open_dataset
    from scaledql.training.resume_config import typed_overrides

    algo = args.algo or "scaled-ql"
    run, learner = typed_overrides(algo, run, learner)
    # the data, the folder and the learner come from their own flags (as --set would be
    # overridden by them); the rest are run options
    options = {k: v for k, v in run.items() if k not in ("data", "out", "algo", "learner", "config")}
    dataset = open_dataset(Path(args.data))  # the run's one opening of its store
    return layered_config(suite_of(dataset), args.data, args.out, algo, config=args.config,
                          learner=learner, **options), dataset


def run(args: argparse.Namespace) -> int:
    from scaledql.errors import UserError
    from scaledql.training.config import to_toml

    cfg, opened = _config_and_data(args)
    if args.print_config:  # torch-free up to here: printing a config is instant
        print(to_toml(cfg), end="")
        return 0
    check_data_dir(cfg.data)  # a resumed run's, before torch loads
    from scaledql.api.functions import train_run
    from scaledql.data.store.dataset import open_dataset, select_games

    wandb = None
    named = [f"--wandb-{k}" for k in ("entity", "name", "mode") if getattr(args, f"wandb_{k}")]
    if not args.wandb and (named or args.wandb_project != "scaledql"):
        raise UserError(f"{(named or ['--wandb-project'])[0]} needs --wandb")
    if args.wandb:
        from scaledql.training.metrics import WandbOptions, wandb_available

        if not wandb_available():  # before anything is written or trained
            raise UserError("--wandb: the wandb package is not installed (pip install wandb)")
        wandb = WandbOptions(args.wandb_project, args.wandb_entity, args.wandb_name,
                             args.wandb_mode)
    dataset = select_games(opened, Path(cfg.data), cfg.games) if opened is not None \
        else open_dataset(Path(cfg.data), cfg.games)
    check_batch_memory(int(cfg.learner.batch_size), dataset.game(dataset.games[0]).obs_shape,
                       "--batch-size")
    summary = train_run(cfg, resume=args.resume, progress=not args.no_progress, wandb=wandb,
                        dataset=dataset)
    if summary.get("interrupted"):
        return 130
    if summary.get("rank", 0) == 0:
        print(f"[train] done: {summary['step']} steps; run folder {summary['run']}")
    return 0
