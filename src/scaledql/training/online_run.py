"""One online run, start to end: a learner acts and learns in a game (``training.online``),
evaluated, logged and checkpointed as it goes, and continued after a kill.

Online fine-tuning runs its arms × seeds through ``run_online_job``; it knows learners only
through the interface (``agents.base.Learner``) and the registry.

Logged to the run folder's metrics log (``scaledql.run_folder``): ``kind=episode`` rows (env
step at the episode's end, its return under ε-greedy) and ``kind=eval`` rows (env step, mean
return and normalized score of ``eval_episodes`` episodes under the standard protocol,
ε = 0.001), with full evaluation reports beside them; evaluations at step 0, every
``eval_every`` steps and at the end.

Its lifecycle is a ``training.session.RunSession`` (``OnlineSession``). Resume: every
``checkpoint_every`` steps (and on Ctrl-C/SIGTERM) the learner, the loop's
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
from scaledql.checkpoint import run_payload
from scaledql.data.sampling.online_replay import RingReplay
from scaledql.device import pick_device
from scaledql.errors import UserError
from scaledql.evaluate import EvalConfig, evaluate
from scaledql.run_folder import REPLAY_GLOB, finished_at, replay_name, write_evaluation
from scaledql.suites import EnvOptions, GameSpec, get_suite
from scaledql.training.lifecycle import StopSignals, WallClock, crossed, resume_conflicts
from scaledql.training.online_loop import OnlineResult, OnlineSchedule, OnlineState, run_online
from scaledql.training.rng import rng_state, seed_everything, set_rng_state
from scaledql.training.session import RunSession

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


def run_online_job(rc: OnlineRun, schedule_given: bool = False, progress: bool = True) -> dict:
    """Run, resume or skip one online run; returns a summary. ``schedule_given``: the caller set
    schedule options (else a resumed run keeps its saved schedule)."""
    session = OnlineSession(rc, schedule_given, progress)
    saved = session.resume_or_start(None, session.check_resume)
    start = int(saved["online"]["steps"]) if saved else 0
    # A finished run restored from a study's archive has no checkpoint (archives keep none for
    # finished runs): its logged final evaluation alone says it finished.
    if (start >= rc.steps or saved is None) and finished_at(session.run, rc.steps):
        return {"run": str(session.run), "skipped": True, "steps": max(start, rc.steps)}
    session.build(saved)
    session.start(asdict(rc), session.learner, session.learner.device, start)
    clock = WallClock(session.run)
    try:
        with session.signals:
            if saved is None:
                session.evaluate_at(0, 0)
            if not session.signals.requested:
                session.run_steps()
    finally:
        session.close()
        wall = clock.stop()
    st = session.state
    steps = st.result.steps if st is not None else start
    return {"run": str(session.run), "steps": steps, "interrupted": steps < rc.steps,
            "episodes": len(st.result.episode_returns) if st else 0, "wall_seconds": wall}


class OnlineSession(RunSession):
    """One online run's phases: ``check_resume`` (the saved run against ``rc``), ``build``
    (the learner and the loop's state, restored or fresh), ``run_steps`` (the online loop,
    whose every vector step is a ``step``: episodes logged, ``evaluate`` and ``checkpoint`` as
    due). It takes no lock: its folder is one arm × seed of a fine-tuning experiment's."""

    def __init__(self, rc: OnlineRun, schedule_given: bool, progress: bool) -> None:
        super().__init__(Path(rc.out))
        self.rc, self.schedule_given, self.progress = rc, schedule_given, progress
        self.state: OnlineState | None = None
        self.finished = False
        # acted on after the current vector step: a clean checkpoint
        self.signals = StopSignals(interrupt_when_idle=False)

    # -- resume or start -----------------------------------------------------------------------
    def check_resume(self, saved: dict) -> None:
        """The saved run must be this one (``rc`` adopts the saved schedule when no schedule
        option was given: defaults scale with ``steps``)."""
        rc, run = self.rc, self.run
        try:
            old = OnlineRun(**saved["run_config"])
            saved["online"]["steps"]
        except (KeyError, TypeError):
            raise UserError(f"{run} holds a checkpoint that is not an online fine-tuning "
                            "run") from None
        if not self.schedule_given:
            rc.schedule = old.schedule
        diff = resume_conflicts(asdict(old), asdict(rc), CHANGEABLE)
        if diff:
            raise UserError(f"{run}: options differ from the saved run ({', '.join(diff)}); "
                            "choose another --out")
        if rc.steps < saved["online"]["steps"]:
            raise UserError(f"{run} is at env step {saved['online']['steps']}; --steps "
                            f"{rc.steps} would go back")

    def build(self, saved: dict | None) -> None:
        rc = self.rc
        self.options = EnvOptions(**rc.options)
        self.spec = get_suite(rc.suite).spec(rc.game, self.options)
        self.schedule = OnlineSchedule(**rc.schedule)
        seed_everything(rc.seed)
        self.learner = learner = _build_learner(rc, self.spec)
        if saved:
            learner.load_state_dict(saved["learner"])
            self.state = self._restore(saved)
            set_rng_state(saved["rng"])
            print(f"[online] {rc.arm} seed {rc.seed}: resumed at env step "
                  f"{saved['online']['steps']} (fresh episodes: environments cannot be "
                  "restored)", file=sys.stderr)
        elif rc.init_from:
            from scaledql.transfer import transfer_torso

            transfer_torso(learner, Path(rc.init_from), rc.init_parts, rc.freeze_encoder)
        if rc.freeze_encoder:
            learner.freeze_encoder()  # requires_grad is not part of a state dict: set it each time
        self.logged = len(self.state.result.episode_returns) if self.state else 0
        self.last = int(saved["online"]["steps"]) if saved else 0
        self.eval_cfg = EvalConfig(episodes=rc.eval_episodes, seed=rc.seed,
                                   num_envs=min(16, rc.eval_episodes), options=self.options,
                                   progress=self.progress)

    def _restore(self, saved: dict) -> OnlineState:
        o = saved["online"]
        result = OnlineResult(steps=int(o["steps"]), episode_returns=list(o["episode_returns"]),
                              episode_end_steps=list(o["episode_end_steps"]),
                              updates=int(o["updates"]))
        rng = np.random.default_rng()
        rng.bit_generator.state = o["rng"]
        replay = None
        if o["replay"]:
            batch = self.learner.batch_spec()
            replay = RingReplay(int(o["replay_capacity"]), self.spec.obs_shape,
                                self.spec.frame_shape[0], batch.reward_clip, batch.gamma)
            replay.load(self.run / o["replay"])
        return OnlineState(result, rng, replay, float(o["updates_due"]))

    # -- step, log, evaluate, checkpoint -------------------------------------------------------
    def run_steps(self) -> None:
        rc = self.rc
        result = run_online(self.learner, rc.suite, rc.game, self.options, steps=rc.steps,
                            schedule=self.schedule, seed=rc.seed, num_envs=rc.num_envs,
                            progress=self.progress, desc=f"{rc.arm} seed {rc.seed}",
                            state=self.state, on_step=self.step)
        if result.steps >= rc.steps and not self.finished and self.state is not None:
            self.step(self.state)  # at the end on entry, final evaluation missing

    def step(self, st: OnlineState) -> bool:
        """After one vector step: the episodes that ended logged, then an evaluation and a
        checkpoint where due; True asks the loop to stop."""
        rc, r, prev = self.rc, st.result, self.last
        for ret, end in zip(r.episode_returns[self.logged:], r.episode_end_steps[self.logged:],
                            strict=True):
            self.log({"step": end, "return": ret}, kind="episode")
        self.logged, self.last, self.state = len(r.episode_returns), r.steps, st
        done = r.steps >= rc.steps
        if done or crossed(prev, r.steps, rc.eval_every):
            self.evaluate_at(r.steps, r.updates)
        self.finished = done
        if done or self.signals.requested or crossed(prev, r.steps, rc.checkpoint_every):
            self.checkpoint()
        return self.signals.requested

    def evaluate_at(self, step: int, updates: int) -> None:
        rc = self.rc
        report = evaluate(rc.suite, [rc.game], self.learner.policy(), self.eval_cfg,
                          desc=f"evaluate step {step}").to_dict()
        write_evaluation(self.run, step, report)
        g = report["games"][rc.game]
        self.log({"step": step, "return": g["mean"], "normalized": g["normalized"],
                  "updates": updates, "epsilon": self.schedule.epsilon(step)}, kind="eval")

    def checkpoint(self) -> None:
        """The learner, the loop's state and its replay (named by the checkpoint, written
        before it; older replays removed only after it)."""
        st, rc = self.state, self.rc
        assert st is not None
        r, name = st.result, None
        if st.replay is not None:
            name = replay_name(r.steps)
            st.replay.save(self.run / name)
        online = {"steps": r.steps, "updates": r.updates, "updates_due": st.updates_due,
                  "episode_returns": r.episode_returns, "episode_end_steps": r.episode_end_steps,
                  "rng": st.rng.bit_generator.state, "replay": name,
                  "replay_capacity": st.replay.capacity if st.replay is not None else None}
        self.write_checkpoint(run_payload(self.learner, rc.suite, rc.options,
                                          run_config=asdict(rc), online=online, rng=rng_state()))
        for old in self.run.glob(REPLAY_GLOB):  # only after the checkpoint names the new one
            if old.name != name:
                old.unlink(missing_ok=True)
