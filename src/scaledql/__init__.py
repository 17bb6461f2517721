"""scaledql: Scaled Q-Learning — offline multi-game Q-learning that scales.

Data flows one way: suites → data → models/losses → agents → training → evaluation → reports;
``cli`` is a thin shell on top.

The names a notebook needs are importable from the package itself (``docs/api.md``)::

    import scaledql as sq
    sq.collect_data(sq.CollectConfig(suite="minatar", games=["breakout"], steps=500, out=path))
    cfg = sq.make_config(path, "runs/a", steps=100)
    sq.train_run(cfg)
    policy, info = sq.load_policy("runs/a")
    sq.evaluate_policy(policy, "minatar", ["breakout"], episodes=5).to_dict()
    sq.Run("runs/a").metrics("eval")  # a run folder as data: config, rows, evaluations
    sq.report_runs(["runs/a", "runs/b"], "runs/report")

or as objects (``scaledql.api.agent``)::

    agent = sq.make("scaled-ql", games=["breakout"], suite="minatar", steps=100)
    agent.fit(path, out="runs/b")
    agent.save("b.pt")
    sq.load("b.pt").predict(obs, "breakout")

They are loaded on first use (module ``__getattr__``): ``import scaledql`` stays cheap and
imports neither torch nor the environments until a name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name → (module, attribute). Names differ from the package's module names (``evaluate``,
# ``collect``): a submodule, once imported, would shadow an attribute of the same name.
_EXPORTS: dict[str, tuple[str, str]] = {
    # games
    "get_suite": ("scaledql.suites", "get_suite"),
    "EnvOptions": ("scaledql.suites", "EnvOptions"),
    "register_suite": ("scaledql.suites", "register_suite"),
    "suite_names": ("scaledql.suites", "suite_names"),
    "GymSuite": ("scaledql.suites.gym", "GymSuite"),
    # data: collect, open, sample
    "CollectConfig": ("scaledql.collect", "CollectConfig"),
    "collect_data": ("scaledql.collect", "collect"),
    "open_dataset": ("scaledql.data.store.dataset", "open_dataset"),
    "BatchSpec": ("scaledql.data.sampling.sampler", "BatchSpec"),
    "make_sampler": ("scaledql.data.sampling.sampler", "make_sampler"),
    "Episode": ("scaledql.data.store.build", "Episode"),
    "build_store": ("scaledql.data.store.build", "build_store"),
    "episodes_from_arrays": ("scaledql.data.store.build", "episodes_from_arrays"),
    # learners: configure, build, train
    "learner_class": ("scaledql.agents.registry", "learner_class"),
    "learner_names": ("scaledql.agents.registry", "learner_names"),
    "register_learner": ("scaledql.agents.registry", "register"),
    "register_value_target": ("scaledql.value_targets", "register_value_target"),
    "value_target_names": ("scaledql.value_targets", "value_target_names"),
    "RunConfig": ("scaledql.training.config", "RunConfig"),
    "make_config": ("scaledql.api.functions", "make_config"),
    "make_learner": ("scaledql.api.functions", "make_learner"),
    "train_run": ("scaledql.api.functions", "train_run"),
    # the object API: make → fit → save / export → load → predict
    "Agent": ("scaledql.api.agent", "Agent"),
    "make": ("scaledql.api.agent", "make"),
    "load": ("scaledql.api.agent", "load"),
    # trained runs: read, load, act, evaluate
    "Run": ("scaledql.run_folder", "Run"),
    "load_policy": ("scaledql.checkpoint", "load_policy"),
    "load_learner": ("scaledql.checkpoint", "load_learner"),
    "EvalConfig": ("scaledql.evaluate", "EvalConfig"),
    "evaluate_policy": ("scaledql.api.functions", "evaluate_policy"),
    # reports
    "report_runs": ("scaledql.reports.over_runs", "report_runs"),
    "UserError": ("scaledql.errors", "UserError"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scaledql' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
