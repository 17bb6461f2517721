"""A run's learning diagnostics: curves (``RUN/diagnostics.png``) and a short health check.

Reads the rows that ``training/diagnostics.py`` and the loss log write to the run's metrics log
(``run_folder.read_rows``); what the curves mean and what healthy and unhealthy runs look like:
``docs/diagnostics.md``. The checks are rules of thumb from our own runs, each stated with its
threshold, not proofs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from scaledql.reports.plots import save, step_axis
from scaledql.run_folder import diagnostics_file, read_rows

EPS_DOMINATED = 0.5  # share of a part's weights whose Adam step ε dominates
CQL_FLAT = 0.95  # CQL term ≥ this share of ln|A|: Q is still flat over actions
ONE_ACTION = 0.95  # evaluation: one action played this often
DR3_COS = 0.98  # cos(φ(s), φ(s')) this high: consecutive states are one feature vector
SRANK_SHARE = 0.1  # srank below this share of its maximum: the features collapsed
OVERFIT = 1.1  # held-out TD loss this far above its lowest while the training one is not
LEARNED = 0.1  # a game's normalized score this high is learning, whatever its CQL term says


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float)
           and math.isfinite(r[key])]
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def _keys(rows: Sequence[dict[str, Any]], prefix: str) -> list[str]:
    return sorted({k for r in rows for k in r if k.startswith(prefix)})


def health(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per warning sign in the last train and eval rows; [] when none shows."""
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    lines = []
    if train:
        last = train[-1]
        for key in _keys([last], "eps_dominated/"):
            if last[key] >= EPS_DOMINATED:
                lines.append(f"Adam's ε dominates the steps of {last[key]:.0%} of the "
                             f"{key.split('/', 1)[1]} weights at step {last['step']:,} (their "
                             f"steps ≈ lr·m/ε, SGD-like; docs/diagnostics.md says when that "
                             f"matters)")
        scores = _scores(evals[-1]) if evals else {}
        for key in _keys([last], "cql_loss/"):
            game = key.split("/", 1)[1]
            flat = last.get(f"cql_uniform/{game}")
            if flat and last[key] >= CQL_FLAT * flat:
                lines.append(_flat_q_line(game, last[key], flat, last["step"], scores))
    if evals:
        last = evals[-1]
        for key in _keys([last], ""):
            if key.endswith("/top_action_share") and last[key] >= ONE_ACTION:
                lines.append(f"{key.split('/')[0]}: the policy plays one action in "
                             f"{last[key]:.0%} of its steps at step {last['step']:,}")
        if last.get("dr3_cos", 0) >= DR3_COS:
            lines.append(f"features of consecutive states have cosine {last['dr3_cos']:.3f} "
                         f"(DR3 co-adaptation) at step {last['step']:,}")
        held = [r["heldout/td_loss"] for r in evals if "heldout/td_loss" in r]
        seen = [r["seen/td_loss"] for r in evals if "seen/td_loss" in r]
        if len(held) >= 3 and held[-1] > OVERFIT * min(held) and seen[-1] <= min(seen) * OVERFIT:
            lines.append(f"held-out TD loss {held[-1]:.3f} is {held[-1] / min(held):.2f}× its "
                         f"lowest ({min(held):.3f}) while the training batches' is at its low "
                         f"({seen[-1]:.3f}) at step {last['step']:,}: over-fitting")
        if "srank" in last and last["srank"] < SRANK_SHARE * last.get("srank_of", math.inf):
            lines.append(f"srank {last['srank']:.0f} of {last['srank_of']:.0f}: the features "
                         f"span few directions at step {last['step']:,}")
    return lines


def _scores(row: dict[str, Any]) -> dict[str, float]:
    """game → normalized score of an evaluation row."""
    return {k.split("/")[0]: float(v) for k, v in row.items()
            if k.endswith("/normalized") and isinstance(v, int | float) and math.isfinite(v)}


def _flat_q_line(game: str, cql: float, flat: float, step: int, scores: dict[str, float]
                 ) -> str:
    """The flat-Q sign of one game; "no learning yet" only where its score does not say
    otherwise (a game scoring above LEARNED, or the run's best, has learned something)."""
    head = f"{game}: CQL term {cql:.3f} ≈ ln|A| = {flat:.3f} at step {step:,}"
    score = scores.get(game)
    if score is not None and (score >= LEARNED or (score == max(scores.values()) and score > 0)):
        best = " (the run's best game)" if score == max(scores.values()) else ""
        return (f"{head}: Q differs little over its actions, yet the game scores "
                f"{score:.3f}{best}: small gaps between actions decide its play "
                "(docs/diagnostics.md)")
    return (f"{head}: Q is still flat over its actions (no learning yet"
            + (f": it scores {score:.3f}" if score is not None else
               ", unless the game's score says otherwise") + "; docs/diagnostics.md)")


