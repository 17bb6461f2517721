"""Evaluation in the real games: rollouts in vector envs, normalized scores, rliable aggregates.

Protocol (Dopamine / Scaled QL): ε-greedy with ε = 0.001, the suite's sticky actions and episode
cap, raw (unclipped) game score. Each game gets exactly ``episodes`` episodes, split into fixed
per-environment quotas so that short episodes are not over-represented (taking the first N
episodes to finish would bias towards short ones).

Aggregates follow Agarwal et al. (2021) through ``rliable`` (``stats``): IQM, median and mean
of normalized scores with 95% stratified-bootstrap confidence intervals over a score matrix
``[runs, games]``. A single evaluated agent contributes one row per *episode* (episodes are the
independent draws); ``reports`` scores several runs (seeds) with one row each.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from scaledql.atomic_files import atomic_write_text
from scaledql.errors import UserError
from scaledql.policies import Policy, epsilon_greedy
from scaledql.progress import ProgressBar
from scaledql.run_folder import write_evaluation
from scaledql.stats import aggregate
from scaledql.suites import EnvOptions, get_suite
from scaledql.suites.scores import has_reference, normalize


@dataclass
class EvalConfig:
    episodes: int = 10
    seed: int = 0
    epsilon: float = 0.001
    num_envs: int = 16
    options: EnvOptions = field(default_factory=EnvOptions)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.episodes <= 0:
            raise UserError(f"--episodes must be positive, got {self.episodes}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise UserError(f"--epsilon must be in [0, 1], got {self.epsilon}")
        if self.num_envs <= 0:
            raise UserError(f"--num-envs must be positive, got {self.num_envs}")
        if self.seed < 0:
            raise UserError(f"--seed must be >= 0, got {self.seed}")
        self.options.validate()


ONE_ACTION_SHARE = 0.95  # a policy playing one action this often gets a warning line


def play(suite_name: str, game: str, policy: Policy, cfg: EvalConfig,
         on_episode: Callable[[float], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Play ``cfg.episodes`` episodes of one game; returns (float64[episodes] raw returns,
    int64[num_actions] how often each action was played, ε-random ones included)."""
    suite = get_suite(suite_name)
    num_actions = suite.spec(game, cfg.options).num_actions
    num_envs = min(cfg.num_envs, cfg.episodes)
    quota = np.array([cfg.episodes // num_envs + (i < cfg.episodes % num_envs)
                      for i in range(num_envs)])
    envs = suite.make_vector_env(game, num_envs, cfg.options)
    rng = np.random.default_rng([cfg.seed, 1])
    policy.reset(game, num_envs)
    try:
        obs, _ = envs.reset(seed=cfg.seed)
        running = np.zeros(num_envs)
        finished: list[list[float]] = [[] for _ in range(num_envs)]
        counts = np.zeros(num_actions, dtype=np.int64)
        while any(len(f) < q for f, q in zip(finished, quota, strict=True)):
            actions = epsilon_greedy(policy, obs, cfg.epsilon, num_actions, rng)
            # Only environments still owed an episode count: the others play on unrecorded.
            owed = np.array([len(f) < q for f, q in zip(finished, quota, strict=True)])
            counts += np.bincount(np.asarray(actions)[owed], minlength=num_actions)
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            done = np.logical_or(terminated, truncated)
            policy.observe(actions, rewards, done)
            running += rewards
            for i in np.flatnonzero(done):
                if len(finished[i]) < quota[i]:
                    finished[i].append(float(running[i]))
                    if on_episode:
                        on_episode(float(running[i]))
                running[i] = 0.0
    finally:
        envs.close()
    return np.array([r for f in finished for r in f], dtype=np.float64), counts


