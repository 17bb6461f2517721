"""``scaledql export RUN --out DIR``: a trained agent as safetensors weights, its full config
and a model card. Light at import: the work happens in ``scaledql.export``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="share an agent: weights (safetensors), config.json, model card",
        description="Write DIR/model.safetensors (the learner's networks), DIR/config.json "
                    "(everything else the checkpoint says, the data's identity and provenance, "
                    "the run's evaluation) and DIR/README.md (the model card). Every command "
                    "that takes a run (evaluate, play, finetune --from, train --init-from) "
                    "takes DIR.")
    p.add_argument("run", type=Path, help="a run folder, a checkpoint file "
                                          "(e.g. RUN/checkpoints/step_N.pt) or an export")
    p.add_argument("--out", type=Path, required=True,
                   help="the folder to write (new, empty, or an earlier export: replaced)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scaledql.export import export_agent

    sizes = export_agent(args.run, args.out)
    print(f"[export] {args.run} → {args.out}")
    for name, size in sizes.items():
        print(f"  {name:<18} {size:>12,} bytes")
    return 0
