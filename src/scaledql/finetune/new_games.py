"""Offline fine-tuning to games the pretrained run never saw, with limited data.

Each arm (``common.OFFLINE_ARMS``) × game × seed is one ordinary offline training run
(``training.offline.train``) in ``OUT/<arm>/<game>/seed_<s>/``: a RunConfig with the game,
``data_fraction`` (a share of its data: its first episodes, or with ``data_sample=uniform``
episodes drawn over the whole run) and, for transferred arms, ``init_from`` and
``freeze_encoder`` — the encoder is loaded, the dense projection and heads start fresh (the
paper: "the fully connected layers are re-initialised"). One run per game, as the paper
fine-tunes to *a* new game; the from-scratch arms are then single-game learners.

Learner configs: Scaled QL arms use the pretrained run's own learner config (the same network,
so its encoder fits; from scratch too, so only the initialization differs); BC takes the
options it shares with it (network and optimizer), so BC differs in its objective only. The
suite preset gives cadences; ``run_overrides`` and ``learner_overrides`` (``--set``, flags)
win. Held-out protocol: Atari fine-tunes to ``heldout5`` from a run pretrained on other games;
MinAtar leaves one game out of pretraining and fine-tunes to it (the default: every game of the
data that the run did not see). Re-running resumes killed runs and skips finished ones.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaledql.agents.registry import learner_class
from scaledql.atomic_files import exclusive_lock
from scaledql.checkpoint import load_checkpoint
from scaledql.data.sampling.sampler import fraction_of
from scaledql.data.store.dataset import open_dataset
from scaledql.errors import UserError
from scaledql.evaluate import EvalConfig, policy_evaluator
from scaledql.finetune.common import OFFLINE_ARMS, check_mae, read_run, write_spec
from scaledql.run_folder import checkpoint_file, finished_at
from scaledql.suites import EnvOptions
from scaledql.training.config import RunConfig, merge, suite_preset
from scaledql.training.lifecycle import WallClock
from scaledql.training.offline_loop import train


@dataclass
class OfflineFinetune:
    pretrained: Path
    data: Path
    out: Path
    games: list[str] | None = None  # default: the data's games the pretrained run never saw
    fraction: float = 1.0
    arms: list[str] = field(default_factory=lambda: ["pretrained"])
    seeds: list[int] = field(default_factory=lambda: [0])
    mae: Path | None = None
    steps: int | None = None  # gradient steps per run (default: the suite preset's)
    run_overrides: dict[str, Any] = field(default_factory=dict)
    learner_overrides: dict[str, Any] = field(default_factory=dict)
    progress: bool = True


def learner_base(algo: str, pretrained_cfg: dict[str, Any]) -> dict[str, Any]:
    """The learner options an arm starts from: the pretrained config's, those its learner has."""
    names = learner_class(algo).config_class.field_names()
    return {k: v for k, v in pretrained_cfg.items() if k in names}


