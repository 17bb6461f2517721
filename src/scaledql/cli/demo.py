"""``scaledql demo``: the main job on the embedded default (all five MinAtar games)."""

from __future__ import annotations

import argparse
from pathlib import Path

from scaledql.cli.common import add_device_arg, add_progress_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job: collect MinAtar data, train one multi-game "
                                    "Scaled QL agent offline, evaluate, write a report")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default: runs/demo, or runs/demo-quick with --quick)")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage (default: 0)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the same pipeline, tiny (~1 minute)")
    size.add_argument("--full", action="store_true",
                      help="the earlier, 2.4x larger demo: 50k transitions and 20k steps a game "
                           "(9 min with native bf16, 37 without; default: 21k and 8.4k, 17)")
    add_progress_args(p)
    add_device_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scaledql.experiments.demo_pipeline import DemoConfig, run_demo

    out = args.out or Path("runs/demo-quick" if args.quick else "runs/demo")
    if args.quick:
        cfg = DemoConfig.quick_config(out, args.seed, args.device, not args.no_progress)
    elif args.full:
        cfg = DemoConfig.full_config(out, args.seed, args.device, not args.no_progress)
    else:
        cfg = DemoConfig(out=out, seed=args.seed, device=args.device,
                         progress=not args.no_progress)
    summary = run_demo(cfg)
    rows = [("Scaled QL", summary["agent"]), ("behaviour (dataset)", summary["behaviour_dataset"])]
    rows += [(algo, report) for algo, report in summary["baselines"].items()]
    for name, report in rows:  # the report's headline numbers, where the user is
        agg = report["aggregate"]
        if "iqm" in agg:
            lo, hi = agg["iqm_ci"]
            print(f"{name:<20} IQM {agg['iqm']:.3f} [{lo:.3f}, {hi:.3f}]")
    print(f"report: {summary['report']}  ({summary['wall_seconds'] / 60:.1f} min)")
    return 0
