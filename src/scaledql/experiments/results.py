"""A study's results folder: the claims report (Markdown + JSON), per-run JSON, commands, machine.

``results/<study>-<suite>-<budget>/`` is small enough to commit and is rewritten after every
finished job, so an interrupted study still leaves its finished parts:

- ``report.md`` — the claims table (``claims.claims_markdown``), every method's IQM with its 95%
  CI, runs, seeds, parameters and data, and the commands that made them;
- ``report.json`` — the same numbers;
- ``runs/<job>.json`` — per finished run: its config, its final evaluation (raw returns per
  game, normalized by today's reference scores), parameter counts and wall time;
- ``commands.md`` — every command the study ran, with its exit status and wall time.
"""

from __future__ import annotations

import calendar
import time
from pathlib import Path
from typing import Any

from scaledql.atomic_files import atomic_write_json, atomic_write_text
from scaledql.errors import UserError
from scaledql.experiments.claims import claims_markdown, iqm_ci, judge_study
from scaledql.experiments.curves import (
    curves_and_warnings,
    curves_markdown,
    plot_learning_curves,
    plot_validation,
)
from scaledql.experiments.method_scores import final_eval, method_scores
from scaledql.experiments.study import Study, job_records
from scaledql.run_folder import CONFIG, config_file, read_json, read_machines, read_params


def default_results(study: Study) -> Path:
    return Path("results") / f"{study.name}-{study.suite}-{study.budget}"


def dropped_methods(study: Study, results: Path) -> dict[str, str]:
    """The methods ``results/report.json`` scores that the runs and data here cannot score now
    (name → why): rewriting the report would lose them (``study --report-only`` refuses)."""
    try:
        had = {m.get("name") for m in read_json(results / "report.json").get("methods", [])}
    except (UserError, AttributeError):  # no report yet (or not one): nothing to lose
        return {}
    dropped = {}
    for method in study.methods:
        if method["name"] in had:
            try:
                method_scores(method, study.suite)
            except UserError as exc:
                dropped[method["name"]] = str(exc)
    return dropped


def _run_folders(study: Study) -> list[tuple[str, Path]]:
    """Every finished run folder of the study (a job's own folder or those below it)."""
    out = []
    for job in study.jobs:
        for config in sorted(job.out.rglob(CONFIG)) if job.out.is_dir() else []:
            if final_eval(config.parent) is not None:
                rel = config.parent.relative_to(study.runs).as_posix()
                out.append((rel, config.parent))
    return out


