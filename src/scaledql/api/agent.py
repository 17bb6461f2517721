"""The object API: an ``Agent`` that is made, fitted, saved, loaded and asked for actions.

``make(algo, games, suite, **options)`` layers a configuration as ``scaledql train`` does and
builds the learner it describes; ``Agent.fit`` trains it with the command's own code path
(``api.train_run`` → ``training.offline.train``: the same loop, run folder, checkpoints,
metrics, evaluations and resume); ``Agent.save`` writes a checkpoint in the one checkpoint
format (``checkpoint.save_checkpoint``), ``Agent.export`` an exported agent
(``export.export_agent``), and ``load`` reads any of them back (``checkpoint.load_learner``).
``Agent.predict(obs, game)`` is greedy action selection with its input checked.

The agent does not train in memory: ``fit`` runs the loop, which builds its learner from the
config and seed exactly as the agent built its own (``api.new_learner``), and the agent then
takes the run's checkpoint as its state. A later ``fit`` continues that run as ``--resume``
does, so an interrupted fit loses nothing and an API run is a run every command can read.
"""

from __future__ import annotations

import dataclasses
import difflib
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.agents.base import Learner, Problem
from scaledql.api.functions import layered_config, new_learner, problem_of, train_run
from scaledql.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    load_learner,
    resumable,
    run_payload,
    save_checkpoint,
)
from scaledql.data.store.dataset import Dataset, open_dataset
from scaledql.errors import UserError
from scaledql.policies import head_index
from scaledql.run_folder import checkpoint_file, is_run
from scaledql.suites import EnvOptions, get_suite
from scaledql.training.config import RunConfig


