"""Online fine-tuning to a game variant: ε-greedy interaction, a replay, the Scaled QL update.

Variants: Atari games in another ALE mode and/or difficulty (validated against the ROM);
MinAtar has neither, so its variant is another sticky-action probability (``--sticky``, e.g.
0.3 against the data's 0.1: the agent's chosen action is ignored more often, a change of the
game's dynamics). A game the run was pretrained on in exactly the same setting is refused (not
a variant); a game it never saw is accepted and reported as such.

Per arm (``common.ONLINE_ARMS``) × seed, ``OUT/<arm>/seed_<s>/`` holds one online run
(``training.online_run.run_online_job``: evaluations, logs, checkpoints, resume) for ``steps``
environment steps (agent steps; 4 frames each on Atari). Arms that train the pretrained run's
learner (Scaled QL) take its options with ``ONLINE_OPTIONS`` (``n_step = 1``: the replay holds
1-step transitions) and the CQL weight ``cql_alpha``, default 0: the Scaled QL update (C51,
feature normalization, same network and optimizer) without the conservative term. Online,
CQL pushes up the replay's actions, which are the agent's own: in our MinAtar runs with the
pretrained run's α = 0.1 every Scaled QL arm locked into one action within 3,000 steps
(docs/finetune.md); ``--cql-alpha 0.1`` continues the offline objective as is. Transferred
arms load the encoder (the projection and head start fresh), or with ``pretrained-network`` the
whole network, the game's own head included. The ``dqn`` arm is the online double DQN learner
that ``collect`` runs with its config's defaults (``DQNConfig``: Nature ×0.5, batch 32; the
exploration schedule is this module's, not collect's), the paper's single-game DQN baseline,
for ``dqn_steps`` (default ``steps``).

Logs, evaluations and resume are the online run's (``training.online_run``): re-running the
command continues a killed arm from its last checkpoint and skips finished ones.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from scaledql.agents.registry import learner_class
from scaledql.atomic_files import exclusive_lock
from scaledql.device import pick_device
from scaledql.errors import UserError
from scaledql.finetune.common import ONLINE_ARMS, check_mae, read_run, write_spec
from scaledql.suites import EnvOptions, get_suite
from scaledql.training.online_loop import OnlineSchedule
from scaledql.training.online_run import OnlineRun, run_online_job
from scaledql.typed_fields import typed

# What the pretrained run's learner changes online: the replay holds 1-step transitions.
ONLINE_OPTIONS = {"n_step": 1}


@dataclass
class OnlineFinetune:
    pretrained: Path
    game: str
    out: Path
    steps: int  # environment steps per run
    suite: str = "minatar"
    options: EnvOptions = field(default_factory=EnvOptions)
    arms: list[str] = field(default_factory=lambda: ["pretrained"])
    seeds: list[int] = field(default_factory=lambda: [0])
    mae: Path | None = None
    dqn_steps: int | None = None  # the dqn arm's steps (the paper gives DQN far more)
    cql_alpha: float = 0.0  # the Scaled QL arms' CQL weight (see the module docstring)
    learner_overrides: dict[str, Any] = field(default_factory=dict)  # every arm's learner
    schedule: dict[str, Any] = field(default_factory=dict)  # OnlineSchedule fields given
    num_envs: int = 4
    eval_every: int | None = None  # default: steps // 5
    eval_episodes: int = 10
    checkpoint_every: int | None = None  # default: eval_every
    device: str = "auto"
    progress: bool = True


def default_schedule(steps: int, given: dict[str, Any]) -> OnlineSchedule:
    """OnlineSchedule defaults scaled to the run: learning starts after a tenth of the steps
    (at most 2,000, the collector's), ε decays over a quarter (at most 25,000)."""
    names = {f.name for f in fields(OnlineSchedule)}
    unknown = set(given) - names
    if unknown:
        raise UserError(f"unknown online schedule option {sorted(unknown)[0]!r}")
    base = OnlineSchedule(learning_starts=min(2_000, steps // 10),
                          epsilon_decay_steps=max(1, min(25_000, steps // 4)))
    return replace(base, **given).validate()


def check_variant(cfg: OnlineFinetune, pretrained: dict) -> bool:
    """The game must be valid (modes/difficulties checked against the ROM) and, if it was in
    pretraining, differ from the pretraining setting. Returns whether it was in pretraining."""
    suite = get_suite(cfg.suite)
    spec = suite.spec(cfg.game, cfg.options)  # UserError for a mode/difficulty the ROM lacks
    if cfg.suite != pretrained["suite"]:
        raise UserError(f"{cfg.pretrained} was pretrained on {pretrained['suite']} games, not "
                        f"{cfg.suite}")
    if list(spec.obs_shape) != list(pretrained["obs_shape"]):
        raise UserError(f"{cfg.game} observations are {list(spec.obs_shape)}, the pretrained "
                        f"network's {pretrained['obs_shape']}")
    if cfg.game not in pretrained["games"]:
        return False
    default_sticky = suite.default_sticky

    def key(o: dict) -> tuple:
        sticky = o.get("sticky")
        return (default_sticky if sticky is None else sticky, o.get("mode"), o.get("difficulty"),
                bool(o.get("full_action_space")), bool(o.get("reversed_controls")))

    if key(cfg.options.record()) == key(pretrained.get("env_options") or {}):
        hint = getattr(suite, "variant_options", "--sticky (e.g. 0.3)")
        raise UserError(f"{cfg.game} with these options is the game {cfg.pretrained} was "
                        f"pretrained on, not a variant: choose {hint}")
    return True


def run_config(cfg: OnlineFinetune, arm_name: str, seed: int, pretrained: dict) -> OnlineRun:
    arm = ONLINE_ARMS[arm_name]
    steps = cfg.dqn_steps if arm_name == "dqn" and cfg.dqn_steps else cfg.steps
    eval_every = cfg.eval_every or max(1, cfg.steps // 5)
    if arm.algo == pretrained["algo"]:  # the pretrained run's learner and options, made online
        learner = {**pretrained["learner_config"], **ONLINE_OPTIONS, "cql_alpha": cfg.cql_alpha}
    else:
        learner = {}
    cls = learner_class(arm.algo).config_class
    learner.update({k: v for k, v in cfg.learner_overrides.items() if k in cls.field_names()})
    learner = cls(**typed(cls, learner, f"{arm_name} learner")).validate().to_dict()
    init = {"from": str(cfg.pretrained), "mae": str(cfg.mae), None: None}[arm.init]
    return OnlineRun(
        out=str(cfg.out / arm_name / f"seed_{seed}"), arm=arm_name, algo=arm.algo,
        init_from=init, freeze_encoder=arm.freeze, suite=cfg.suite, game=cfg.game,
        options=cfg.options.record(), seed=seed, steps=steps, num_envs=cfg.num_envs,
        eval_every=eval_every, eval_episodes=cfg.eval_episodes,
        checkpoint_every=cfg.checkpoint_every or eval_every, device=cfg.device,
        schedule=asdict(default_schedule(steps, cfg.schedule)), learner=learner,
        init_parts=arm.parts)


def run_online_finetune(cfg: OnlineFinetune) -> dict:
    """Every arm × seed, one after another (resuming or skipping), then the report."""
    if cfg.steps <= 0 or (cfg.dqn_steps is not None and cfg.dqn_steps <= 0):
        raise UserError("--steps and --dqn-steps must be positive")
    for name in ("num_envs", "eval_episodes"):
        if getattr(cfg, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive")
    if (cfg.eval_every is not None and cfg.eval_every <= 0) or \
            (cfg.checkpoint_every is not None and cfg.checkpoint_every <= 0):
        raise UserError("--eval-every and --checkpoint-every must be positive")
    cfg.options.validate()
    typed(learner_class("scaled-ql").config_class, cfg.learner_overrides, "learner options")
    pretrained = read_run(cfg.pretrained, "--from", "scaled-ql")
    check_mae(cfg.arms, ONLINE_ARMS, cfg.mae)
    if cfg.mae is not None:
        read_run(cfg.mae, "--mae", "mae")
    in_pretraining = check_variant(cfg, pretrained)
    configs = [run_config(cfg, arm, seed, pretrained) for arm in cfg.arms for seed in cfg.seeds]
    pick_device(cfg.device)
    spec = {"kind": "online", "from": str(cfg.pretrained), "mae": str(cfg.mae) if cfg.mae else None,
            "suite": cfg.suite, "games": [cfg.game], "variant": cfg.options.record(),
            "pretrained_games": list(pretrained["games"]), "in_pretraining": in_pretraining,
            "pretrained_env_options": pretrained.get("env_options") or {},
            "arms": list(cfg.arms), "seeds": list(cfg.seeds), "steps": cfg.steps,
            "dqn_steps": cfg.dqn_steps or cfg.steps, "x_label": "environment steps"}
    summary = []
    with exclusive_lock(cfg.out, "fine-tuning experiment"):
        write_spec(cfg.out, spec)
        for i, rc in enumerate(configs, 1):
            print(f"[finetune] {i}/{len(configs)} {rc.arm}/seed_{rc.seed}: "
                  f"{ONLINE_ARMS[rc.arm].label}, {rc.steps:,} env steps", file=sys.stderr)
            result = run_online_job(rc, bool(cfg.schedule), cfg.progress)
            summary.append(result)
            if result.get("interrupted"):
                print(f"[finetune] interrupted at env step {result['steps']}; run the same "
                      "command again to continue", file=sys.stderr)
                return {"interrupted": True, "runs": summary}
    from scaledql.finetune.report import write_report

    return {"interrupted": False, "runs": summary, "report": str(write_report(cfg.out))}
