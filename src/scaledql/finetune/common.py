"""What both fine-tuning experiments share: arms, seeds, the pretrained run, the experiment file.

An *arm* is one of the compared ways to get a player for the new game(s): which learner trains,
whose encoder it starts from (``from``: the pretrained Scaled QL run, ``mae``: an MAE run, or
none) and whether that encoder stays frozen. Arms that start from the pretrained Scaled QL run
are "ours"; the report compares the best of them with the best of the others.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaledql.atomic_files import atomic_write_json
from scaledql.errors import UserError

SPEC_FILE = "finetune.json"


@dataclass(frozen=True)
class Arm:
    algo: str  # the learner trained on the new game(s)
    init: str | None  # "from" (the pretrained run), "mae" (--mae), None (from scratch)
    freeze: bool  # keep the transferred encoder fixed
    label: str
    parts: str = "encoder"  # what transfers from "from" (transfer.py): encoder or network

    @property
    def ours(self) -> bool:
        return self.init == "from"


OFFLINE_ARMS = {
    "pretrained": Arm("scaled-ql", "from", False, "Scaled QL, pretrained encoder fine-tuned"),
    "pretrained-frozen": Arm("scaled-ql", "from", True, "Scaled QL, pretrained encoder frozen"),
    "scratch": Arm("scaled-ql", None, False, "Scaled QL from scratch (same network)"),
    "mae": Arm("scaled-ql", "mae", False, "Scaled QL on an MAE-pretrained encoder"),
    "mae-frozen": Arm("scaled-ql", "mae", True, "Scaled QL on a frozen MAE-pretrained encoder"),
    "bc": Arm("bc", None, False, "behaviour cloning from scratch (same network)"),
}
ONLINE_ARMS = {
    "pretrained": Arm("scaled-ql", "from", False, "Scaled QL online, pretrained encoder"),
    "pretrained-network": Arm("scaled-ql", "from", False, "Scaled QL online, the whole "
                              "pretrained network (encoder, projection, the game's head)",
                              parts="network"),
    "pretrained-frozen": Arm("scaled-ql", "from", True,
                             "Scaled QL online, pretrained encoder frozen"),
    "scratch": Arm("scaled-ql", None, False, "Scaled QL online from scratch (same network)"),
    "mae": Arm("scaled-ql", "mae", False, "Scaled QL online on an MAE-pretrained encoder"),
    "dqn": Arm("dqn", None, False, "single-game online DQN from scratch"),
}
# The paper's comparison sets ("all" on the command line).
PAPER_ARMS = {"offline": ("pretrained", "pretrained-frozen", "scratch", "mae", "bc"),
              "online": ("pretrained", "scratch", "mae", "dqn")}


def parse_arms(text: str | None, kind: str, freeze: bool = False) -> list[str]:
    """``--arms a,b`` (or ``all``) → arm names. ``freeze`` (``--freeze-encoder``) turns every
    arm that loads an encoder into its frozen form; without ``--arms`` the arm is
    ``pretrained`` (``pretrained-frozen`` with ``--freeze-encoder``)."""
    table = OFFLINE_ARMS if kind == "offline" else ONLINE_ARMS
    names = [a.strip() for a in (text or "pretrained").split(",") if a.strip()]
    if names == ["all"]:
        names = list(PAPER_ARMS[kind])
    unknown = [a for a in names if a not in table]
    if unknown or not names:
        raise UserError(f"unknown {kind} fine-tuning arm {unknown[0] if unknown else text!r} "
                        f"(arms: {', '.join(table)}, or all)")
    if freeze:
        frozen = []
        for a in names:
            if table[a].init is not None and not table[a].freeze:
                if f"{a}-frozen" not in table:
                    raise UserError(f"--freeze-encoder: arm {a} has no frozen form here")
                a = f"{a}-frozen"
            frozen.append(a)
        names = frozen
    return list(dict.fromkeys(names))


def parse_seeds(text: str | int | None) -> list[int]:
    """``--seeds 0,1,2`` → [0, 1, 2] (non-negative, no repeats)."""
    items = [str(text)] if isinstance(text, int) else (text or "0").split(",")
    try:
        seeds = [int(s) for s in items if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected a comma list of integers") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r}: expected distinct non-negative integers")
    return seeds


def read_run(path: Path | str, flag: str, algo: str) -> dict:
    """The checkpoint payload of a run given as ``flag``; one line if it is not a ``algo`` run."""
    from scaledql.checkpoint import checkpoint_path, load_checkpoint
    from scaledql.run_folder import CHECKPOINT

    path = Path(path)
    if not checkpoint_path(path).exists():
        what = "no such run" if not path.exists() else f"no {CHECKPOINT} in it"
        raise UserError(f"{flag} {path}: {what} (a training run folder or its checkpoint)")
    payload = load_checkpoint(path, "cpu")
    if payload.get("algo") != algo:
        raise UserError(f"{flag} {path} is a {payload.get('algo')} run; it must be a {algo} run")
    return payload


def check_mae(arms: list[str], table: dict[str, Arm], mae: Path | None) -> None:
    if mae is None and any(table[a].init == "mae" for a in arms):
        raise UserError("an mae arm needs --mae RUN (a run of `scaledql train --algo mae`)")


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["scaledql", *sys.argv[1:]])


def write_spec(out: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Create or extend ``OUT/finetune.json``. Re-running into the same folder may add arms and
    seeds; anything else that differs is refused (it would mix two experiments' runs)."""
    file = out / SPEC_FILE
    spec = {**spec, "commands": [command_line()]}
    if file.exists():
        try:
            old = json.loads(file.read_text())
        except (ValueError, UnicodeDecodeError):
            raise UserError(f"{file}: not valid JSON") from None
        if spec.get("mae") is None:  # a later command without the mae arm needs no --mae
            spec["mae"] = old.get("mae")
        elif old.get("mae") is None:  # the mae arm added to an experiment that had none
            old["mae"] = spec["mae"]
        if "sample" in spec and "sample" not in old:
            # Written before specs named the sample (and counted ``kept`` as the first
            # episodes); each run's own config refuses a resume with another sample.
            old["sample"] = spec["sample"]
        derived = ("arms", "seeds", "commands", "steps", "dqn_steps", "kept")
        fixed = [k for k in spec if k not in derived]
        diff = [k for k in fixed if old.get(k) != spec[k]]
        if diff:
            raise UserError(f"{out} holds another fine-tuning experiment (its {diff[0]} is "
                            f"{old.get(diff[0])!r}, not {spec[diff[0]]!r}); choose another --out")
        spec["arms"] = list(dict.fromkeys([*old.get("arms", []), *spec["arms"]]))
        spec["seeds"] = list(dict.fromkeys([*old.get("seeds", []), *spec["seeds"]]))
        spec["commands"] = [*old.get("commands", []), *spec["commands"]]
    atomic_write_json(file, spec)
    return spec


def read_spec(out: Path) -> dict[str, Any]:
    file = Path(out) / SPEC_FILE
    if not file.is_file():
        raise UserError(f"{out} holds no fine-tuning experiment (no {SPEC_FILE})")
    try:
        return json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{file}: not valid JSON") from None
