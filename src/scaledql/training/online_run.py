"""One online run, start to end: a learner acts and learns in a game (``training.online``),
evaluated, logged and checkpointed as it goes, and continued after a kill.

Online fine-tuning runs its arms × seeds through ``run_online_job``; it knows learners only
through the interface (``agents.base.Learner``) and the registry.

Logged to the run folder's metrics log (``scaledql.run_folder``): ``kind=episode`` rows (env
step at the episode's end, its return under ε-greedy) and ``kind=eval`` rows (env step, mean
return and normalized score of ``eval_episodes`` episodes under the standard protocol,
ε = 0.001), with full evaluation reports beside them; evaluations at step 0, every
``eval_every`` steps and at the end.

Resume: every ``checkpoint_every`` steps (and on Ctrl-C/SIGTERM) the learner, the loop's
counters and ε generator, the global RNGs and the replay (``run_folder.replay_name``, named by
the checkpoint, which is written after it) are saved atomically. Running it again continues a
killed run from its last checkpoint and skips a finished one. The environments restart on
resume — emulator state cannot be saved — so a resumed run is not bit-identical to an
uninterrupted one; it continues from the same learner, replay and step, and ends at ``steps``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.agents.base import Learner, Problem
from scaledql.agents.registry import learner_class
from scaledql.checkpoint import learner_payload, load_checkpoint, save_checkpoint
from scaledql.data.replay import RingReplay
from scaledql.device import machine_record, pick_device
from scaledql.errors import UserError
from scaledql.evaluate import EvalConfig, evaluate
from scaledql.run_folder import (
    REPLAY_GLOB,
    checkpoint_file,
    finished_at,
    record_machine,
    replay_name,
    write_config,
    write_evaluation,
)
from scaledql.suites import EnvOptions, GameSpec, get_suite
from scaledql.training.lifecycle import StopSignals, WallClock, crossed, resume_conflicts
from scaledql.training.metrics import MetricsLog
from scaledql.training.online import OnlineResult, OnlineSchedule, OnlineState, run_online
from scaledql.training.rng import rng_state, seed_everything, set_rng_state

# Run options a re-run may change (the rest must match the saved run).
CHANGEABLE = ("out", "steps", "eval_every", "eval_episodes", "checkpoint_every", "device")


@dataclass
class OnlineRun:
    """One online run (its run folder's config). ``arm`` labels it (fine-tuning: its arm);
    ``learner`` is ``algo``'s config; ``init_from``: a run whose ``init_parts`` it starts from."""

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
    init_parts: str = "encoder"  # what init_from gives: encoder, torso or network (transfer.py)


def _build_learner(rc: OnlineRun, spec: GameSpec) -> Learner:
    cls = learner_class(rc.algo)
    problem = Problem.of([spec], where=rc.game)
    return cls(cls.config_class(**rc.learner), problem, pick_device(rc.device))


def _restore(saved: dict, learner: Learner, spec: GameSpec, run: Path) -> OnlineState:
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
    if not checkpoint_file(run).exists():
        return None
    saved = load_checkpoint(run, "cpu")
    try:
        old = OnlineRun(**saved["run_config"])
        saved["online"]["steps"]
    except (KeyError, TypeError):
        raise UserError(f"{run} holds a checkpoint that is not an online fine-tuning run") from None
    if not schedule_given:
        rc.schedule = old.schedule
    diff = resume_conflicts(asdict(old), asdict(rc), CHANGEABLE)
    if diff:
        raise UserError(f"{run}: options differ from the saved run ({', '.join(diff)}); "
                        "choose another --out")
    if rc.steps < saved["online"]["steps"]:
        raise UserError(f"{run} is at env step {saved['online']['steps']}; --steps {rc.steps} "
                        "would go back")
    return saved


def run_online_job(rc: OnlineRun, schedule_given: bool = False, progress: bool = True) -> dict:
    """Run, resume or skip one online run; returns a summary. ``schedule_given``: the caller set
    schedule options (else a resumed run keeps its saved schedule)."""
    run = Path(rc.out)
    saved = _saved_run(run, rc, schedule_given)
    start = int(saved["online"]["steps"]) if saved else 0
    if saved and start >= rc.steps and finished_at(run, rc.steps):
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
        print(f"[online] {rc.arm} seed {rc.seed}: resumed at env step {start} (fresh "
              "episodes: environments cannot be restored)", file=sys.stderr)
    elif rc.init_from:
        from scaledql.transfer import transfer_torso

        transfer_torso(learner, Path(rc.init_from), rc.init_parts, rc.freeze_encoder)
    if rc.freeze_encoder:
        learner.freeze_encoder()  # requires_grad is not part of a state dict: set it each time
    write_config(run, asdict(rc))
    record_machine(run, machine_record(learner.device), precision=learner.precision,
                   from_step=start)
    log = MetricsLog(run, True, start)
    log.write_config(asdict(rc), learner.param_counts())
    clock = WallClock(run)
    eval_cfg = EvalConfig(episodes=rc.eval_episodes, seed=rc.seed, num_envs=min(16, rc.eval_episodes),
                          options=options, progress=progress)

    def evaluate_at(step: int, updates: int) -> None:
        report = evaluate(rc.suite, [rc.game], learner.policy(), eval_cfg,
                          desc=f"evaluate step {step}").to_dict()
        write_evaluation(run, step, report)
        g = report["games"][rc.game]
        log.write({"step": step, "return": g["mean"], "normalized": g["normalized"],
                   "updates": updates, "epsilon": schedule.epsilon(step)}, kind="eval")

    def save(st: OnlineState) -> None:
        r, name = st.result, None
        if st.replay is not None:
            name = replay_name(r.steps)
            st.replay.save(run / name)
        online = {"steps": r.steps, "updates": r.updates, "updates_due": st.updates_due,
                  "episode_returns": r.episode_returns, "episode_end_steps": r.episode_end_steps,
                  "rng": st.rng.bit_generator.state, "replay": name,
                  "replay_capacity": st.replay.capacity if st.replay is not None else None}
        save_checkpoint({**learner_payload(learner, rc.suite, rc.options), "run_config": asdict(rc),
                         "online": online, "rng": rng_state()}, checkpoint_file(run))
        for old in run.glob(REPLAY_GLOB):  # only after the checkpoint names the new one
            if old.name != name:
                old.unlink(missing_ok=True)

    flags = {"logged": len(state.result.episode_returns) if state else 0,
             "last": start, "state": state, "finished": False}
    # acted on after the current vector step: a clean checkpoint
    signals = StopSignals(interrupt_when_idle=False)

    def on_step(st: OnlineState) -> bool:
        r, prev = st.result, flags["last"]
        for ret, end in zip(r.episode_returns[flags["logged"]:], r.episode_end_steps[flags["logged"]:],
                            strict=True):
            log.write({"step": end, "return": ret}, kind="episode")
        flags.update(logged=len(r.episode_returns), last=r.steps, state=st)
        done = r.steps >= rc.steps
        if done or crossed(prev, r.steps, rc.eval_every):
            evaluate_at(r.steps, r.updates)
        flags["finished"] = done
        if done or signals.requested or crossed(prev, r.steps, rc.checkpoint_every):
            save(st)
        return signals.requested

    try:
        with signals:
            if saved is None:
                evaluate_at(0, 0)
            if not signals.requested:
                result = run_online(learner, rc.suite, rc.game, options, steps=rc.steps,
                                    schedule=schedule, seed=rc.seed, num_envs=rc.num_envs,
                                    progress=progress, desc=f"{rc.arm} seed {rc.seed}",
                                    state=state, on_step=on_step)
                if result.steps >= rc.steps and not flags["finished"]:
                    on_step(flags["state"])  # at the end on entry, final evaluation missing
    finally:
        log.close()
        wall = clock.stop()
    st = flags["state"]
    steps = st.result.steps if st is not None else start
    return {"run": str(run), "steps": steps, "interrupted": steps < rc.steps,
            "episodes": len(st.result.episode_returns) if st else 0, "wall_seconds": wall}
