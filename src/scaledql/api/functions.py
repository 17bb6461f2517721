"""Conveniences for code and notebooks: what the commands do in a few lines each, as functions.

The package exports these together with the library's own entry points (``scaledql.__init__``):
``make_config`` layers a run's configuration as ``scaledql train`` does, ``make_learner`` builds
the learner it describes (to poke at batches and updates), ``train_run`` trains it with the
command's evaluations, ``evaluate_policy`` plays any policy in the real games.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scaledql.agents.base import Learner, Problem
from scaledql.data.store.dataset import Dataset, open_dataset
from scaledql.errors import UserError
from scaledql.evaluate import EvalConfig, EvalReport, evaluate, policy_evaluator
from scaledql.policies import Policy
from scaledql.run_folder import eval_dir
from scaledql.suites import EnvOptions, get_suite
from scaledql.training.config import (
    RunConfig,
    merge,
    preset_path,
    read_toml,
    suite_preset,
)


def suite_of(dataset: Dataset) -> str:
    return dataset.game(dataset.games[0]).suite


def make_config(data: Path | str, out: Path | str, algo: str = "scaled-ql", *,
                config: Path | str | Mapping[str, Any] | None = None,
                learner: Mapping[str, Any] | None = None, **options: Any) -> RunConfig:
    """A validated ``RunConfig`` layered as ``scaledql train`` layers it: the learner's
    defaults → the data's suite preset → ``config`` (a TOML file, or a dict of the same shape)
    → ``options`` (run keys: ``steps``, ``seed``, ``games``, ``eval_every``, ...) and
    ``learner`` (learner keys: ``encoder``, ``width``, ``batch_size``, ...)."""
    return layered_config(suite_of(open_dataset(Path(data))), data, out, algo, config=config,
                          learner=learner, **options)


def layered_config(suite: str, data: Path | str, out: Path | str, algo: str = "scaled-ql", *,
                   config: Path | str | Mapping[str, Any] | None = None,
                   learner: Mapping[str, Any] | None = None, **options: Any) -> RunConfig:
    """``make_config`` for a suite named directly (the data need not exist yet: the object API
    builds a learner before it sees any data)."""
    user = config
    if isinstance(config, (str, Path)):  # a name or a path; the suite's own preset is applied once
        user = (None if preset_path(str(config)) == preset_path(suite)
                else read_toml(preset_path(str(config))))
    run = {**options, "data": str(data), "out": str(out)}
    return merge(algo, suite_preset(suite), dict(user) if user else None, run,
                 dict(learner or {}), preset_name=f"preset {suite}",
                 user_name=str(config) if isinstance(config, (str, Path)) else "config")


def problem_of(dataset: Dataset, games: Sequence[str] | None = None) -> Problem:
    """What a learner of these games needs to know: observation shape, action counts."""
    return Problem.of([dataset.game(g) for g in (games or dataset.games)],
                      where=str(dataset.root))


def make_learner(cfg: RunConfig, device: str | None = None) -> Learner:
    """The untrained learner ``cfg`` describes, for its data's games (seeded by ``cfg.seed``)."""
    cfg.validate()
    return new_learner(cfg, problem_of(open_dataset(Path(cfg.data), cfg.games), cfg.games),
                       device)


def new_learner(cfg: RunConfig, problem: Problem, device: str | None = None) -> Learner:
    """The untrained learner of ``cfg`` for ``problem``, seeded as the training loop seeds the
    one it builds: the same config gives the same initial weights here and in ``train``."""
    from scaledql.agents.registry import learner_class
    from scaledql.device import pick_device
    from scaledql.training.rng import seed_everything

    seed_everything(cfg.seed)
    return learner_class(cfg.algo)(cfg.learner, problem, pick_device(device or cfg.device))


def check_action_counts(dataset: Dataset, options: EnvOptions) -> None:
    """Each game's heads are played in the real game: the store's action count must be the
    game's (a store saying 18 for a 3-action game trains, then fails at its evaluation)."""
    for name in dataset.games:
        g = dataset.game(name)
        want = get_suite(g.suite).spec(name, options).num_actions
        if g.num_actions != want:
            raise UserError(f"{g.directory}: the store has {g.num_actions} actions, {g.suite} "
                            f"{name} as configured has {want}: its head could not be played")


def train_run(cfg: RunConfig, *, resume: bool = False, progress: bool = True,
              wandb: Any = None, callbacks: Sequence[Callable[[dict], None]] = (),
              quiet: bool = False, dataset: Dataset | None = None) -> dict:
    """Train (or ``resume``) a run as ``scaledql train`` does: the run folder ``cfg.out`` gets
    its config, logs, checkpoint and an evaluation in the real games — with the game options
    the data was collected with — every ``cfg.eval_every`` steps and at the end
    (``RUN/eval/``, one report per step: ``scaledql.Run(RUN).evaluations``). ``wandb``:
    ``training.metrics.WandbOptions`` to log there too; ``callbacks``: each called with every
    metrics row (``kind`` "train" or "eval") as it is logged.
    Returns the training loop's summary; ``summary["evaluation"]`` is the final evaluation
    (per-game return and normalized score, IQM / median / mean), also printed as a table.
    ``quiet``: print nothing at all (lines, bars, tables; errors still raise): the run folder
    and the returned summary hold everything. ``dataset``: the store ``cfg.data`` already
    opened for ``cfg.games`` (``open_dataset``; else it is opened here): a run opens it once."""
    if quiet:
        import contextlib
        import os

        from scaledql.progress import is_quiet, set_quiet

        was = is_quiet()
        set_quiet(True)
        try:
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
                    contextlib.redirect_stderr(sink):
                return train_run(cfg, resume=resume, progress=False, wandb=wandb,
                                 callbacks=callbacks, dataset=dataset)
        finally:
            set_quiet(was)
    from scaledql.atomic_files import remove_stale_temporaries_in
    from scaledql.training.offline_loop import train

    if dataset is None:
        dataset = open_dataset(Path(cfg.data), cfg.games)
    first = dataset.game(dataset.games[0])
    options = EnvOptions(**first.env_options)
    check_action_counts(dataset, options)
    evaluator = policy_evaluator(
        first.suite,
        EvalConfig(episodes=cfg.eval_episodes, seed=cfg.seed, epsilon=cfg.eval_epsilon,
                   options=options, progress=progress),
        Path(cfg.out), final=(cfg.steps, cfg.final_eval_episodes or cfg.eval_episodes))
    for folder in (Path(cfg.out), eval_dir(cfg.out)):  # what killed writers left
        remove_stale_temporaries_in(folder)
    return train(cfg, resume=resume, evaluate_fn=evaluator, progress=progress, wandb=wandb,
                 callbacks=callbacks, dataset=dataset)


def evaluate_policy(policy: Policy, suite: str, games: Sequence[str], episodes: int = 10, *,
                    seed: int = 0, options: EnvOptions | None = None, epsilon: float = 0.001,
                    progress: bool = False) -> EvalReport:
    """Play ``policy`` for ``episodes`` episodes of each game under the evaluation protocol;
    ``.to_dict()`` of the result has per-game returns, normalized scores and aggregates."""
    cfg = EvalConfig(episodes=episodes, seed=seed, epsilon=epsilon,
                     options=options or EnvOptions(), progress=progress)
    return evaluate(suite, list(games), policy, cfg)
