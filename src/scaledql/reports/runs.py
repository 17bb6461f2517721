"""Run folders → methods → score matrices: what a report over runs aggregates.

A *run* is a folder with ``config.json`` (its ``seed`` among the options) and evaluation
reports (raw returns per game; the layout is ``run_folder``'s): what ``scaledql train`` writes,
and each arm × seed (× game) of ``scaledql finetune``. A folder holding several runs is expanded: a
fine-tuning experiment (``finetune.json``) into its runs, labelled by arm; a demo folder
(``summary.json``) into its learners' runs.

Runs are grouped into *methods* by label (an explicit one, the arm, ``group_by`` config keys,
or by default the learner plus every option that tells runs of that learner apart). A run's
score on a game is the normalized mean return of its *final* evaluation, recomputed from the
raw returns (the reference tables may have changed since). A method's score matrix has one
row per seed and one column per game; a seed's games may come from one run (multi-game
training) or several (one fine-tuning run per game).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.errors import UserError
from scaledql.run_folder import CONFIG, EVAL_DIR, config_file, eval_files, is_run, read_json
from scaledql.suites.scores import has_reference, normalize

# Options that never make two runs different methods: the seed (runs of a method differ in
# it), where things lie, the games (the score matrix's columns), evaluation and speed knobs.
NOT_METHOD_KEYS = frozenset({
    "seed", "out", "data", "games", "game", "device", "log_every", "checkpoint_every",
    "eval_every", "eval_episodes", "eval_epsilon", "sample_workers", "prefetch", "num_envs",
    "learner.bf16", "learner.compile", "learner.channels_last"})


@dataclass
class Evaluation:
    step: int
    scores: dict[str, float]  # normalized mean return per game (games with reference scores)
    episodes: int  # per game, the fewest
    # normalized return of every episode per game (what a bootstrap over episodes resamples)
    episode_scores: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class RunResult:
    path: Path
    config: dict[str, Any]
    seed: int
    suite: str
    evals: list[Evaluation]  # by step; the last is the final one
    unscored: list[str] = field(default_factory=list)  # games without reference scores
    label: str | None = None  # from the folder that held it (a fine-tuning arm)

    @property
    def final(self) -> Evaluation:
        return self.evals[-1]

    @property
    def algo(self) -> str:
        return str(self.config.get("algo", "?"))

    @property
    def target_steps(self) -> int | None:
        steps = self.config.get("steps")
        return steps if isinstance(steps, int) else None

    def scores_at(self, step: int) -> dict[str, float] | None:
        """The evaluation's scores at ``step``; None when the run did not evaluate there."""
        return next((e.scores for e in self.evals if e.step == step), None)

    def area_under_curve(self) -> dict[str, float] | None:
        """Per game, the mean normalized score over the run's learning curve: the area under
        it (trapezoids between evaluations) divided by the steps it spans, so it reads on the
        score's scale; None with fewer than two evaluations."""
        if len(self.evals) < 2:
            return None
        steps = np.array([e.step for e in self.evals], np.float64)
        span = steps[-1] - steps[0]
        games = [g for g in self.final.scores if all(g in e.scores for e in self.evals)]
        if span <= 0 or not games:
            return None
        return {g: float(np.trapezoid([e.scores[g] for e in self.evals], steps) / span)
                for g in games}

    @property
    def finished(self) -> bool:
        return self.target_steps is None or self.final.step >= self.target_steps


def _evaluation(file: Path, step: int) -> tuple[str, Evaluation, list[str]]:
    report = read_json(file)
    games = report.get("games") if isinstance(report, dict) else None
    suite = report.get("suite") if isinstance(report, dict) else None
    if not isinstance(games, dict) or not games or not isinstance(suite, str):
        raise UserError(f"{file}: not an evaluation report (no suite or games)")
    scores, unscored, episodes, each = {}, [], [], {}
    for game, entry in games.items():
        returns = entry.get("returns") if isinstance(entry, dict) else None
        if (not isinstance(returns, list) or not returns or not all(
                isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r)
                for r in returns)):
            raise UserError(f"{file}: {game} has no list of finite returns")
        if not has_reference(suite, game):
            unscored.append(game)
            continue
        scores[game] = float(normalize(suite, game, float(np.mean(returns))))
        each[game] = np.array([normalize(suite, game, float(r)) for r in returns], np.float64)
        episodes.append(len(returns))
    return suite, Evaluation(step, scores, min(episodes, default=0), each), unscored


