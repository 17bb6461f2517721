"""A report over runs: IQM, median, mean, optimality gap, performance profiles and probability of
improvement with stratified-bootstrap CIs over runs × games (rliable), for any run folders.

``report_runs(runs, out, labels)`` reads the runs (``reports.runs``), groups them into methods,
scores every method's ``[seeds, games]`` matrix of final normalized scores (``stats``) and
writes ``OUT/report.md``, ``OUT/report.json`` (every number) and the plots (``reports.plots``):
``intervals.png``, ``per_game.png``, ``performance_profile.png``, ``improvement.png`` (two or
more methods) and ``learning_curves.png``. Everything is read and computed before anything is
written, each file atomically; the same runs give the same bytes (seeded bootstrap).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scaledql.atomic_files import atomic_write_json, atomic_write_text
from scaledql.data.store.dataset import data_identity, open_dataset
from scaledql.errors import UserError
from scaledql.reports import plots
from scaledql.reports.runs import (
    Method,
    RunResult,
    config_labels,
    curve_matrices,
    expand,
    methods_of,
    read_run,
)
from scaledql.run_folder import CONFIG
from scaledql.stats import (
    ALL_METRICS,
    IMPROVEMENT_REPS,
    METRIC_NAMES,
    REPS,
    improvement_probabilities,
    interval_estimates,
    per_game_estimates,
    performance_profiles,
    profile_taus,
)


def _labelled_runs(runs: Sequence[Path], labels: Mapping[Path, str],
                   group_by: Sequence[str] | None) -> tuple[list[RunResult], list[str]]:
    """Every run behind the arguments, with its method label: an argument's own label (before
    the arm or learner when the argument holds several runs), else the arm of a fine-tuning
    experiment, else ``config_labels``."""
    found: list[tuple[RunResult, Path, bool]] = []
    seen: dict[Path, Path] = {}
    for arg in runs:
        if not arg.exists():
            raise UserError(f"{arg} does not exist")
        inside = expand(arg)
        if not inside:
            raise UserError(f"{arg} holds no run folder")
        for path, arm in inside:
            key = path.resolve()
            if key in seen:
                raise UserError(f"{path} is given twice (also through {seen[key]})")
            seen[key] = arg
            found.append((read_run(path, arm), arg, len(inside) > 1 or arm is not None))
    results = [r for r, _, _ in found]
    base = config_labels(results, group_by)
    out = []
    for (run, arg, held), own in zip(found, base, strict=True):
        sub = own if group_by or run.label is None else run.label
        given = labels.get(arg)
        out.append(sub if given is None else f"{given} {sub}" if held else given)
    return results, out


def _fingerprints(method: Method) -> list[dict[str, str]]:
    """The data of a method's runs: path (as its config gives it) and content fingerprint
    (``data.store.data_identity`` of the games it trained on, as the checkpoint records)."""
    out: dict[tuple[str, str], str] = {}
    for run in method.runs:
        path, games = run.config.get("data"), run.config.get("games")
        if not isinstance(path, str):
            out[("(none: online)", "")] = "—"
            continue
        key = (path, json.dumps(games))
        if key in out:
            continue
        try:
            dataset = open_dataset(Path(path), games if isinstance(games, list) else None)
            out[key] = data_identity([dataset.game(g) for g in dataset.games])
        except UserError as exc:
            out[key] = f"not readable here ({' '.join(str(exc).split())[:80]})"
    return [{"path": p, "fingerprint": f} for (p, _), f in out.items()]


def _steps_label(runs: Sequence[RunResult]) -> str:
    """What a run's steps count: online fine-tuning runs (a ``schedule``) count environment
    steps, the offline ones gradient steps."""
    online = {"schedule" in r.config for r in runs}
    return {frozenset({True}): "environment steps", frozenset({False}): "gradient steps"}.get(
        frozenset(online), "steps (offline runs: gradient steps; online: environment steps)")


def _ci(agg: Mapping[str, Any], key: str) -> str:
    lo, hi = agg[f"{key}_ci"]
    return f"{agg[key]:.3f} [{lo:.3f}, {hi:.3f}]"


def report_runs(runs: Sequence[Path | str], out: Path | str,
                labels: Mapping[Path | str, str] | None = None, *,
                group_by: Sequence[str] | None = None, common_games: bool = False,
                allow_unfinished: bool = False, reps: int = REPS,
                improvement_reps: int = IMPROVEMENT_REPS, seed: int = 0,
                command: str | None = None) -> dict[str, Any]:
    """Report over ``runs`` (run folders, fine-tuning experiments, demo folders) into ``out``.

    ``labels``: argument → method label (arguments with one label form one method, their
    seeds its rows); ``group_by``: config keys that name methods instead (``algo``,
    ``learner.encoder``); ``common_games``: compare methods scored on different games on the
    ones they share; ``allow_unfinished``: score a run whose last evaluation is before its
    final step. Returns what ``OUT/report.json`` holds, with ``files`` added.
    """
    paths = [Path(r) for r in runs]
    if not paths:
        raise UserError("no run folders given")
    out = Path(out)
    for own in ("summary.json", "finetune.json", CONFIG):
        if (out / own).is_file():  # its report.md and plots would be overwritten
            raise UserError(f"--out {out} holds a demo, an experiment or a run ({own}); "
                            "choose a folder of its own")
    given = {Path(k): v for k, v in (labels or {}).items()}
    stray = [str(k) for k in given if k not in paths]
    if stray:
        raise UserError(f"labels name folders that are not among the runs: {', '.join(stray)}")
    results, names = _labelled_runs(paths, given, group_by)
    late = [r for r in results if not r.finished]
    if late and not allow_unfinished:
        r = late[0]
        raise UserError(f"{r.path}: its last evaluation is at step {r.final.step} of "
                        f"{r.target_steps} (unfinished); finish it or pass --allow-unfinished")
    suite, games, methods = methods_of(results, names, common_games)
    matrices = {m.label: m.matrix for m in methods}
    aggregates = interval_estimates(matrices, ALL_METRICS, reps, seed)
    per_game = per_game_estimates(matrices, reps, seed)
    improvement = improvement_probabilities(matrices, improvement_reps, seed)
    taus = profile_taus(matrices)
    profiles, bands = performance_profiles(matrices, taus, reps, seed)
    curves = {}
    for m in methods:
        points = [(step, interval_estimates({m.label: x}, ("iqm",), reps, seed)[m.label])
                  for step, x in curve_matrices(m, games)]
        curves[m.label] = [{"step": s, "iqm": a["iqm"], "iqm_ci": a["iqm_ci"]} for s, a in points]
    report: dict[str, Any] = {
        "suite": suite, "games": games, "seed": seed, "reps": reps,
        "improvement_reps": improvement_reps, "command": command,
        "methods": {m.label: {
            "runs": [str(r.path) for r in m.runs], "seeds": m.seeds,
            "learners": sorted({r.algo for r in m.runs}),
            "final_steps": sorted({r.final.step for r in m.runs}),
            "eval_episodes": min(r.final.episodes for r in m.runs),
            "data": _fingerprints(m), "scores": m.matrix.tolist(),
            "aggregates": aggregates[m.label],
            "per_game": {g: {"mean": float(per_game[m.label][0][i]),
                             "ci": [float(per_game[m.label][1][i]), float(per_game[m.label][2][i])]}
                         for i, g in enumerate(games)},
            "curve": curves[m.label]} for m in methods},
        "probability_of_improvement": [{"x": x, "y": y, **v} for (x, y), v in improvement.items()],
        "performance_profile": {"taus": taus.tolist(),
                                "profiles": {k: v.tolist() for k, v in profiles.items()},
                                "bands": {k: v.tolist() for k, v in bands.items()}},
        "unscored_games": sorted({g for r in results for g in r.unscored}),
        "unfinished": [str(r.path) for r in late],
    }
    text = _markdown(report)
    colors = plots.method_colors(list(matrices))
    plots.plot_intervals(aggregates, ALL_METRICS, out / "intervals.png", colors)
    plots.plot_per_game(per_game, games, out / "per_game.png", colors)
    plots.plot_profiles(profiles, bands, taus, out / "performance_profile.png", colors)
    files = ["report.md", "report.json", "intervals.png", "per_game.png",
             "performance_profile.png"]
    if improvement:
        plots.plot_improvement(improvement, out / "improvement.png", colors)
        files.append("improvement.png")
    if any(curves.values()):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4))
        plots.plot_curves({k: ([p["step"] for p in c], [p["iqm"] for p in c],
                               [p["iqm_ci"][0] for p in c], [p["iqm_ci"][1] for p in c])
                           for k, c in curves.items()}, ax, colors,
                          xlabel=_steps_label(results))
        plots.save(fig, out / "learning_curves.png")
        files.append("learning_curves.png")
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", text)
    return {**report, "files": [str(out / f) for f in files]}


def _markdown(r: dict[str, Any]) -> str:
    methods = r["methods"]
    single = [m for m, v in methods.items() if len(v["seeds"]) == 1]
    lines = [f"# Report over runs: {len(methods)} method(s) on {len(r['games'])} {r['suite']} "
             "game(s)", "",
             f"Command: `{r['command']}`" if r["command"] else
             "Written by `scaledql.reports.report_runs`.", "",
             f"Games: {', '.join(r['games'])}.", "",
             "A run's score on a game is the normalized mean return of its final evaluation "
             "(0 random, 1 the suite's reference: human on Atari, the project's reference DQN on "
             "MinAtar). Per method, the matrix [seeds × games] is aggregated by rliable with 95% "
             f"stratified-bootstrap intervals ({r['reps']:,} replications, seed {r['seed']}), "
             "resampling seeds within each game: the intervals show the spread over seeds, not "
             "over evaluation episodes. Optimality gap: how far below 1 the scores fall (lower "
             "is better).", ""]
    if single:
        lines += [f"One seed only ({', '.join(single)}): nothing to resample, so the interval "
                  "is the point. Run more seeds for intervals.", ""]
    lines += ["## Methods", "", "| method | learner | runs | seeds | final step | evaluation "
              "episodes per game | data (fingerprint) |", "|---|---|---|---|---|---|---|"]
    for name, m in methods.items():
        data = "; ".join(f"`{d['path']}` ({d['fingerprint'][:12]})" for d in m["data"])
        lines.append(f"| {name} | {', '.join(m['learners'])} | {len(m['runs'])} | "
                     f"{', '.join(map(str, m['seeds']))} | "
                     f"{', '.join(f'{s:,}' for s in m['final_steps'])} | {m['eval_episodes']} | "
                     f"{data} |")
    lines += ["", "## Aggregates", "", "![interval estimates](intervals.png)", ""]
    for key in ("iqm", "median", "mean", "optimality_gap"):
        lines += [f"### {METRIC_NAMES[key]}", "", f"| method | {METRIC_NAMES[key]} [95% CI] |",
                  "|---|---|"]
        lines += [f"| {name} | {_ci(m['aggregates'], key)} |" for name, m in methods.items()]
        lines.append("")
    if r["probability_of_improvement"]:
        lines += ["## Probability of improvement", "",
                  "P(X > Y): the probability that a run of X scores above a run of Y on a game, "
                  f"averaged over games ({r['improvement_reps']:,} replications); 0.5 is a tie.",
                  "", "| X | Y | P(X > Y) [95% CI] |", "|---|---|---|"]
        lines += [f"| {p['x']} | {p['y']} | {p['p']:.3f} [{p['ci'][0]:.3f}, {p['ci'][1]:.3f}] |"
                  for p in r["probability_of_improvement"]]
        lines += ["", "![probability of improvement](improvement.png)", ""]
    lines += ["## Performance profile", "",
              "![performance profile](performance_profile.png)", "", "## Per game", "",
              "Mean normalized score over seeds [95% CI].", "",
              "| method | " + " | ".join(r["games"]) + " |", "|---|" + "---|" * len(r["games"])]
    for name, m in methods.items():
        cells = [f"{v['mean']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]"
                 for v in m["per_game"].values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "![per game](per_game.png)", ""]
    if any(m["curve"] for m in methods.values()):
        lines += ["## Learning curves", "", "IQM over seeds × games at the evaluation steps "
                  "every run of a method reached.", "", "![learning curves](learning_curves.png)",
                  ""]
    notes = []
    if r["unscored_games"]:
        notes.append(f"Left out (no reference scores to normalize with): "
                     f"{', '.join(r['unscored_games'])}.")
    if r["unfinished"]:
        notes.append("Scored at their last evaluation before their final step (unfinished): "
                     + ", ".join(f"`{p}`" for p in r["unfinished"]) + ".")
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    lines += ["## Runs", ""]
    for name, m in methods.items():
        lines.append(f"- {name}: " + ", ".join(f"`{p}`" for p in m["runs"]))
    lines += ["", "Every number: `report.json`."]
    return "\n".join(lines) + "\n"