_PANELS = [  # (title, key prefixes or keys, log scale, the rows they are in)
    ("loss", ["loss", "td_loss"], False, "train"),
    ("CQL term per game (dashed: ln|A|)", ["cql_loss/"], False, "train"),
    ("Q at data actions, spread over states, action gap", ["mean_q", "q_spread", "action_gap"],
     False, "train"),
    ("share of weights with ε-dominated Adam steps", ["eps_dominated/"], False, "train"),
    ("update-to-weight ratio ‖Δw‖/‖w‖", ["update_ratio/"], True, "train"),
    ("feature norm before normalization", ["feature_norm"], False, "train"),
    ("srank of features before normalization (evaluation)", ["srank"], False, "eval"),
    ("dead ReLU units of the projection (evaluation)", ["dead_units"], False, "eval"),
    ("validation split: TD and CQL terms, held-out vs training batches (evaluation)",
     ["heldout/td_loss", "seen/td_loss", "heldout/cql_loss", "seen/cql_loss"], False, "eval"),
    ("DR3: φ(s)·φ(s′) and its cosine (evaluation)", ["dr3_dot", "dr3_cos"], False, "eval"),
    ("normalized score (evaluation)", ["iqm", "/normalized"], False, "eval"),
    ("top action share per game (evaluation)", ["/top_action_share"], False, "eval"),
]


def _matching(rows: Sequence[dict[str, Any]], pattern: str) -> list[str]:
    if pattern.endswith("/"):
        return _keys(rows, pattern)
    if pattern.startswith("/"):
        return sorted({k for r in rows for k in r if k.endswith(pattern)})
    return [pattern] if any(pattern in r for r in rows) else []


def why_empty(rows: Sequence[dict[str, Any]], source: str, config: dict[str, Any]) -> str:
    """Why a panel of ``source`` rows ("train", "eval") has nothing to draw: the run has no
    such row yet (shorter than its log interval, no evaluation yet), or its learner does not
    log what the panel shows."""
    last = max((int(r.get("step", 0)) for r in rows), default=0)
    if not any(r.get("kind") == source for r in rows):
        if source == "train":
            every = config.get("log_every")
            return ("no training row yet: rows are logged every "
                    + (f"{every:,} steps, and this run stopped at step {last:,}"
                       if isinstance(every, int) else "log_every steps"))
        every = config.get("eval_every")
        when = (f"every {every:,} steps and at the end" if isinstance(every, int) and every
                else "at the end")
        return f"no evaluation yet: this run evaluates {when} (it is at step {last:,})"
    algo = config.get("algo")
    return f"not logged by this learner{f' ({algo})' if algo else ''}"


def plot_diagnostics(rows: Sequence[dict[str, Any]], path: Path, title: str,
                     config: dict[str, Any] | None = None) -> Path:
    """Every diagnostic curve of one run in one figure; a panel without data says why
    (``why_empty``; ``config``: the run's, for its intervals and learner). Legends sit below
    their panels, off the curves."""
    fig, axes = plt.subplots(6, 2, figsize=(12, 26))
    last_step = max((r.get("step", 0) for r in rows), default=0)
    for ax, (name, patterns, log, source) in zip(axes.flat, _PANELS, strict=True):
        drawn = 0
        for pattern in patterns:
            for key in _matching(rows, pattern):
                xs, ys = _series(rows, key)
                if not xs:
                    continue
                marker = "o" if len(xs) < 3 else None  # one evaluation is a point, visibly
                (line,) = ax.plot(xs, ys, label=key, marker=marker)
                drawn += 1
                game = key.split("/", 1)[1] if key.startswith("cql_loss/") else None
                if game is not None:
                    fx, fy = _series(rows, f"cql_uniform/{game}")
                    if fx:
                        ax.plot(fx, fy, linestyle="--", color=line.get_color(), linewidth=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("gradient step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.set_xlim(0, max(1, last_step) * 1.03)  # one time axis: panels line up
        step_axis(ax)
        if drawn:
            if log:
                ax.set_yscale("log")
            else:
                ax.ticklabel_format(axis="y", useOffset=False)
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                      ncol=min(3, drawn), frameon=False)
        else:
            ax.text(0.5, 0.5, why_empty(rows, source, config or {}), ha="center",
                    va="center", transform=ax.transAxes, fontsize=9, color="gray", wrap=True)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.98), h_pad=3.0)
    return save(fig, path)


def diagnose_run(run: Path, out: Path | None = None) -> tuple[Path, list[str]]:
    """Plot ``run``'s diagnostics (to ``out``, default ``RUN/diagnostics.png``) and check its
    health; returns (the plot's path, warning lines)."""
    from scaledql.errors import UserError
    from scaledql.run_folder import read_config

    rows = read_rows(run)
    try:
        config = read_config(run)
    except UserError:  # a metrics log without its config: the panels say less
        config = {}
    path = plot_diagnostics(rows, out or diagnostics_file(run), str(run), config)
    return path, health(rows)
