"""Corpus: bad input to ``play`` and ``export``, and damaged exported agents loaded by
``evaluate`` (the same loading serves ``play``, ``finetune --from`` and ``train --init-from``).
Conventions: ``corpus_commands.py``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from corpus_commands import EVAL_CKPT, FLOAT
from corpus_setup import Case, Ctx, case, edit_json, write

PLAY = ["play", "--checkpoint", "{run}", "--game", "breakout", "--max-steps", "3", "--out",
        "{tmp}/v.gif", "--device", "cpu"]
EXPORT = ["export", "{run}", "--out", "{tmp}/exp"]
BASELINES = {"play": PLAY, "export": EXPORT}
# evaluate an exported agent at {tmp}/agent (the setup exports the run there, then damages it)
EVAL_EXPORT = [("{tmp}/agent" if a == "{run}" else a) for a in EVAL_CKPT]

CASES: list[Case] = []


def _setup_for(value: str) -> Callable[[Ctx], None] | None:
    if "{tmp}/f" in value:  # a file where a folder must be
        return lambda c: write(c.tmp / "f", "x")
    if value == "{tmp}/d.gif":
        return lambda c: (c.tmp / "d.gif").mkdir()
    return None


for flag, value, expect in [
    ("--game", "frobnicate", r"unknown minatar game 'frobnicate'"),
    ("--game", "freeway", r"no head for 'freeway'"),
    ("--game", "breakout,asterix", r"--game 'breakout,asterix': one game"),
    ("--game", ",", r"no games"),
    ("--out", "{tmp}/v.avi", r"unknown video type '\.avi'.*\.gif or \.mp4"),
    ("--out", "{tmp}/video", r"unknown video type '\(none\)'"),
    ("--out", "{tmp}/d.gif", r"d\.gif is a directory"),
    ("--out", "{tmp}/f/v.gif", r"cannot be made: .*f is a file"),
    ("--out", "{ro}/v.gif", r"scaledql-corpus|ro"),
    ("--checkpoint", "{tmp}/none", r"none(/checkpoint\.pt)? does not exist"),
    ("--checkpoint", "{tmp}", r"checkpoint\.pt does not exist"),
    ("--checkpoint", "{tmp}/f", r"not a scaledql checkpoint"),
    ("--episodes", "0", r"--episodes must be positive"),
    ("--episodes", "2000", r"could reach 8,000 frames; a GIF holds them all .*\.mp4"),
    ("--epsilon", "nan", FLOAT), ("--epsilon", "1.5", r"--epsilon must be in \[0, 1\]"),
    ("--max-steps", "-1", r"--max-steps must be >= 0"),
    ("--fps", "0", r"--fps must be in \[1, 120\]"), ("--fps", "2.5", r"invalid int value"),
    ("--seed", "-1", r"--seed must be >= 0"), ("--device", "nosuch", r"unknown device"),
]:
    CASES.append(case(f"play{flag}={value}", [*PLAY, flag, value], expect, _setup_for(value)))

CASES += [
    case("play-no-out", PLAY[:-4] + PLAY[-2:], r"required: --out"),
    case("export-missing-run", ["export", "{tmp}/none", "--out", "{tmp}/exp"],
         r"none/checkpoint\.pt does not exist|none does not exist"),
    case("export-run-garbage", EXPORT, r"not a scaledql checkpoint",
         lambda c: write(c.run() / "checkpoint.pt", b"\x00" * 64)),
    case("export-out-a-file", [*EXPORT, "--out", "{tmp}/f"], r"--out .*f is not a directory",
         lambda c: write(c.tmp / "f", "x")),
    case("export-out-holds-other-files", [*EXPORT, "--out", "{tmp}/full"],
         r"--out .*full exists and is not an earlier export",
         lambda c: write(c.tmp / "full" / "notes.txt", "mine")),
    case("export-out-unwritable", [*EXPORT, "--out", "{ro}/exp"], r"scaledql-corpus|ro"),
    case("export-run-eval-damaged", EXPORT, r"step_00000002\.json: not an evaluation report",
         lambda c: write(c.run() / "eval" / "step_00000002.json", '{"games": 3}')),
    case("export-run-eval-iqm-text", EXPORT, r"step_00000002\.json: not an evaluation report",
         lambda c: write(c.run() / "eval" / "step_00000002.json", json.dumps(
             {"games": {"breakout": {"returns": [1.0], "mean": 1.0, "normalized": 0.1}},
              "aggregate": {"iqm": "high", "iqm_ci": [0.0, 1.0]}}))),
]


def exported(fn: Callable[[Path], object]) -> Callable[[Ctx], None]:
    """Export the run to ``{tmp}/agent``, then damage the export with ``fn(folder)``."""
    def setup(ctx: Ctx) -> None:
        from scaledql.export import export_agent

        export_agent(ctx.run(), ctx.tmp / "agent")
        fn(ctx.tmp / "agent")

    return setup


def config_edit(fn: Callable[[dict], object]) -> Callable[[Ctx], None]:
    return exported(lambda d: edit_json(d / "config.json", fn))


def weights_edit(fn: Callable[[dict[str, torch.Tensor]], object]) -> Callable[[Ctx], None]:
    def damage(folder: Path) -> None:
        from safetensors.torch import load_file, save_file

        weights = load_file(folder / "model.safetensors")
        fn(weights)
        save_file(weights, folder / "model.safetensors")

    return exported(damage)


def _first(weights: dict[str, torch.Tensor]) -> str:
    return next(k for k, v in weights.items() if v.is_floating_point())


CASES += [
    case("export-load-no-config", EVAL_EXPORT, r"needs config\.json beside model\.safetensors",
         exported(lambda d: (d / "config.json").unlink())),
    case("export-load-config-not-json", EVAL_EXPORT, r"config\.json: not valid JSON",
         exported(lambda d: write(d / "config.json", "{"))),
    case("export-load-config-list", EVAL_EXPORT, r"no scaledql-export format marker",
         exported(lambda d: write(d / "config.json", "[]"))),
    case("export-load-no-marker", EVAL_EXPORT, r"no scaledql-export format marker",
         config_edit(lambda c: c.pop("format"))),
    case("export-load-version-9", EVAL_EXPORT, r"export version 9 is not supported",
         config_edit(lambda c: c.__setitem__("export_version", 9))),
    case("export-load-weights-garbage", EVAL_EXPORT, r"model\.safetensors is not a safetensors",
         exported(lambda d: write(d / "model.safetensors", b"garbage" * 10))),
    case("export-load-weights-truncated", EVAL_EXPORT, r"is not a safetensors file",
         exported(lambda d: write(d / "model.safetensors",
                                  (d / "model.safetensors").read_bytes()[:5000]))),
    case("export-load-weights-nan", EVAL_EXPORT, r"non-finite weights",
         weights_edit(lambda w: w[_first(w)].view(-1)[0].fill_(float("nan")))),
    case("export-load-weights-missing", EVAL_EXPORT, r"weights do not fit .*Missing key",
         weights_edit(lambda w: w.pop(_first(w)))),
    case("export-load-weights-shape", EVAL_EXPORT, r"weights do not fit .*size mismatch",
         weights_edit(lambda w: w.__setitem__(_first(w), torch.zeros(3, 3)))),
    case("export-load-weights-stranger", EVAL_EXPORT, r"decoder\.w belongs to no network",
         weights_edit(lambda w: w.__setitem__("decoder.w", torch.zeros(2)))),
    case("export-load-state-list", EVAL_EXPORT, r"state must be a table of numbers",
         config_edit(lambda c: c.__setitem__("state", {"step": [1]}))),
    case("export-load-state-type", EVAL_EXPORT, r"state step='two' is not a scaled-ql",
         config_edit(lambda c: c["state"].__setitem__("step", "two"))),
    case("export-load-state-unknown", EVAL_EXPORT, r"state mood=1 is not a scaled-ql",
         config_edit(lambda c: c["state"].__setitem__("mood", 1))),
    case("export-load-no-games", EVAL_EXPORT, r"checkpoint lacks games",
         config_edit(lambda c: c.pop("games"))),
    case("export-load-unknown-algo", EVAL_EXPORT, r"unknown learner 'nosuch'",
         config_edit(lambda c: c.__setitem__("algo", "nosuch"))),
    case("export-load-learner-config-key", EVAL_EXPORT, r"unknown key 'wdth'",
         config_edit(lambda c: c["learner_config"].__setitem__("wdth", 1.0))),
    case("export-load-actions-mismatch", EVAL_EXPORT, r"weights do not fit",
         config_edit(lambda c: c.__setitem__("num_actions", [4, 5]))),
    case("export-load-untrained-game", [*EVAL_EXPORT, "--games", "freeway"],
         r"no head for 'freeway'", exported(lambda d: None)),
    case("export-play-untrained-game", [*PLAY[:2], "{tmp}/agent", *PLAY[3:], "--game", "seaquest"],
         r"no head for 'seaquest'", exported(lambda d: None)),
    case("reexport-evaluation-damaged", ["export", "{tmp}/agent", "--out", "{tmp}/again"],
         r"config\.json: not an evaluation report",
         config_edit(lambda c: c.__setitem__("evaluation", {"games": 3}))),
    case("reexport-data-damaged", ["export", "{tmp}/agent", "--out", "{tmp}/again"],
         r"config\.json: damaged data section",
         config_edit(lambda c: c["data"]["games"]["breakout"].__setitem__("episodes", "many"))),
    case("export-load-not-json-utf8", EVAL_EXPORT, r"config\.json: not valid JSON",
         exported(lambda d: write(d / "config.json", b"\xff\xfe" + json.dumps({}).encode()))),
]