def split_overrides(algos: list[str], overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Learner overrides per learner: each key goes to the learners that have it (``--cql-alpha``
    has no meaning for BC); a key no arm's learner has is an error."""
    known = {a: set(learner_class(a).config_class.field_names()) for a in algos}
    for key in overrides:
        if not any(key in names for names in known.values()):
            raise UserError(f"learner option {key!r}: none of the arms' learners "
                            f"({', '.join(algos)}) has it")
    return {a: {k: v for k, v in overrides.items() if k in known[a]} for a in algos}


def resolve_games(cfg: OfflineFinetune, pretrained: dict, data_games: list[str]) -> list[str]:
    seen = list(pretrained["games"])
    if cfg.games is None:
        games = [g for g in data_games if g not in seen]
        if not games:
            raise UserError(f"every game of {cfg.data} ({', '.join(data_games)}) was in the "
                            f"pretraining of {cfg.pretrained}; offline fine-tuning is to games it "
                            "never saw")
        return games
    for g in cfg.games:
        if g in seen:
            raise UserError(f"{g} was in the pretraining of {cfg.pretrained} (its games: "
                            f"{', '.join(seen)}); offline fine-tuning is to games it never saw")
    return list(cfg.games)


def run_configs(cfg: OfflineFinetune) -> tuple[list[tuple[str, str, int, RunConfig]], dict]:
    """Every (arm, game, seed, RunConfig) of the experiment, validated, and its description."""
    if not cfg.arms:
        raise UserError("no arms to run")
    pretrained = read_run(cfg.pretrained, "--from", "scaled-ql")
    check_mae(cfg.arms, OFFLINE_ARMS, cfg.mae)
    if cfg.mae is not None:
        read_run(cfg.mae, "--mae", "mae")
    dataset = open_dataset(cfg.data, cfg.games, contents=True)
    games = resolve_games(cfg, pretrained, dataset.games)
    data = {g: dataset.game(g) for g in games}
    for g, d in data.items():
        if d.suite != pretrained["suite"]:
            raise UserError(f"{cfg.data}: {g} is a {d.suite} game; {cfg.pretrained} was "
                            f"pretrained on {pretrained['suite']}")
        if list(d.obs_shape) != list(pretrained["obs_shape"]):
            raise UserError(f"{cfg.data}: {g} observations are {list(d.obs_shape)}, the "
                            f"pretrained network's {pretrained['obs_shape']}")
    suite = pretrained["suite"]
    algos = list(dict.fromkeys(OFFLINE_ARMS[a].algo for a in cfg.arms))
    overrides = split_overrides(algos, cfg.learner_overrides)
    preset = suite_preset(suite)
    steps = cfg.steps or int(preset.get("steps", 20_000))
    run = {"steps": steps, "data_fraction": cfg.fraction, "log_every": min(100, steps),
           "checkpoint_every": min(1000, steps), "eval_every": max(1, steps // 4),
           **cfg.run_overrides}
    configs = []
    for arm_name in cfg.arms:
        arm = OFFLINE_ARMS[arm_name]
        init = {"from": str(cfg.pretrained), "mae": str(cfg.mae), None: None}[arm.init]
        user = {"learner": {arm.algo: learner_base(arm.algo, pretrained["learner_config"])}}
        for game in games:
            for seed in cfg.seeds:
                out = cfg.out / arm_name / game / f"seed_{seed}"
                rc = merge(arm.algo, preset, user, {
                    **run, "data": str(cfg.data), "out": str(out), "games": [game], "seed": seed,
                    "init_from": init, "init_parts": "encoder", "freeze_encoder": arm.freeze},
                    overrides[arm.algo], preset_name=f"preset {suite}",
                    user_name=f"{cfg.pretrained} learner config")
                configs.append((arm_name, game, seed, rc))
    # Every run shares one selection (the split seed, not the run's seed, draws it).
    selection = configs[0][3].episodes("all")
    kept = {g: fraction_of(d, selection) for g, d in data.items()}
    spec = {"kind": "offline", "from": str(cfg.pretrained), "mae": str(cfg.mae) if cfg.mae else None,
            "data": str(cfg.data), "suite": suite, "games": games,
            "pretrained_games": list(pretrained["games"]), "fraction": cfg.fraction,
            "sample": selection.sample, "kept": kept, "arms": list(cfg.arms), "seeds": list(cfg.seeds), "steps": steps,
            "x_label": "gradient steps"}
    return configs, spec


def finished(rc: RunConfig) -> bool:
    """The run reached its steps and logged its final evaluation. A finished run restored from
    a study's archive has no checkpoint (archives keep none for finished runs): its logged
    final evaluation alone says it finished."""
    run = Path(rc.out)
    if checkpoint_file(run).exists() and load_checkpoint(run)["step"] < rc.steps:
        return False
    return finished_at(run, rc.steps)


def run_offline(cfg: OfflineFinetune) -> dict:
    """Run (resume, or skip when finished) every arm × game × seed; write the report."""
    configs, spec = run_configs(cfg)
    with exclusive_lock(cfg.out, "fine-tuning experiment"):
        write_spec(cfg.out, spec)
        dataset = open_dataset(cfg.data, spec["games"])
        summary = []
        for i, (arm, game, seed, rc) in enumerate(configs, 1):
            where = f"{arm}/{game}/seed_{seed}"
            if finished(rc):
                print(f"[finetune] {i}/{len(configs)} {where}: finished, skipped", file=sys.stderr)
                summary.append({"run": where, "skipped": True})
                continue
            resume = checkpoint_file(rc.out).exists()
            print(f"[finetune] {i}/{len(configs)} {where}: {OFFLINE_ARMS[arm].label}"
                  f"{' (resumed)' if resume else ''}", file=sys.stderr)
            options = EnvOptions(**dataset.game(game).env_options)
            evaluator = policy_evaluator(spec["suite"], EvalConfig(
                episodes=rc.eval_episodes, seed=rc.seed, epsilon=rc.eval_epsilon, options=options,
                progress=cfg.progress), Path(rc.out))
            clock = WallClock(Path(rc.out))
            result = train(rc, resume=resume, evaluate_fn=evaluator, progress=cfg.progress)
            result["wall_seconds"] = clock.stop()
            summary.append({"run": where, **{k: result[k] for k in ("step", "interrupted",
                                                                    "wall_seconds")}})
            if result["interrupted"]:
                return {"interrupted": True, "runs": summary}
    from scaledql.finetune.report import write_report

    return {"interrupted": False, "runs": summary, "report": str(write_report(cfg.out))}
