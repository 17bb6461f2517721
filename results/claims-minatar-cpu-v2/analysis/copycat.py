"""Does a trained DT (or BC) policy pick its action from the state, or copy the previous one?

    python results/claims-minatar-cpu/analysis/copycat.py RUN DATA FRACTION OUT.json

RUN: a run folder with its checkpoint (dt or bc); DATA, FRACTION: the store and the share of
each game it trained on. Three measurements per game:

- teacher-forced on 8 × 512 windows of 4 steps of the data (seeded): the data's own repeat rate
  P(a_t = a_{t-1}), and the run's argmax accuracy on steps where the data's action repeats the
  previous one and on steps where it changes (BC sees one stacked observation, no history;
  DT sees the window, past actions included unless ``action_inputs = false``);
- in closed loop (5 episodes a game, seed 0, ε = 0.001): how often the policy repeats its
  previous action;
- for DT, the evaluation of the run's own protocol (20 episodes a game, the run's seed)
  under three action rules: the release's (sample among the top half of the logits, returns
  drawn 128 times and the largest kept), argmax actions, and argmax with one return draw.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

from scaledql.agents.base import BatchSpec
from scaledql.checkpoint import load_learner
from scaledql.data.sampler import make_sampler
from scaledql.data.store import open_dataset
from scaledql.evaluate import EvalConfig, evaluate
from scaledql.policies import Policy
from scaledql.suites import EnvOptions


def predictions(learner, batch) -> torch.Tensor:
    """int64[B, L] argmax actions of ``learner`` on a trajectory batch, teacher-forced."""
    if learner.name == "dt":
        return learner.teacher_forced_logits(batch).argmax(-1).cpu()
    gid = torch.from_numpy(batch.game_id)
    obs = torch.from_numpy(batch.obs)
    b, n = obs.shape[:2]
    with torch.no_grad():
        logits = learner.action_logits(obs.reshape(b * n, *obs.shape[2:]),
                                       gid.repeat_interleave(n))
    return logits.argmax(-1).reshape(b, n)


class RepeatCounter:
    """A ``Policy`` wrapper counting how often the policy repeats its previous action."""

    def __init__(self, policy: Policy) -> None:
        self.policy, self.previous, self.repeats, self.steps = policy, None, 0, 0
        self.games, self.num_actions = policy.games, policy.num_actions

    def reset(self, game: str, num_envs: int) -> None:
        self.previous = None
        self.policy.reset(game, num_envs)

    def act(self, obs: np.ndarray) -> np.ndarray:
        actions = self.policy.act(obs)
        if self.previous is not None and len(self.previous) == len(actions):
            self.repeats += int((actions == self.previous).sum())
            self.steps += len(actions)
        self.previous = actions.copy()
        return actions

    def observe(self, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> None:
        self.policy.observe(actions, rewards, dones)


def main(run: Path, data: Path, fraction: float, out: Path) -> None:
    learner, payload = load_learner(run, "cpu")
    games, suite = list(payload["games"]), payload["suite"]
    sampler = make_sampler(open_dataset(data, games), games, BatchSpec("trajectories", 512, length=4,
                           reward_clip=None), 512, np.random.SeedSequence([123]),
                           data_fraction=fraction)
    counts = {g: np.zeros(4, np.int64) for g in games}  # repeat n, repeat ok, change n, change ok
    for _ in range(8):
        batch = sampler.sample()
        pred, act = predictions(learner, batch), torch.from_numpy(batch.action)
        valid = torch.from_numpy(batch.mask[:, 1:] * batch.mask[:, :-1]) > 0
        repeat = act[:, 1:] == act[:, :-1]
        right = pred[:, 1:] == act[:, 1:]
        for i, g in enumerate(games):
            sel = valid & torch.from_numpy(batch.game_id == i)[:, None]
            counts[g] += [int((sel & repeat).sum()), int((sel & repeat & right).sum()),
                          int((sel & ~repeat).sum()), int((sel & ~repeat & right).sum())]
    result: dict = {"run": str(run), "algo": learner.name, "games": {}}
    for g, c in counts.items():
        rn, rok, cn, cok = (int(x) for x in c)
        counter = RepeatCounter(learner.policy())
        evaluate(suite, [g], counter, EvalConfig(episodes=5, seed=0, options=EnvOptions(),
                                                  num_envs=5))
        result["games"][g] = {"data_repeat_rate": round(rn / (rn + cn), 3),
                              "accuracy_when_data_repeats": round(rok / max(1, rn), 3),
                              "accuracy_when_data_changes": round(cok / max(1, cn), 3),
                              "policy_repeat_rate": round(counter.repeats / max(1, counter.steps), 3)}
        print(g, result["games"][g], flush=True)
    if learner.name == "dt":
        seed = json.loads((run / "config.json").read_text()).get("seed", 0)
        base = learner.cfg
        rules = {"release": base,
                 "argmax actions": dataclasses.replace(base, action_top_percentile=100.0),
                 "argmax actions, one return draw": dataclasses.replace(
                     base, action_top_percentile=100.0, return_samples=1)}
        result["action_rules"] = {}
        for name, cfg in rules.items():
            policy = learner.policy(inference=cfg)
            report = evaluate(suite, games, policy, EvalConfig(
                episodes=20, seed=seed, options=EnvOptions())).to_dict()
            result["action_rules"][name] = {
                "iqm": round(report["aggregate"]["iqm"], 4),
                "returns": {g: v["mean"] for g, v in report["games"].items()}}
            print(name, result["action_rules"][name], flush=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]))
