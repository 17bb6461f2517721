"""What a study report shows besides final scores: each method's learning curve against passes
over its data, and the warning signs its runs' diagnostics raise (``reports/diagnostics.py``).

A verdict from final scores alone can measure under-training; the curve says whether a method
was still improving at the end of its budget, and the diagnostics whether it was learning at all.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from scaledql.errors import UserError
from scaledql.experiments.claims import iqm_ci
from scaledql.experiments.method_scores import MethodScores
from scaledql.training.budget import run_budget_of


def method_curve(scores: MethodScores) -> list[dict[str, Any]]:
    """[{step, passes, iqm: (point, lo, hi), runs}] at every evaluation step all of the method's
    runs reached (IQM over its [runs, games] matrix at that step, 95% CI over runs and games);
    [] for a dataset's own episodes."""
    from scaledql.reports.runs import Method, curve_matrices, read_run

    if not scores.runs:
        return []
    runs = [read_run(Path(p)) for p in scores.runs]
    budgets = [b for b in (run_budget_of(Path(p)) for p in scores.runs) if b]
    # passes per gradient step (mean over games), the same for every run of a method
    per_step = (sum(sum(v["passes"] for v in b["games"].values()) / len(b["games"]) / b["steps"]
                    for b in budgets) / len(budgets)) if budgets else None
    method = Method(scores.name, runs, scores.seeds, scores.matrix)
    return [{"step": step, "passes": step * per_step if per_step else None,
             "iqm": iqm_ci(matrix), "runs": len(matrix)}
            for step, matrix in curve_matrices(method, scores.games)]


VALIDATION_KEYS = ("heldout/td_loss", "seen/td_loss", "heldout/cql_loss", "seen/cql_loss")


def method_validation(scores: MethodScores) -> list[dict[str, Any]]:
    """[{step, <key>: mean over runs}] of the validation split's terms (``VALIDATION_KEYS``) at
    every evaluation step all of the method's runs logged them; [] for runs without a split."""
    from scaledql.run_folder import read_rows

    per_run = []
    for run in scores.runs:
        rows = {r["step"]: r for r in read_rows(Path(run))
                if r.get("kind") == "eval" and "heldout/td_loss" in r}
        per_run.append(rows)
    if not per_run or not all(per_run):
        return []
    steps = sorted(set.intersection(*(set(rows) for rows in per_run)))
    return [{"step": step, **{k: sum(rows[step].get(k, float("nan")) for rows in per_run)
                              / len(per_run) for k in VALIDATION_KEYS}}
            for step in steps]


def method_warnings(scores: MethodScores) -> list[str]:
    """The warning signs of the method's runs' last logged rows, each once, with how many of its
    runs show it."""
    from scaledql.reports.diagnostics import health
    from scaledql.run_folder import read_rows

    first: dict[str, str] = {}
    counts: dict[str, int] = {}
    for run in scores.runs:
        for line in health(read_rows(Path(run))):
            # runs differ in the numbers (shares, steps), not in the sign: group by the words
            key = re.sub(r"[0-9][0-9.,]*", "#", line)
            first.setdefault(key, line)
            counts[key] = counts.get(key, 0) + 1
    n = len(scores.runs)
    return [f"{first[k]} ({c} of {n} runs; the first shown)" if n > 1 else first[k]
            for k, c in counts.items()]


def curves_and_warnings(scores: dict[str, MethodScores]) -> dict[str, dict[str, Any]]:
    """Per method: its curve and its warnings (methods whose runs cannot be read are left out)."""
    out = {}
    for name, s in scores.items():
        if s.step is not None or s.reading == "auc":  # another reading of another method's
            continue  # runs (a point on its curve, its area): its curve is shown once, there
        try:
            out[name] = {"curve": method_curve(s), "warnings": method_warnings(s),
                         "validation": method_validation(s)}
        except UserError:
            continue
    return out


def curves_markdown(per_method: dict[str, dict[str, Any]]) -> list[str]:
    """The report's "Learning curves" and "Diagnostics" sections."""
    rows = [(n, v["curve"]) for n, v in per_method.items() if len(v["curve"]) > 1]
    lines: list[str] = []
    if rows:
        lines += ["", "## Learning curves", "", "![IQM against passes](curves.png)", "",
                  "IQM [95% CI] at each evaluation, by passes over each game's data (mean over "
                  "games). A curve still rising at its last point was stopped while learning.",
                  "", "| method | evaluations (passes: IQM [95% CI]) |", "|---|---|"]
        for name, curve in rows:
            cells = " · ".join(
                f"{p['passes']:.3g}: {p['iqm'][0]:.3f} [{p['iqm'][1]:.3f}, {p['iqm'][2]:.3f}]"
                if p["passes"] is not None else f"step {p['step']:,}: {p['iqm'][0]:.3f}"
                for p in curve)
            lines.append(f"| {name} | {cells} |")
    held = [(n, v["validation"]) for n, v in per_method.items() if v.get("validation")]
    if held:
        lines += ["", "## Validation split", "", "![held-out and training TD loss](validation.png)",
                  "", "Mean over a method's runs of the TD term on its held-out episodes and, "
                  "beside it, on fixed training batches (`--validation`; docs/diagnostics.md): "
                  "held-out rising while training falls is over-fitting, both high and flat "
                  "under-fitting.", "", "| method | evaluations (step: held-out / training TD) |",
                  "|---|---|"]
        for name, points in held:
            cells = " · ".join(f"{p['step']:,}: {p['heldout/td_loss']:.3f} / "
                               f"{p['seen/td_loss']:.3f}" for p in points)
            lines.append(f"| {name} | {cells} |")
    warned = [(n, v["warnings"]) for n, v in per_method.items() if v["warnings"]]
    lines += ["", "## Diagnostics", "",
              "Warning signs in each method's runs at their last logged step "
              "(`scaledql diagnose RUN` plots every curve; docs/diagnostics.md says what they "
              "mean)." if warned else "No method's runs show a warning sign at their last "
              "logged step (docs/diagnostics.md)."]
    for name, warnings in warned:
        lines += ["", f"- **{name}**: " + "; ".join(warnings)]
    return lines


def plot_learning_curves(per_method: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """IQM (95% CI) against passes, one rliable curve per method with two or more evaluations."""
    from scaledql.reports.plots import plot_curves, plt, save

    curves = {n: tuple(zip(*[(p["passes"], *p["iqm"]) for p in v["curve"]], strict=True))
              for n, v in per_method.items()
              if len(v["curve"]) > 1 and all(p["passes"] is not None for p in v["curve"])}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    plot_curves(curves, ax, xlabel="passes over each game's data")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save(fig, path)


def plot_validation(per_method: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Held-out (solid) and training-batch (dashed) TD loss against gradient steps, one color
    per method with a validation split."""
    from scaledql.reports.plots import method_colors, plt, save

    held = {n: v["validation"] for n, v in per_method.items() if len(v.get("validation") or []) > 1}
    if not held:
        return None
    colors = method_colors(list(held))
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, points in held.items():
        steps = [p["step"] for p in points]
        ax.plot(steps, [p["heldout/td_loss"] for p in points], color=colors[name], label=name)
        ax.plot(steps, [p["seen/td_loss"] for p in points], color=colors[name], linestyle="--")
    ax.set_xlabel("gradient step")
    ax.set_ylabel("TD loss (solid: held-out episodes, dashed: training batches)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save(fig, path)