def read_run(path: Path, label: str | None = None) -> RunResult:
    """One run folder's config and evaluations; one ``UserError`` line if it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} " + ("is not a folder" if path.exists() else "does not exist"))
    config = read_json(config_file(path)) if is_run(path) else None
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a run folder (no config.json object), a demo folder "
                        "(no summary.json) or a fine-tuning experiment (no finetune.json)")
    seed = config.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise UserError(f"{config_file(path)}: seed must be a non-negative integer")
    files = eval_files(path)
    if not files:
        raise UserError(f"{path}: no evaluation (no report in {EVAL_DIR}/; `scaledql train` "
                        "writes one when a run finishes)")
    evals, suites, unscored = [], set(), set()
    for step, f in files.items():
        suite, evaluation, missing = _evaluation(f, step)
        suites.add(suite)
        unscored.update(missing)
        evals.append(evaluation)
    if len(suites) > 1:
        raise UserError(f"{path}: evaluations of different suites ({', '.join(sorted(suites))})")
    if not evals[-1].scores:
        raise UserError(f"{path}: its final evaluation has no game with reference scores "
                        f"({', '.join(sorted(unscored))}): nothing to normalize")
    return RunResult(path, config, seed, suites.pop(), evals, sorted(unscored), label)


def expand(path: Path) -> list[tuple[Path, str | None]]:
    """The runs behind one argument: a run folder itself; a fine-tuning experiment's runs,
    labelled by arm; a demo folder's learner runs."""
    path = Path(path)
    if (path / "finetune.json").is_file():
        runs = sorted(p.parent for p in path.glob(f"**/{CONFIG}") if p.parent != path)
        return [(r, r.relative_to(path).parts[0]) for r in runs]
    if (path / "summary.json").is_file() and not is_run(path):
        return [(p.parent, None) for p in sorted(path.glob(f"*/{CONFIG}"))]
    return [(path, None)]


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(value: Any) -> str:
    """An option's value as a label shows it: a path by its last part."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and "/" in value:
        return Path(value).name or value
    return str(value)


def _label(flat: Mapping[str, Any], keys: Sequence[str]) -> str:
    parts = [_short(flat.get(k)) if k == "algo" else
             f"{k.removeprefix('learner.')}={_short(flat.get(k))}" for k in keys]
    return " ".join(parts)


def config_labels(runs: Sequence[RunResult], group_by: Sequence[str] | None = None) -> list[str]:
    """Each run's method label from its config: ``group_by`` keys (dotted for nested options,
    ``learner.encoder``), or by default its learner plus the options that differ between runs
    of that learner (seed, paths, games and speed knobs aside)."""
    flats = [_flat(r.config) for r in runs]
    if group_by:
        known = set().union(*flats)
        for key in group_by:
            if key not in known:
                raise UserError(f"--group-by: no run has the option {key!r} (options: "
                                f"{', '.join(sorted(known))})")
        return [_label(f, group_by) for f in flats]
    labels = []
    for run, flat in zip(runs, flats, strict=True):
        same = [f for r, f in zip(runs, flats, strict=True) if r.algo == run.algo]
        keys = sorted(k for k in set().union(*same) if k not in NOT_METHOD_KEYS and k != "algo"
                      and len({json.dumps(f.get(k), sort_keys=True, default=str)
                               for f in same}) > 1)
        labels.append(_label(flat, ["algo", *keys]))
    return labels


@dataclass
class Method:
    label: str
    runs: list[RunResult]
    seeds: list[int]
    matrix: np.ndarray  # float64[seeds, games]: final normalized scores


def _cells(runs: Sequence[RunResult], label: str,
           pick: Callable[[RunResult], dict[str, float] | None]) -> dict[tuple[int, str], float]:
    cells: dict[tuple[int, str], float] = {}
    owner: dict[tuple[int, str], Path] = {}
    for run in runs:
        for game, score in (pick(run) or {}).items():
            key = (run.seed, game)
            if key in cells:
                raise UserError(f"method {label!r}: {owner[key]} and {run.path} both score "
                                f"seed {run.seed} on {game}; give them different labels (or "
                                "seeds)")
            cells[key], owner[key] = score, run.path
    return cells


def matrix_of(runs: Sequence[RunResult], games: Sequence[str], label: str,
              pick: Callable[[RunResult], dict[str, float] | None] = lambda r: r.final.scores
              ) -> tuple[np.ndarray, list[int]] | None:
    """([seeds, games] of ``pick``'s per-game scores, the seeds), by default of the final
    evaluations; None when a seed has no score on some game."""
    cells = _cells(runs, label, pick)
    seeds = sorted({r.seed for r in runs})
    if any((seed, g) not in cells for seed in seeds for g in games):
        return None
    rows = [[cells[(s, g)] for g in games] for s in seeds]
    return np.array(rows, dtype=np.float64).reshape(len(seeds), len(games)), seeds


def game_columns(groups: Mapping[str, Sequence[RunResult]], common_games: bool
                 ) -> tuple[str, list[str]]:
    """(suite, games) every method's every seed is scored on. A seed's games are those of its
    runs together (one run per game in a fine-tuning experiment); seeds scored on different
    games are refused unless ``common_games`` (then their shared games are the columns),
    different suites always."""
    suites = {label: {r.suite for r in runs} for label, runs in groups.items()}
    every = sorted(set().union(*suites.values()))
    if len(every) > 1:
        raise UserError("runs from different suites (" + "; ".join(
            f"{s}: {', '.join(m for m, ss in suites.items() if s in ss)}" for s in every)
            + "): their normalized scores do not share games")
    rows: dict[str, list[str]] = {}
    for label, runs in groups.items():
        for seed in sorted({r.seed for r in runs}):
            rows[f"{label} seed {seed}"] = list(dict.fromkeys(
                g for r in runs if r.seed == seed for g in r.final.scores))
    order = list(dict.fromkeys(g for gs in rows.values() for g in gs))
    shared = [g for g in order if all(g in gs for gs in rows.values())]
    if any(len(gs) != len(shared) for gs in rows.values()):
        listing = "; ".join(f"{m}: {', '.join(gs)}" for m, gs in rows.items())
        if not common_games:
            raise UserError(f"the runs are scored on different games ({listing}); pass "
                            "--common-games to compare them on the games they share")
        if not shared:
            raise UserError(f"the runs share no game ({listing})")
    return every[0], shared


def methods_of(runs: Sequence[RunResult], labels: Sequence[str], common_games: bool = False
               ) -> tuple[str, list[str], list[Method]]:
    """(suite, games, methods in order of first appearance) of labelled runs."""
    groups: dict[str, list[RunResult]] = {}
    for run, label in zip(runs, labels, strict=True):
        groups.setdefault(label, []).append(run)
    suite, games = game_columns(groups, common_games)
    methods = []
    for label, rs in groups.items():
        scored = matrix_of(rs, games, label)
        assert scored is not None  # game_columns gave every seed of every method every game
        matrix, seeds = scored
        methods.append(Method(label, rs, seeds, matrix))
    return suite, games, methods


def curve_matrices(method: Method, games: Sequence[str]) -> list[tuple[int, np.ndarray]]:
    """(step, [seeds, games]) at each evaluation step that every run of the method reached
    and where every seed has every game."""
    common = set.intersection(*({e.step for e in r.evals} for r in method.runs))
    out = []
    for step in sorted(common):
        m = matrix_of(method.runs, games, method.label,
                      lambda run, step=step: run.scores_at(step))
        if m is not None:
            out.append((step, m[0]))
    return out
