"""A study's methods, scored: each ``[[method]]`` read into a runs × games matrix.

A ``[[method]]`` is either ``runs`` (a glob of run folders under the study's runs: seeds of one
arm; each run's score on a game is the mean raw return of its *final* evaluation, or of its
evaluation at ``step`` when the method gives one (an early budget of the same runs), or with
``reading = "auc"`` the mean over its learning curve, normalized with today's reference scores)
or ``behaviour`` (a dataset: the score of its own episodes, the first ``fraction`` of each
game's data in time order — the paper's "behaviour policy"; one row, since a dataset has no
seeds). ``claims`` judges the claims from these numbers only.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scaledql.data.store.episodes import share_text
from scaledql.errors import UserError
from scaledql.run_folder import latest_evaluation, read_params
from scaledql.training.budget import budget_at, run_budget_of


@dataclass
class MethodScores:
    name: str
    games: list[str]
    matrix: np.ndarray  # [runs, games] normalized scores
    runs: list[str] = field(default_factory=list)  # run folders (empty for a dataset)
    seeds: list[int] = field(default_factory=list)
    params: int | None = None  # parameters of the whole network (runs only)
    encoder_params: int | None = None
    data: str = ""
    budget: str = ""  # passes over each game's data and target copies, over its runs
    step: int | None = None  # scored at this evaluation step, not the final one
    reading: str = "final"  # "final", or "auc": the mean score over the learning curve
    # per row, per game: the normalized return of each episode of the scored evaluation
    # (None for a dataset or an AUC reading): what the bootstrap over episodes resamples
    episodes: list[dict[str, np.ndarray]] | None = None
    curve_steps: tuple[int, ...] | None = None  # an AUC reading: the steps its curves span


def budget_text(budgets: list[dict[str, Any]]) -> str:
    """'10.2 passes (9.8–12.1 over games and runs); 40 target copies' for a method's runs."""
    if not budgets:
        return ""
    passes = [v["passes"] for b in budgets for v in b["games"].values()]
    mean = float(np.mean(passes))
    lo, hi = min(passes), max(passes)
    text = f"{mean:.3g} passes" + (f" ({lo:.3g}–{hi:.3g})" if hi - lo > 0.005 * hi else "")
    copies = sorted({b["target_copies"] for b in budgets if b.get("target_copies") is not None})
    if copies:
        text += f"; {copies[0]:,}" + (f"–{copies[-1]:,}" if len(copies) > 1 else "")
        text += " target copies"
    return text


def final_eval(run: Path) -> dict[str, Any] | None:
    """The run's last evaluation report (None when it has none)."""
    latest = latest_evaluation(run)
    return latest[1] if latest is not None else None


def _params(run: Path, part: str = "total") -> int | None:
    params = read_params(run)
    if params is None:
        return None
    count = params.get(part)
    return int(count) if isinstance(count, (int, float)) else None


READINGS = ("final", "auc")