class Agent:
    """A learner with its configuration. Make one with ``make``, ``Agent.from_config`` or
    ``load``; ``learner`` is the underlying ``agents.base.Learner`` (batches, updates by hand).

    ``config`` is the ``RunConfig`` that ``fit`` trains with (``data`` and ``out`` are filled
    in by ``fit``); ``run`` the run folder whose checkpoint is this agent's state (``None``
    before the first fit, and for an agent loaded from a saved file or an export)."""

    def __init__(self, learner: Learner, config: RunConfig, suite: str,
                 env_options: dict[str, Any], *, run: Path | None = None,
                 fresh: bool = False, data_identity: Any = None) -> None:
        self.learner = learner
        self.config = config
        self.suite = suite
        self.env_options = dict(env_options)
        self.run = run
        self._fresh = fresh  # untrained, as the loop would build it: fit may start a new run
        self._data_identity = data_identity

    # -- what it is ----------------------------------------------------------------------------
    @property
    def algo(self) -> str:
        return self.learner.name

    @property
    def games(self) -> list[str]:
        return list(self.learner.problem.games)

    @property
    def num_actions(self) -> list[int]:
        return list(self.learner.problem.num_actions)

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        return tuple(self.learner.problem.obs_shape)

    @property
    def step(self) -> int:
        return int(self.learner.step)

    def __repr__(self) -> str:
        return (f"Agent({self.algo}, games={self.games}, suite={self.suite!r}, step={self.step}"
                f"{f', run={str(self.run)!r}' if self.run else ''})")

    @classmethod
    def from_config(cls, config: RunConfig, device: str | None = None) -> Agent:
        """The untrained agent of a ``RunConfig`` (``make_config``'s), for its data's games;
        ``fit()`` with no arguments then trains exactly that run."""
        config = config.validate()
        dataset = open_dataset(Path(config.data), config.games)
        first = dataset.game(dataset.games[0])
        learner = new_learner(config, problem_of(dataset, config.games), device)
        return cls(learner, config, first.suite, first.env_options, fresh=True)

    # -- training ------------------------------------------------------------------------------
    def fit(self, dataset: Dataset | Path | str | None = None, steps: int | None = None, *,
            out: Path | str | None = None, eval_every: int | None = None,
            callbacks: Sequence[Callable[[dict], None]] = (), progress: bool = True) -> dict:
        """Train on ``dataset`` (a store folder or ``open_dataset``'s result; default: the
        config's data) until the learner has made ``steps`` gradient steps in all (default: the
        config's ``steps``), as ``scaledql train`` does, in the run folder ``out`` (default:
        the agent's run, else the config's ``out``, else a new ``runs/ALGO-TIME``).

        A fresh agent starts a run there; one that has been fitted (or loaded from a run
        folder) continues its run, as ``--resume`` does. ``eval_every``: evaluate in the real
        games every that many steps (0: only at the end); ``callbacks``: each called with every
        metrics row as it is logged (``kind`` "train" or "eval", ``step``, the losses or the
        scores). Returns the loop's summary (``summary["evaluation"]``: the final evaluation;
        ``summary["interrupted"]`` after Ctrl-C, whose checkpoint the next fit continues)."""
        if self.run is None and not self._fresh:
            raise UserError("this agent was loaded from a file that holds no training run to "
                            "continue (a saved checkpoint or an exported agent): continue a run "
                            "with scaledql.load(RUN_FOLDER), or start one with make(..., "
                            "init_from=PATH) to begin from its representation")
        data = _data_path(dataset) if dataset is not None else self.config.data
        if not data:
            raise UserError("fit needs a dataset: a store folder or scaledql.open_dataset(...)")
        run = Path(out) if out is not None else self.run or (
            Path(self.config.out) if self.config.out else _new_run_folder(self.algo))
        if self.run is not None and run.resolve() != self.run.resolve():
            raise UserError(f"this agent's training is the run in {self.run}: fit continues it "
                            f"there, not in {run} (make a new agent to start another run)")
        resume = self.run is not None
        if not resume and checkpoint_file(run).exists():
            raise UserError(f"{run} already holds a run: continue it with "
                            f"scaledql.load({str(run)!r}).fit(...), or choose another out")
        opened = open_dataset(Path(data), self.games)
        self._check_data(opened)
        changes: dict[str, Any] = {"data": str(data), "out": str(run)}
        if not resume:  # the heads the agent has; a run continues with the games it has
            changes["games"] = self.games
        if steps is not None:
            changes["steps"] = steps
        if eval_every is not None:
            changes["eval_every"] = eval_every
        cfg = dataclasses.replace(self.config, **changes).validate()
        try:
            # the store opened above, where the run trains on exactly its games
            same = cfg.games is not None and list(cfg.games) == opened.games
            summary = train_run(cfg, resume=resume, progress=progress, callbacks=callbacks,
                                dataset=opened if same else None)
        except BaseException:
            if checkpoint_file(run).exists():  # a failure after a checkpoint: that is the state
                self._adopt(run, cfg)
            raise
        self._adopt(run, cfg)
        return summary

    def _check_data(self, dataset: Dataset) -> None:
        """The data must be of the problem the agent's network was built for."""
        got, want = problem_of(dataset, self.games), self.learner.problem
        if got != want:
            raise UserError(
                f"{dataset.root}: its games {list(got.games)} have observations "
                f"{tuple(got.obs_shape)} and {list(got.num_actions)} actions, this agent was "
                f"made for {list(want.games)} with {tuple(want.obs_shape)} and "
                f"{list(want.num_actions)}")

    def _adopt(self, run: Path, cfg: RunConfig) -> None:
        """Take the run's latest checkpoint as this agent's state."""
        learner, payload = load_learner(run, self.learner.device)
        self.learner, self.config, self.run, self._fresh = learner, cfg, run, False
        self.suite, self.env_options = payload["suite"], dict(payload.get("env_options", {}))
        self._data_identity = payload.get("data_identity")

    # -- acting --------------------------------------------------------------------------------
    def predict(self, obs: Any, game: str) -> np.ndarray | np.int64:
        """Greedy actions for ``game``: ``obs`` is one observation, uint8[S*C, H, W] (one
        ``numpy.int64`` comes back), or a batch uint8[N, S*C, H, W] (int64[N]), exactly as the
        suite's environments return them — raw frames, 0 to 255. Float input is refused: a
        frame already scaled to [0, 1] would read as nearly black. No exploration (evaluation
        adds ε = 0.001) and no state between calls: every call is a fresh episode's first
        step (which only a Decision Transformer, conditioning on history, tells apart)."""
        x = np.asarray(obs)
        shape = self.obs_shape
        if x.dtype != np.uint8:
            hint = (": pass the frames as the games return them, before any scaling to [0, 1]"
                    if np.issubdtype(x.dtype, np.floating) else "")
            raise UserError(f"predict: obs must be uint8 frames (0-255), got {x.dtype}{hint}")
        single = x.shape == shape
        if not single and not (x.ndim == 4 and x.shape[1:] == shape):
            raise UserError(f"predict: obs must be one observation of shape {shape} or a batch "
                            f"of shape (N, {', '.join(map(str, shape))}), got shape {x.shape}")
        head_index(self.games, game)  # an unknown game is named before anything runs
        batch = x[None] if single else x
        policy = self.learner.policy()  # a new one per call: no state carries over
        policy.reset(game, len(batch))
        actions = np.asarray(policy.act(batch), dtype=np.int64)
        return actions[0] if single else actions

    # -- files ---------------------------------------------------------------------------------
    def save(self, path: Path | str) -> Path:
        """Write the agent as a checkpoint file (``.pt``, the format of ``RUN/checkpoint.pt``:
        weights, optimizer state, config). ``load``, ``scaledql evaluate``/``play``/``export``
        and ``init_from`` read it; continuing training is the run folder's job (``fit``)."""
        path = Path(path)
        if path.suffix != ".pt":
            raise UserError(f"save writes one checkpoint file: {path} should end in .pt "
                            "(export(FOLDER) writes a folder to share)")
        if path == checkpoint_file(path.parent) and is_run(path.parent):
            raise UserError(f"{path} is the checkpoint of the run in {path.parent}: save "
                            "elsewhere (fit writes the run's checkpoint)")
        identity = {} if self._data_identity is None else {"data_identity": self._data_identity}
        payload = run_payload(self.learner, self.suite, self.env_options,
                              run_config=self.config.to_dict(), **identity)
        save_checkpoint(payload, path)
        return path

    def export(self, folder: Path | str) -> Path:
        """Write the agent as an exported folder (``scaledql export``: safetensors, config,
        model card). A fitted agent is exported from its run, so the card has its data and
        evaluation."""
        from scaledql.export import export_agent

        if self.run is not None and checkpoint_file(self.run).exists() and \
                load_checkpoint(self.run, "cpu")["step"] == self.step:
            export_agent(self.run, Path(folder))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                export_agent(self.save(Path(tmp) / "agent.pt"), Path(folder))
        return Path(folder)


