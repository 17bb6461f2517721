"""Online fine-tuning to a game variant: ε-greedy interaction, a replay, the Scaled QL update.

Variants: Atari games in another ALE mode and/or difficulty (validated against the ROM);
MinAtar has neither, so its variant is another sticky-action probability (``--sticky``, e.g.
0.3 against the data's 0.1: the agent's chosen action is ignored more often, a change of the
game's dynamics). A game the run was pretrained on in exactly the same setting is refused (not
a variant); a game it never saw is accepted and reported as such.

Per arm (``common.ONLINE_ARMS``) × seed, ``OUT/<arm>/seed_<s>/`` holds one run of the shared
online loop (``training.online.run_online``) for ``steps`` environment steps (agent steps;
4 frames each on Atari). Scaled QL arms build the pretrained run's learner config with
``n_step = 1`` (the replay holds 1-step transitions) and the CQL weight ``cql_alpha``, default
0: the Scaled QL update (C51, feature normalization, same network and optimizer) without the
conservative term. Online, CQL pushes up the replay's actions, which are the agent's own: in
our MinAtar runs with the pretrained run's α = 0.1 every Scaled QL arm locked into one action
within 3,000 steps (docs/finetune.md); ``--cql-alpha 0.1`` continues the offline objective
as is. Transferred arms load the encoder; the projection and head start fresh. The ``dqn`` arm is the online double DQN that ``collect`` runs (its own config), the
paper's single-game DQN baseline, for ``dqn_steps`` (default ``steps``).

Logged to ``metrics.jsonl``/``.csv``: ``kind=episode`` rows (env step at the episode's end,
its return under ε-greedy) and ``kind=eval`` rows (env step, mean return and normalized score
of ``eval_episodes`` episodes under the standard protocol, ε = 0.001), with full reports in
``eval/step_N.json``; evaluations at step 0, every ``eval_every`` steps and at the end.

Resume: every ``checkpoint_every`` steps (and on Ctrl-C/SIGTERM) the learner, the loop's
counters and ε generator, the global RNGs and the replay (``replay-<step>.npz``, named by the
checkpoint, which is written after it) are saved atomically. Re-running the command continues
a killed run from its last checkpoint and skips finished ones. The environments restart on
resume — emulator state cannot be saved — so a resumed run is not bit-identical to an
uninterrupted one; it continues from the same learner, replay and step, and ends at ``steps``.
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.agents.base import Learner, Problem
from scaledql.agents.registry import learner_class
from scaledql.checkpoint import FILENAME, learner_payload, load_checkpoint, save_checkpoint
from scaledql.data.replay import RingReplay
from scaledql.device import pick_device
from scaledql.errors import UserError
from scaledql.evaluate import EvalConfig, evaluate, write_json
from scaledql.finetune.common import ONLINE_ARMS, WallClock, check_mae, read_run, write_spec
from scaledql.io import atomic_write_json, exclusive_lock
from scaledql.suites import EnvOptions, get_suite
from scaledql.training.metrics import MetricsLog
from scaledql.training.online import OnlineResult, OnlineSchedule, OnlineState, run_online
from scaledql.training.rng import rng_state, seed_everything, set_rng_state
from scaledql.typed import typed

# Run options a re-run may change (the rest must match the saved run).
CHANGEABLE = ("out", "steps", "eval_every", "eval_episodes", "checkpoint_every", "device")


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


@dataclass
class OnlineRun:
    """One arm × seed (``RUN/config.json``)."""

    out: str
    arm: str
    algo: str
    init_from: str | None
    freeze_encoder: bool
    suite: str
    game: str
    options: dict[str, Any]
    seed: int
    steps: int
    num_envs: int
    eval_every: int
    eval_episodes: int
    checkpoint_every: int
    device: str
    schedule: dict[str, Any]
    learner: dict[str, Any]


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
                bool(o.get("full_action_space")))

    if key(asdict(cfg.options)) == key(pretrained.get("env_options") or {}):
        hint = "--mode/--difficulty" if cfg.suite == "atari" else "--sticky (e.g. 0.3)"
        raise UserError(f"{cfg.game} with these options is the game {cfg.pretrained} was "
                        f"pretrained on, not a variant: choose {hint}")
    return True


def run_config(cfg: OnlineFinetune, arm_name: str, seed: int, pretrained: dict) -> OnlineRun:
    arm = ONLINE_ARMS[arm_name]
    steps = cfg.dqn_steps if arm.algo == "dqn" and cfg.dqn_steps else cfg.steps
    eval_every = cfg.eval_every or max(1, cfg.steps // 5)
    if arm.algo == "scaled-ql":
        learner = {**pretrained["learner_config"], "n_step": 1, "cql_alpha": cfg.cql_alpha}
    else:
        learner = {}
    cls = learner_class(arm.algo).config_class
    learner.update({k: v for k, v in cfg.learner_overrides.items() if k in cls.field_names()})
    learner = cls(**typed(cls, learner, f"{arm_name} learner")).validate().to_dict()
    init = {"from": str(cfg.pretrained), "mae": str(cfg.mae), None: None}[arm.init]
    return OnlineRun(
        out=str(cfg.out / arm_name / f"seed_{seed}"), arm=arm_name, algo=arm.algo,
        init_from=init, freeze_encoder=arm.freeze, suite=cfg.suite, game=cfg.game,
        options=asdict(cfg.options), seed=seed, steps=steps, num_envs=cfg.num_envs,
        eval_every=eval_every, eval_episodes=cfg.eval_episodes,
        checkpoint_every=cfg.checkpoint_every or eval_every, device=cfg.device,
        schedule=asdict(default_schedule(steps, cfg.schedule)), learner=learner)


def _build_learner(rc: OnlineRun, spec) -> Learner:
    cls = learner_class(rc.algo)
    problem = Problem.of([spec], where=rc.game)
    return cls(cls.config_class(**rc.learner), problem, pick_device(rc.device))


def _restore(saved: dict, learner: Learner, spec, run: Path) -> OnlineState:
    o = saved["online"]
    result = OnlineResult(steps=int(o["steps"]), episode_returns=list(o["episode_returns"]),
                          episode_end_steps=list(o["episode_end_steps"]), updates=int(o["updates"]))
    rng = np.random.default_rng()
    rng.bit_generator.state = o["rng"]
    replay = None
    if o["replay"]:
        batch = learner.batch_spec()
        replay = RingReplay(int(o["replay_capacity"]), spec.obs_shape, spec.frame_shape[0],
                            batch.reward_clip, batch.gamma)
        replay.load(run / o["replay"])
    return OnlineState(result, rng, replay, float(o["updates_due"]))


def _saved_run(run: Path, rc: OnlineRun, schedule_given: bool) -> dict | None:
    """The run's checkpoint, if any, after checking that its config fits ``rc`` (which adopts
    the saved schedule when no schedule option was given: defaults scale with ``steps``)."""
    if not (run / FILENAME).exists():
        return None
    saved = load_checkpoint(run, "cpu")
    try:
        old = OnlineRun(**saved["run_config"])
        saved["online"]["steps"]
    except (KeyError, TypeError):
        raise UserError(f"{run} holds a checkpoint that is not an online fine-tuning run") from None
    if not schedule_given:
        rc.schedule = old.schedule
    diff = [k for k in asdict(rc) if k not in CHANGEABLE and getattr(rc, k) != getattr(old, k)]
    if diff:
        raise UserError(f"{run}: options differ from the saved run ({', '.join(diff)}); "
                        "choose another --out")
    if rc.steps < saved["online"]["steps"]:
        raise UserError(f"{run} is at env step {saved['online']['steps']}; --steps {rc.steps} "
                        "would go back")
    return saved


def _eval_steps(run: Path) -> set[int]:
    file = run / "metrics.jsonl"
    rows = [json.loads(x) for x in file.read_text().splitlines() if x] if file.exists() else []
    return {int(r["step"]) for r in rows if r.get("kind") == "eval"}


def run_arm(rc: OnlineRun, schedule_given: bool = False, progress: bool = True) -> dict:
    """Run, resume or skip one arm × seed; returns a summary."""
    run = Path(rc.out)
    saved = _saved_run(run, rc, schedule_given)
    start = int(saved["online"]["steps"]) if saved else 0
    if saved and start >= rc.steps and rc.steps in _eval_steps(run):
        return {"run": str(run), "skipped": True, "steps": start}
    suite = get_suite(rc.suite)
    options = EnvOptions(**rc.options)
    spec = suite.spec(rc.game, options)
    schedule = OnlineSchedule(**rc.schedule)
    seed_everything(rc.seed)
    learner = _build_learner(rc, spec)
    state = None
    if saved:
        learner.load_state_dict(saved["learner"])
        state = _restore(saved, learner, spec, run)
        set_rng_state(saved["rng"])
        print(f"[finetune] {rc.arm} seed {rc.seed}: resumed at env step {start} (fresh "
              "episodes: environments cannot be restored)", file=sys.stderr)
    elif rc.init_from:
        from scaledql.transfer import transfer_torso

        transfer_torso(learner, Path(rc.init_from), "encoder", rc.freeze_encoder)
    if rc.freeze_encoder:
        learner.freeze_encoder()  # requires_grad is not part of a state dict: set it each time
    atomic_write_json(run / "config.json", asdict(rc))
    log = MetricsLog(run, True, start)
    log.write_config(asdict(rc), learner.param_counts())
    clock = WallClock(run)
    eval_cfg = EvalConfig(episodes=rc.eval_episodes, seed=rc.seed, num_envs=min(16, rc.eval_episodes),
                          options=options, progress=progress)

    def evaluate_at(step: int, updates: int) -> None:
        report = evaluate(rc.suite, [rc.game], learner.policy(), eval_cfg,
                          desc=f"evaluate step {step}").to_dict()
        write_json(report, run / "eval" / f"step_{step:08d}.json")
        g = report["games"][rc.game]
        log.write({"step": step, "return": g["mean"], "normalized": g["normalized"],
                   "updates": updates, "epsilon": schedule.epsilon(step)}, kind="eval")

    def save(st: OnlineState) -> None:
        r, name = st.result, None
        if st.replay is not None:
            name = f"replay-{r.steps:09d}.npz"
            st.replay.save(run / name)
        online = {"steps": r.steps, "updates": r.updates, "updates_due": st.updates_due,
                  "episode_returns": r.episode_returns, "episode_end_steps": r.episode_end_steps,
                  "rng": st.rng.bit_generator.state, "replay": name,
                  "replay_capacity": st.replay.capacity if st.replay is not None else None}
        save_checkpoint({**learner_payload(learner, rc.suite, rc.options), "run_config": asdict(rc),
                         "online": online, "rng": rng_state()}, run / FILENAME)
        for old in run.glob("replay-*.npz"):  # only after the checkpoint names the new one
            if old.name != name:
                old.unlink(missing_ok=True)

    flags = {"stop": False, "logged": len(state.result.episode_returns) if state else 0,
             "last": start, "state": state, "finished": False}

    def on_step(st: OnlineState) -> bool:
        r, prev = st.result, flags["last"]
        for ret, end in zip(r.episode_returns[flags["logged"]:], r.episode_end_steps[flags["logged"]:],
                            strict=True):
            log.write({"step": end, "return": ret}, kind="episode")
        flags.update(logged=len(r.episode_returns), last=r.steps, state=st)
        done = r.steps >= rc.steps
        if done or r.steps // rc.eval_every > prev // rc.eval_every:
            evaluate_at(r.steps, r.updates)
        flags["finished"] = done
        if done or flags["stop"] or r.steps // rc.checkpoint_every > prev // rc.checkpoint_every:
            save(st)
        return flags["stop"]

    def on_signal(signum, frame):  # acted on after the current vector step: a clean checkpoint
        flags["stop"] = True

    handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if saved is None:
            evaluate_at(0, 0)
        if not flags["stop"]:
            result = run_online(learner, rc.suite, rc.game, options, steps=rc.steps,
                                schedule=schedule, seed=rc.seed, num_envs=rc.num_envs,
                                progress=progress, desc=f"{rc.arm} seed {rc.seed}", state=state,
                                on_step=on_step)
            if result.steps >= rc.steps and not flags["finished"]:
                on_step(flags["state"])  # at the end on entry, final evaluation missing
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        log.close()
        wall = clock.stop()
    st = flags["state"]
    steps = st.result.steps if st is not None else start
    return {"run": str(run), "steps": steps, "interrupted": steps < rc.steps,
            "episodes": len(st.result.episode_returns) if st else 0, "wall_seconds": wall}


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
    typed(learner_class("scaled-ql").config_class, cfg.learner_overrides, "learner options")
    pretrained = read_run(cfg.pretrained, "--from", "scaled-ql")
    check_mae(cfg.arms, ONLINE_ARMS, cfg.mae)
    if cfg.mae is not None:
        read_run(cfg.mae, "--mae", "mae")
    in_pretraining = check_variant(cfg, pretrained)
    configs = [run_config(cfg, arm, seed, pretrained) for arm in cfg.arms for seed in cfg.seeds]
    pick_device(cfg.device)
    spec = {"kind": "online", "from": str(cfg.pretrained), "mae": str(cfg.mae) if cfg.mae else None,
            "suite": cfg.suite, "games": [cfg.game], "variant": asdict(cfg.options),
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
            result = run_arm(rc, bool(cfg.schedule), cfg.progress)
            summary.append(result)
            if result.get("interrupted"):
                print(f"[finetune] interrupted at env step {result['steps']}; run the same "
                      "command again to continue", file=sys.stderr)
                return {"interrupted": True, "runs": summary}
    from scaledql.finetune.report import write_report

    return {"interrupted": False, "runs": summary, "report": str(write_report(cfg.out))}