def runs_scores(name: str, runs: list[Path], suite: str, step: int | None = None,
                reading: str = "final") -> MethodScores:
    """Each run's final evaluation (or its evaluation at ``step``), normalized per game
    (``reports.runs``): one row per seed, one column per game every seed is scored on — a seed's
    games from one multi-game run or from several runs (one fine-tuning run per game), as
    ``scaledql report`` builds them. A folder without an evaluation yet, or whose last evaluation
    is not at its final step (killed, unfinished), is left out; with ``step``, a run counts once
    it has evaluated there (what it scored at that step cannot change). ``reading="auc"``
    scores each finished run by the area under its learning curve (``RunResult.
    area_under_curve``: its mean score over the steps it evaluated at)."""
    from scaledql.reports.runs import _cells, game_columns, matrix_of, read_run

    results = []
    areas: dict[Path, dict[str, float]] = {}  # an AUC reading: each counted run's areas
    for run in runs:
        try:
            result = read_run(run)
        except UserError:
            continue
        if step is not None:
            counts = result.scores_at(step) is not None
        elif reading == "auc":  # an area needs two evaluations or more
            area = result.area_under_curve() if result.finished else None
            counts = area is not None
            if counts:
                areas[result.path] = area
        else:
            counts = result.finished
        if counts:
            results.append(result)
    if not results:
        where = "" if step is None else f" at step {step:,}"
        raise UserError(f"method {name!r}: none of its runs has finished with an evaluation "
                        f"yet{where}")
    _, games = game_columns({name: results}, common_games=True)
    curve_steps = None
    if reading == "auc":
        grids = {tuple(e.step for e in r.evals): r.path for r in results}
        if len(grids) > 1:  # a mean over other steps is another measure: never pool them
            (s1, r1), (s2, r2) = list(grids.items())[:2]
            raise UserError(f"method {name!r}: an area compares curves over the same steps; "
                            f"{r1} evaluated at {steps_text(s1)}, {r2} at {steps_text(s2)}")
        curve_steps = next(iter(grids))
        pick = lambda r: areas[r.path]  # noqa: E731
    elif step is None:
        pick = lambda r: r.final.scores  # noqa: E731
    else:
        pick = lambda r: r.scores_at(step)  # noqa: E731
    scored = matrix_of(results, games, name, pick)
    if scored is None:  # game_columns gave every seed its games; only a step can lack one
        at = "" if step is None else f" at step {step:,}"
        raise UserError(f"method {name!r}: not every seed is scored on every game{at}")
    matrix, seeds = scored
    params = [p for p in (_params(r.path) for r in results) if p is not None]
    encoder = [p for p in (_params(r.path, "encoder") for r in results) if p is not None]
    data = sorted({_data_of(r.config) for r in results} - {""})
    budgets = [b for b in (run_budget_of(r.path) for r in results) if b is not None]
    if step is not None:
        budgets = [budget_at(b, step) for b in budgets]
    episodes = None
    if reading == "final":
        evaluation = (lambda r: r.final) if step is None else (
            lambda r: next(e for e in r.evals if e.step == step))
        cells = _cells(results, name, lambda r: evaluation(r).episode_scores)
        episodes = [{g: cells[(seed, g)] for g in games} for seed in seeds]
    return MethodScores(name, list(games), matrix, [str(r.path) for r in results], seeds,
                        params[0] if params else None, encoder[0] if encoder else None,
                        "; ".join(data), budget_text(budgets), step, reading, episodes,
                        curve_steps)


def steps_text(steps: tuple[int, ...]) -> str:
    return f"{len(steps)} steps ({steps[0]:,}–{steps[-1]:,})" if steps else "no steps"


def _data_of(config: dict[str, Any]) -> str:
    """Where a run's data came from and which share of it: ``DIR (GAMES), the first 20%``
    offline, ``online GAME (sticky 0.3)`` online."""
    data = config.get("data")
    if not data:
        game = config.get("game")
        options = {k: v for k, v in (config.get("options") or {}).items() if v not in (None, False)}
        extra = f" ({', '.join(f'{k} {v}' for k, v in options.items())})" if options else ""
        return f"online {game}{extra}" if game else ""
    games = config.get("games")
    fraction = config.get("data_fraction")
    fraction = fraction if isinstance(fraction, (int, float)) else 1.0
    share = share_text(fraction, config.get("data_sample", "first"))
    where = f"{data} ({', '.join(games)})" if games else str(data)
    return f"{where}, {share}"


def behaviour_scores(name: str, data: Path, fraction: float,
                     games: list[str] | None = None) -> MethodScores:
    """The dataset's own episodes (the first ``fraction`` of each game's data), normalized
    (``data.game.behaviour_score``: which episodes count)."""
    from scaledql.data.sampling.sampler import fraction_of
    from scaledql.data.store.dataset import open_dataset
    from scaledql.data.store.game import behaviour_score

    dataset = open_dataset(data, games)
    row = []
    for game in dataset.games:
        g = dataset.game(game)
        steps = fraction_of(g, fraction)["transitions"] if fraction < 1 else None
        score = behaviour_score(g, steps=steps).score
        row.append(float("nan") if score is None else score)
    share = share_text(fraction)
    return MethodScores(name, list(dataset.games), np.array([row]),
                        data=f"{data}, {share} (its own episodes)")


def method_scores(method: dict[str, Any], suite: str) -> MethodScores:
    name = method.get("name")
    if not isinstance(name, str) or not name:
        raise UserError("every [[method]] needs a name")
    if "runs" in method:
        runs = sorted(Path(p) for p in glob.glob(method["runs"]) if Path(p).is_dir())
        if not runs:
            raise UserError(f"method {name!r}: no run folder matches {method['runs']}")
        reading = method.get("reading", "final")
        if reading not in READINGS:
            raise UserError(f"method {name!r}: reading must be one of {', '.join(READINGS)}")
        return runs_scores(name, runs, suite, method.get("step"), reading)
    if "behaviour" in method:
        return behaviour_scores(name, Path(method["behaviour"]), float(method.get("fraction", 1)),
                                method.get("games"))
    raise UserError(f"method {name!r}: give runs = GLOB or behaviour = DATA")