@dataclass
class EvalReport:
    suite: str
    returns: dict[str, list[float]]
    seed: int
    epsilon: float
    actions: dict[str, list[int]] = field(default_factory=dict)  # game → count per action

    def normalized_matrix(self) -> np.ndarray:
        """float64[episodes, games] normalized returns (games with a reference score only)."""
        games = [g for g in self.returns if has_reference(self.suite, g)]
        if not games:
            return np.zeros((0, 0))
        return np.stack([normalize(self.suite, g, np.asarray(self.returns[g])) for g in games], 1)

    def per_game(self) -> dict[str, dict]:
        """game → returns, mean return and its normalized score (None without reference)."""
        games = {}
        for game, rets in self.returns.items():
            mean = float(np.mean(rets))
            norm = float(normalize(self.suite, game, mean)) if has_reference(self.suite, game) else None
            games[game] = {"returns": rets, "mean": mean, "normalized": norm}
            if game in self.actions:
                counts = np.asarray(self.actions[game])
                games[game]["actions"] = counts.tolist()
                games[game]["top_action_share"] = float(counts.max() / max(1, counts.sum()))
        return games

    def one_action_warnings(self) -> list[str]:
        """One line per game whose policy played one action ≥ 95% of its steps."""
        lines = []
        for game, counts in self.actions.items():
            counts = np.asarray(counts)
            share = counts.max() / max(1, counts.sum())
            if share >= ONE_ACTION_SHARE:
                lines.append(f"warning: {game}: the policy played action {int(counts.argmax())} "
                             f"in {share:.0%} of its steps (of {len(counts)} actions)")
        return lines

    def to_dict(self) -> dict:
        matrix = self.normalized_matrix()
        agg = aggregate(matrix, seed=self.seed) if matrix.size else {}
        return {"suite": self.suite, "seed": self.seed, "epsilon": self.epsilon,
                "games": self.per_game(), "aggregate": agg}


def evaluate(suite_name: str, games: list[str], policy: Policy, cfg: EvalConfig,
             desc: str = "evaluate") -> EvalReport:
    """Play every game in turn; progress on stderr counts episodes (``scaledql.progress``)."""
    returns: dict[str, list[float]] = {}
    actions: dict[str, list[int]] = {}
    total = cfg.episodes * len(games)
    with ProgressBar(total, desc, "ep", bar=cfg.progress) as bar:
        for game in games:
            bar.set_postfix_str(game)

            def tick(ret: float, bar=bar) -> None:
                bar.update(1)

            rets, counts = play(suite_name, game, policy, cfg, tick)
            returns[game], actions[game] = rets.tolist(), counts.tolist()
    report = EvalReport(suite_name, returns, cfg.seed, cfg.epsilon, actions)
    from scaledql.progress import is_quiet

    for line in [] if is_quiet() else report.one_action_warnings():  # also in the report
        print(line, file=sys.stderr)
    return report


def results_lines(report: dict) -> list[str]:
    """An evaluation report (``EvalReport.to_dict()``) as the table the user reads: per game its
    episodes, mean return and normalized score, then IQM / median / mean with 95% CIs."""
    lines = [f"{'game':<20} {'episodes':>8} {'mean return':>12} {'normalized':>11}"]
    for game, g in report["games"].items():
        norm = "—" if g["normalized"] is None else f"{g['normalized']:.3f}"
        lines.append(f"{game:<20} {len(g['returns']):>8} {g['mean']:>12.2f} {norm:>11}")
    agg = report.get("aggregate") or {}
    for k in ("iqm", "median", "mean"):
        if k in agg:
            lo, hi = agg[f"{k}_ci"]
            lines.append(f"{k.upper():<7} {agg[k]:.3f}  95% CI [{lo:.3f}, {hi:.3f}]")
    return lines


def write_json(report: dict, path: Path) -> None:
    """Atomic JSON write."""
    atomic_write_text(path, json.dumps(report, indent=2))


def policy_evaluator(suite_name: str, cfg: EvalConfig, run: Path | None = None,
                     echo: bool = True, final: tuple[int, int] | None = None):
    """A training-time evaluation callback: ``fn(policy, games, step) -> scalar metrics``.

    Plays the policy (with ε = ``cfg.epsilon``) in every trained game and, when ``run`` (a run
    folder) is given, writes the full report there as the evaluation of ``step``
    (``run_folder.write_evaluation``); ``echo``: also prints its results table on stdout, where
    the user is (``--quiet`` silences progress, not results). ``final`` = (step, episodes):
    the evaluation at that step (the run's last) plays that many episodes per game instead (a
    final score precise enough to compare arms, cheap curves before it).
    """
    def fn(policy: Policy, games: list[str], step: int) -> dict:
        here = replace(cfg, episodes=final[1]) if final and step == final[0] else cfg
        report = evaluate(suite_name, games, policy, here, desc=f"evaluate step {step}").to_dict()
        if run is not None:
            write_evaluation(run, step, report)
        if echo:
            print("\n".join([f"[evaluate step {step:,}]", *results_lines(report)]), flush=True)
        row = {f"{g}/return": v["mean"] for g, v in report["games"].items()}
        row.update({f"{g}/normalized": v["normalized"] for g, v in report["games"].items()
                    if v["normalized"] is not None})
        row.update({f"{g}/top_action_share": v["top_action_share"]
                    for g, v in report["games"].items() if "top_action_share" in v})
        row.update({k: report["aggregate"][k] for k in ("iqm", "median", "mean")
                    if k in report["aggregate"]})
        return row

    return fn