def make(algo: str = "scaled-ql", games: Sequence[str] | str | None = None,
         suite: str = "minatar", *, config: Path | str | dict | None = None,
         env_options: EnvOptions | None = None, learner: dict[str, Any] | None = None,
         device: str | None = None, **options: Any) -> Agent:
    """An untrained agent of learner ``algo`` for ``games`` of ``suite`` (a list, a comma
    list or a named list such as ``"all"``; default: the suite's default games), configured
    as ``scaledql train`` layers it: the learner's defaults → the suite's preset → ``config``
    (a TOML file or preset name, or a dict of the same shape) → ``options``. Each option is a
    run option (``steps``, ``seed``, ``eval_episodes``, ...) or a learner option (``encoder``,
    ``width``, ``batch_size``, ...); ``learner={...}`` sets learner options by name where one
    is also a run option (the Decision Transformer's ``seed``). ``env_options``: the game
    options whose action counts the heads get (Atari's ``full_action_space``)."""
    names = get_suite(suite).resolve_games(games if games is None or isinstance(games, str)
                                           else ",".join(games))
    if env_options is not None:
        env_options.validate()
    run, learner_options = _split_options(algo, options)
    cfg = layered_config(suite, "", "", algo, config=config,
                         learner={**learner_options, **(learner or {})}, games=names,
                         **({"device": device} if device else {}), **run)
    options_dict = {k: v for k, v in dataclasses.asdict(env_options or EnvOptions()).items()
                    if v is not None and v is not False}
    problem = suite_problem(suite, names, env_options)
    return Agent(new_learner(cfg, problem), cfg, suite, options_dict, fresh=True)


def load(path: Path | str, device: str | None = None) -> Agent:
    """The agent in a run folder, a checkpoint file (``save``'s, a run's, ``RUN/checkpoints/
    step_N.pt``) or an exported folder. A run folder's agent can be fitted further (its run
    continues); the others play, evaluate and save."""
    learner, payload = load_learner(Path(path), device)
    file = checkpoint_path(Path(path))
    continues = file == checkpoint_file(file.parent) and resumable(payload)
    run = file.parent if continues else None
    if "run_config" in payload:
        config = RunConfig.from_dict(payload["run_config"], f"{file} run_config")
        if run is not None:  # the folder may have moved since it trained
            config = dataclasses.replace(config, out=str(run))
    else:  # a collection run's online learner: no run configuration
        config = RunConfig(data="", out="", algo=payload["algo"], learner=learner.cfg)
    return Agent(learner, config, payload["suite"], payload.get("env_options", {}), run=run,
                 data_identity=payload.get("data_identity"))


def suite_problem(suite: str, games: Sequence[str], options: EnvOptions | None = None) -> Problem:
    """What a network for ``games`` of ``suite`` needs to know, from the suite itself."""
    return Problem.of([get_suite(suite).spec(g, options) for g in games], where=", ".join(games))


def _split_options(algo: str, options: dict[str, Any]) -> tuple[dict, dict]:
    """``make``'s keyword options → (run options, learner options), by field name."""
    from scaledql.agents.registry import learner_config_class

    run_keys = {f.name for f in dataclasses.fields(RunConfig)} - {"learner", "data", "out"}
    learner_keys = {f.name for f in dataclasses.fields(learner_config_class(algo))}
    run, learner = {}, {}
    for key, value in options.items():
        if key in ("data", "out"):
            raise UserError(f"make: {key} is an argument of fit, which trains on the data in a "
                            "run folder")
        if key in run_keys:
            run[key] = value
        elif key in learner_keys:
            learner[key] = value
        else:
            close = difflib.get_close_matches(key, sorted(run_keys | learner_keys), n=1)
            raise UserError(f"make: {key!r} is neither a run option nor a {algo} learner "
                            f"option{f' (did you mean {close[0]!r}?)' if close else ''}")
    return run, learner


def _data_path(dataset: Dataset | Path | str) -> str:
    return str(dataset.root if isinstance(dataset, Dataset) else dataset)


def _new_run_folder(algo: str) -> Path:
    base = Path("runs") / f"{algo}-{time.strftime('%Y%m%d-%H%M%S')}"
    run, n = base, 1
    while run.exists():
        n += 1
        run = base.with_name(f"{base.name}-{n}")
    return run
