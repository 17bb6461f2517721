"""A run's budget in the units that say whether it can learn: passes over each game's data.

Offline Q-learning needs tens of passes over its data; behaviour cloning learns in under one,
so a comparison at one step count is fair only when the passes are stated. A game's passes are
``steps × batch × (its share of the batch) ÷ its transitions`` (the sampler gives every game an
equal share, ``data/sampling/sampler.py``); target copies are ``steps ÷ target_update_period`` for
learners with a target network. Torch-free: reports compute it from a saved ``config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scaledql.errors import UserError
from scaledql.run_folder import budget_file, config_file, is_run


def run_budget(config: dict[str, Any], transitions: dict[str, int]) -> dict[str, Any]:
    """config: a run's ``config.json`` (``RunConfig.to_dict()``); transitions: per game, those
    the run samples from (after ``data_fraction``). → ``RUN/budget.json``'s content."""
    steps = int(config["steps"])
    learner = config.get("learner") or {}
    batch = int(learner.get("batch_size", 0))
    share = 1.0 / max(1, len(transitions))
    games = {g: {"transitions": int(n), "share": share,
                 "passes": steps * batch * share / n if n else 0.0}
             for g, n in transitions.items()}
    passes = [v["passes"] for v in games.values()] or [0.0]
    period = learner.get("target_update_period")
    return {"steps": steps, "batch_size": batch, "games": games,
            "passes_min": min(passes), "passes_max": max(passes),
            "target_update_period": period,
            "target_copies": steps // int(period) if period else None}


def budget_at(budget: dict[str, Any], step: int) -> dict[str, Any]:
    """The same run's budget had it stopped at ``step`` (an evaluation before its last)."""
    scale = step / budget["steps"] if budget["steps"] else 0.0
    games = {g: {**v, "passes": v["passes"] * scale} for g, v in budget["games"].items()}
    period = budget.get("target_update_period")
    return {**budget, "steps": step, "games": games, "passes_min": budget["passes_min"] * scale,
            "passes_max": budget["passes_max"] * scale,
            "target_copies": step // int(period) if period else None}


def passes_text(budget: dict[str, Any]) -> str:
    """'10.2' or '9.8–12.1' (the range over games)."""
    lo, hi = budget["passes_min"], budget["passes_max"]
    return f"{lo:.3g}" if abs(hi - lo) <= 0.005 * max(hi, 1e-9) else f"{lo:.3g}–{hi:.3g}"


def budget_line(budget: dict[str, Any]) -> str:
    """One line for ``train``'s start: steps × batch, passes per game, target copies."""
    per_game = ", ".join(f"{g} {v['passes']:.3g}" for g, v in budget["games"].items())
    line = (f"{budget['steps']:,} steps × batch {budget['batch_size']}; passes over each game's "
            f"data: {per_game}")
    if budget["target_copies"] is not None:
        line += (f"; {budget['target_copies']:,} target copies (every "
                 f"{budget['target_update_period']:,} steps)")
    return line


def run_budget_of(run: Path) -> dict[str, Any] | None:
    """A run's ``budget.json`` (written at the start of training); for runs written before it,
    the same numbers computed from its ``config.json`` and its store; None for online runs or
    when the store is gone."""
    saved = budget_file(run)
    if saved.is_file():
        return json.loads(saved.read_text())
    config = json.loads(config_file(run).read_text()) if is_run(run) else {}
    if not config.get("data") or "steps" not in config:
        return None
    try:
        from scaledql.data.sampling.sampler import fraction_of
        from scaledql.data.store.dataset import open_dataset

        dataset = open_dataset(Path(config["data"]), config.get("games"))
        fraction = float(config.get("data_fraction", 1.0))
        return run_budget(config, {g: fraction_of(dataset.game(g), fraction)["transitions"]
                                   for g in (config.get("games") or dataset.games)})
    except UserError:
        return None
