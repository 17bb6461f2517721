"""The one online loop: a learner acts ε-greedily in vector environments, learns from a replay.

Used by ``collect`` (an online DQN whose every transition is logged, the DQN-Replay way, or a
fixed policy with learning off) and by online fine-tuning. Per vector step: ε-greedy actions
from the learner's policy, the environments step, transitions go into the in-memory replay (and
to an optional ``Recorder``), and every ``update_period`` transitions after ``learning_starts``
the learner takes one gradient step on a replay batch. Returns of finished episodes are kept
with the environment step at which they ended (learning curves).

Online fine-tuning also needs to evaluate, log and checkpoint while it runs, and to continue
after a kill: ``on_step`` is called after every vector step with the loop's ``OnlineState``
(counters, episode returns, the ε generator, the replay), and a saved state passed back in
continues from its step. Only the environments cannot be saved (emulators keep no restorable
state across processes): a resumed run starts fresh episodes, so it is not bit-exact.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from scaledql.agents.base import Learner
from scaledql.data.sampling.online_replay import RingReplay
from scaledql.errors import UserError
from scaledql.policies import Policy, epsilon_greedy
from scaledql.progress import ProgressBar
from scaledql.suites import EnvOptions, get_suite
from scaledql.training.schedule import OnlineSchedule


class Recorder(Protocol):
    """Receives every transition (collection writes them to the store)."""

    def begin(self, env: int, obs: np.ndarray) -> None:
        """A new episode in env ``env`` starts at ``obs``."""

    def record(self, env: int, action: int, reward: float, next_obs: np.ndarray) -> None: ...

    def end(self, env: int, terminated: bool, truncated: bool) -> float:
        """The episode ended; returns its raw return."""


@dataclass
class OnlineResult:
    steps: int
    episode_returns: list[float] = field(default_factory=list)
    episode_end_steps: list[int] = field(default_factory=list)  # env step at each episode's end
    updates: int = 0


@dataclass
class OnlineState:
    """Everything the loop carries between vector steps except the environments.

    ``rng`` draws the ε-greedy choices; ``updates_due`` is the fractional gradient step owed
    (``update_period`` need not divide the number of environments).
    """

    result: OnlineResult
    rng: np.random.Generator
    replay: RingReplay | None
    updates_due: float = 0.0


def new_state(learner: Learner, game: str, obs_shape: tuple[int, int, int], frame_channels: int,
              *, steps: int, schedule: OnlineSchedule, seed: int, learn: bool) -> OnlineState:
    """The state a fresh run starts from (seeds: ε draws ``default_rng(seed)``, replay ``seed``)."""
    replay = None
    if learn:
        batch = learner.batch_spec()
        if batch.kind != "transitions" or batch.n_step != 1:
            raise UserError(f"online learning needs 1-step transitions; {learner.name} asks for "
                            f"{batch.kind} (n_step {batch.n_step})")
        replay = RingReplay(min(schedule.replay_capacity, steps), obs_shape, frame_channels,
                            batch.reward_clip, batch.gamma, seed,
                            game_id=list(learner.problem.games).index(game))
    return OnlineState(OnlineResult(steps=0), np.random.default_rng(seed), replay)


def resume_seed(seed: int, step: int) -> int:
    """Environment seed of a run resumed at ``step``: new episodes, not a replay of the first."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def _final_obs(info: dict, i: int, fallback: np.ndarray) -> np.ndarray:
    """The observation that ended env i's episode (SAME_STEP autoreset puts it in ``info``)."""
    final = info.get("final_obs")
    if final is None or final[i] is None:
        return fallback
    return np.asarray(final[i])


def run_online(learner: Learner | None, suite_name: str, game: str, options: EnvOptions, *,
               steps: int, schedule: OnlineSchedule, seed: int, num_envs: int = 4,
               learn: bool = True, recorder: Recorder | None = None, progress: bool = True,
               desc: str | None = None, state: OnlineState | None = None,
               on_step: Callable[[OnlineState], bool] | None = None,
               policy: Policy | None = None) -> OnlineResult:
    """Interact until ``steps`` environment transitions in ``game`` (one of the learner's games).

    With ``learn`` the learner updates from a replay of ``schedule.replay_capacity``
    transitions (its batch spec gives batch size, γ and reward clipping); otherwise it only
    acts. Seeds: environments ``seed``, ε draws ``default_rng(seed)``, replay ``seed``.
    ``state``: continue a saved run from its step (environments seeded ``resume_seed``);
    ``on_step(state)`` after every vector step, once its updates are done; True stops the loop.
    ``policy``: act with it instead of the learner's (an action log replayed, ``learner=None``).
    """
    if learner is None and (learn or policy is None):
        raise ValueError("run_online without a learner needs learn=False and a policy")
    schedule.validate()
    suite = get_suite(suite_name)
    spec = suite.spec(game, options)
    policy = policy if policy is not None else learner.policy()
    policy.reset(game, num_envs)
    num_actions = spec.num_actions
    batch = learner.batch_spec() if learn else None
    if state is None:
        state = new_state(learner, game, spec.obs_shape, spec.frame_shape[0], steps=steps,
                          schedule=schedule, seed=seed, learn=learn)
    result, rng, replay = state.result, state.rng, state.replay
    env_seed = seed if result.steps == 0 else resume_seed(seed, result.steps)
    recent: deque[float] = deque(result.episode_returns[-20:], maxlen=20)
    running = np.zeros(num_envs)
    envs = suite.make_vector_env(game, num_envs, options)
    try:
        with ProgressBar(steps, desc or f"online {game}", "step", initial=result.steps,
                         bar=progress) as bar:
            obs, _ = envs.reset(seed=env_seed)
            if recorder is not None:
                for i in range(num_envs):
                    recorder.begin(i, obs[i])
            while result.steps < steps:
                n = min(num_envs, steps - result.steps)  # the last step may use fewer envs
                eps = schedule.epsilon(result.steps)
                actions = epsilon_greedy(policy, obs, eps, num_actions, rng)
                next_obs, rewards, terminated, truncated, info = envs.step(actions)
                done = np.logical_or(terminated, truncated)
                policy.observe(actions, rewards, done)
                true_next = next_obs.copy()
                for i in np.flatnonzero(done):
                    true_next[i] = _final_obs(info, i, next_obs[i])
                if recorder is not None:
                    for i in range(n):
                        recorder.record(i, int(actions[i]), float(rewards[i]), true_next[i])
                if replay is not None:
                    replay.add(obs[:n], actions[:n], rewards[:n],
                               terminated[:n].astype(np.float32), true_next[:n])
                running += rewards
                for i in range(n):
                    if done[i]:
                        if recorder is not None:
                            recorder.end(i, bool(terminated[i]),
                                         bool(truncated[i] and not terminated[i]))
                            recorder.begin(i, next_obs[i])
                        result.episode_returns.append(float(running[i]))
                        result.episode_end_steps.append(result.steps + i + 1)
                        recent.append(running[i])
                        running[i] = 0.0
                result.steps += n
                if replay is not None and result.steps >= schedule.learning_starts:
                    state.updates_due += n / schedule.update_period
                    while state.updates_due >= 1:
                        learner.update(replay.sample(batch.batch_size))
                        result.updates += 1
                        state.updates_due -= 1
                obs = next_obs
                bar.update(n)
                if recent:
                    bar.set_postfix(ret=f"{np.mean(recent):.1f}", eps=f"{eps:.2f}", refresh=False)
                if on_step is not None and on_step(state):
                    break
    finally:
        envs.close()
    return result
