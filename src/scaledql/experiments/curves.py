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
from scaledql.experiments.claims import MethodScores, iqm_ci
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
        if s.step is not None:  # an earlier point of another method's runs: shown in its curve
            continue
        try:
            out[name] = {"curve": method_curve(s), "warnings": method_warnings(s)}
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