def _renormalized(evaluation: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run's final evaluation with each game's ``normalized`` recomputed from its mean raw
    return by today's reference scores (the run wrote those of its own day), and without the
    run's own episode-level ``aggregate``: the report's aggregates are over runs."""
    from scaledql.suites.scores import has_reference, normalize

    if not evaluation:
        return evaluation
    out = {k: v for k, v in evaluation.items() if k != "aggregate"}
    suite = out.get("suite")
    games = {}
    for game, result in (out.get("games") or {}).items():
        result = dict(result)
        if isinstance(result.get("mean"), (int, float)) and has_reference(suite, game):
            result["normalized"] = float(normalize(suite, game, float(result["mean"])))
        games[game] = result
    out["games"] = games
    return out


def write_results(study: Study, results: Path, machine: str, claims: bool = True
                  ) -> dict[str, Any] | None:
    """(Re)write the results folder from what the study's runs hold now; ``claims=False``
    writes only the per-run JSON and the commands (cheap: after every finished job)."""
    records = job_records(study.runs)
    for rel, run in _run_folders(study):
        wall = sum(r["seconds"] for r in records if (r["exit"] == 0 or r.get("interrupted"))
                   and (rel == r["job"] or rel.startswith(r["job"] + "/")))
        atomic_write_json(results / "runs" / f"{rel.replace('/', '__')}.json", {
            "run": rel, "config": read_json(config_file(run)), "params": read_params(run),
            "final_eval": _renormalized(final_eval(run)), "job_wall_seconds": round(wall, 1),
            "machines": read_machines(run)})
    atomic_write_text(results / "commands.md", _commands_md(records))
    if not claims:
        return None
    scores, missing, judged = judge_study(study.methods, study.claims, study.suite)
    series = {m["name"]: m["series"] for m in study.methods if m.get("series")}
    methods = []
    for name, s in scores.items():
        iqm = iqm_ci(s.matrix)
        methods.append({"name": name, "runs": len(s.matrix), "seeds": s.seeds, "games": s.games,
                        "params": s.params, "encoder_params": s.encoder_params, "iqm": iqm,
                        "data": s.data, "budget": s.budget, "series": series.get(name),
                        "per_game": {g: float(s.matrix[:, i].mean())
                                     for i, g in enumerate(s.games)}})
    per_method = curves_and_warnings(scores)
    for m in methods:
        m.update(per_method.get(m["name"], {"curve": [], "warnings": [], "validation": []}))
    wall = sum(r["seconds"] for r in records)
    elapsed = elapsed_seconds(records)
    written = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    report = {"study": study.name, "suite": study.suite, "budget": study.budget,
              "runs_folder": study.runs.as_posix(), "machine": machine,
              "run_machines": run_machines(run for _, run in _run_folders(study)),
              "job_seconds": round(wall, 1), "elapsed_seconds": round(elapsed, 1),
              "written": written, "methods": methods, "methods_without_data": missing,
              "claims": judged}
    atomic_write_json(results / "report.json", report)
    _plots(report, results)
    atomic_write_text(results / "report.md", _report_md(study, report))
    return report


def _plots(report: dict[str, Any], results: Path) -> None:
    """``methods.png``: every method's IQM; ``claims.png``: P(a > b) of every claim's pairs;
    ``capacity.png``: IQM against parameter count per series — drawn by rliable's plot_utils
    (``reports.plots``)."""
    from scaledql.reports.plots import (
        method_colors,
        plot_capacity,
        plot_improvement,
        plot_intervals,
    )

    if report["methods"]:
        estimates = {m["name"]: {"iqm": m["iqm"][0], "iqm_ci": list(m["iqm"][1:])}
                     for m in report["methods"]}
        plot_intervals(estimates, ["iqm"], results / "methods.png", method_colors(list(estimates)))
    curves = capacity_curves(report["methods"])
    if curves:
        plot_capacity(curves, results / "capacity.png")
    plot_learning_curves({m["name"]: m for m in report["methods"]}, results / "curves.png")
    plot_validation({m["name"]: m for m in report["methods"]}, results / "validation.png")
    pairs = {(r["a"], r["b"]): {"p": r["p_improvement"][0], "ci": list(r["p_improvement"][1:]),
                                "verdict": r["verdict"]}
             for c in report["claims"] for r in c["pairs"] if "p_improvement" in r}
    if pairs:
        names = list(dict.fromkeys(name for pair in pairs for name in pair))
        plot_improvement(pairs, results / "claims.png", method_colors(names))


def elapsed_seconds(records: list[dict[str, Any]]) -> float:
    """Wall time during which at least one job ran: the union of the jobs' intervals
    (``finished_at`` − ``seconds`` … ``finished_at``), so time between sessions and jobs side by
    side are not counted twice."""
    intervals = sorted((end - r["seconds"], end) for r in records for end in [
        calendar.timegm(time.strptime(r["finished_at"], "%Y-%m-%dT%H:%M:%SZ"))])
    total, reach = 0.0, float("-inf")
    for start, end in intervals:
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def capacity_curves(methods: list[dict[str, Any]]
                    ) -> dict[str, list[tuple[int, str, tuple[float, float, float], int]]]:
    """series → its methods as (parameters of the whole network, name, IQM with CI, runs),
    fewest parameters first; methods without a series or without a parameter count are left
    out."""
    curves: dict[str, list[tuple[int, str, tuple[float, float, float], int]]] = {}
    for m in methods:
        if m.get("series") and m.get("params"):
            curves.setdefault(m["series"], []).append(
                (int(m["params"]), m["name"], tuple(m["iqm"]), int(m["runs"])))
    return {name: sorted(points) for name, points in curves.items()}


def _capacity_md(methods: list[dict[str, Any]]) -> list[str]:
    curves = capacity_curves(methods)
    if not curves:
        return []
    lines = ["", "## Capacity", "", "![IQM against parameter count](capacity.png)", "",
             "Each method of a series is one point: its IQM over runs × games (95% CI) against "
             "the parameters of the whole network (encoder, shared layers and one head per "
             "game).", "", "| series | method | parameters | runs | IQM [95% CI] |",
             "|---|---|---|---|---|"]
    for series, points in curves.items():
        for params, name, iqm, runs in points:
            lines.append(f"| {series} | {name} | {params:,} | {runs} | "
                         f"{iqm[0]:.3f} [{iqm[1]:.3f}, {iqm[2]:.3f}] |")
    return lines


def _commands_md(records: list[dict[str, Any]]) -> str:
    lines = ["# Commands run, in order", "", "| finished (UTC) | job | exit | seconds | threads | "
             "command |", "|---|---|---|---|---|---|"]
    for r in records:
        status = f"{r['exit']} (interrupted)" if r.get("interrupted") else r["exit"]
        lines.append(f"| {r['finished_at']} | {r['job']} | {status} | {r['seconds']:.0f} | "
                     f"{r['threads']} | `{r['command']}` |")
    return "\n".join(lines) + "\n"


def _per_game_md(methods: list[dict[str, Any]]) -> list[str]:
    """Each method's normalized score per game, the mean over its runs."""
    games = list(dict.fromkeys(g for m in methods for g in m.get("per_game", {})))
    if not games:
        return []
    lines = ["", "## Per game", "", "Normalized score per game, the mean over each method's runs "
             "(raw returns: `runs/*.json`).", "", "| method | " + " | ".join(games) + " |",
             "|---|" + "---|" * len(games)]
    for m in methods:
        cells = [f"{m['per_game'][g]:.3f}" if g in m.get("per_game", {}) else "–" for g in games]
        lines.append(f"| {m['name']} | " + " | ".join(cells) + " |")
    return lines


def run_machines(runs) -> list[dict[str, Any]]:
    """Which machines and precisions trained the runs: ``{"machine", "precision", "runs"}`` per
    distinct pair (a run resumed elsewhere counts under each), most runs first; runs from before
    ``machines.json`` was kept count as ``"not recorded"``."""
    from collections import Counter

    from scaledql.device import describe_machine

    counts: Counter[tuple[str, str]] = Counter()
    for run in runs:
        records = read_machines(run)
        pairs = {(describe_machine(record=r), str(r.get("precision", "?"))) for r in records}
        counts.update(pairs or {("not recorded", "?")})
    return [{"machine": m, "precision": p, "runs": n}
            for (m, p), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _machines_line(report: dict[str, Any]) -> str:
    trained = report.get("run_machines") or []
    if not trained:
        return ""
    return " Runs trained on: " + "; ".join(
        f"{t['machine']}, {t['precision']} ({t['runs']} run{'s' * (t['runs'] != 1)})"
        if t["machine"] != "not recorded" else
        f"not recorded ({t['runs']} run{'s' * (t['runs'] != 1)}, from before runs kept it)"
        for t in trained) + "."


def _report_md(study: Study, report: dict[str, Any]) -> str:
    def ci(t: list[float] | tuple[float, ...]) -> str:
        return f"{t[0]:.3f} [{t[1]:.3f}, {t[2]:.3f}]"

    lines = [f"# Study `{study.name}` — budget `{study.budget}`", "",
             study.description, "",
             f"Reproduce: `scaledql study {study.name} --budget {study.budget}` (finished runs are "
             f"skipped; every command it ran is in [commands.md](commands.md)). This report's "
             f"machine: {report['machine']}.{_machines_line(report)} Wall time so far: "
             f"{report['elapsed_seconds'] / 60:.1f} min "
             f"with at least one job running ({report['job_seconds'] / 60:.1f} min summed over "
             f"jobs, which may run side by side). Written {report['written']}.", "",
             "## Claims", "", "![P(a > b) per compared pair](claims.png)", "",
             "Verdicts from the numbers only: P(a > b) is rliable's probability of improvement "
             "(Mann-Whitney over runs, averaged over games) with a 95% stratified-bootstrap CI "
             "over runs; **held** when the CI lies above 0.5, **not held** when it lies below "
             "(for *matches*: not held only when below), **unclear** otherwise. Two guards: a "
             "point CI (per game every run of one arm above every run of the other) decides only "
             "when that ordering is unlikely by chance (≤ 0.05; two runs a side on one game: one "
             "in six), and when b's IQM CI lies wholly above a's the pair is not held with 3+ "
             "runs a side, at best unclear with fewer; a pair's note says when either applied. "
             "A claim holds when all its pairs do and is not held when any pair is not; while "
             "some pairs have no runs yet it is *incomplete*. Scores: each run's final "
             "evaluation, normalized per game (0 random, 1 reference; per-run JSON holds the raw "
             "returns).", ""]
    lines += claims_markdown(report["claims"])
    lines += ["", "## Methods", "", "![IQM per method](methods.png)", "",
              "Budget: passes over each game's data (steps × the game's share of the batch ÷ "
              "its transitions; mean, and the range over games and runs) and target-network "
              "copies.", "",
              "| method | runs | seeds | parameters (encoder / all) | "
              "IQM [95% CI] | budget | data |", "|---|---|---|---|---|---|---|"]
    for m in report["methods"]:
        params = " / ".join(f"{p:,}" if p else "–" for p in (m["encoder_params"], m["params"]))
        lines.append(f"| {m['name']} | {m['runs']} | {m['seeds'] or '–'} | {params} | "
                     f"{ci(m['iqm'])} | {m.get('budget') or '–'} | {m['data']} |")
    for name, why in report["methods_without_data"].items():
        lines.append(f"| {name} | 0 | – | – | not yet: {why} | |")
    lines += _per_game_md(report["methods"])
    lines += _capacity_md(report["methods"])
    lines += curves_markdown({m["name"]: m for m in report["methods"]})
    return "\n".join(lines) + "\n"
