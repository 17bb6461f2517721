"""Reports from run folders: Markdown plus PNG plots (matplotlib), written atomically.

``write_report(OUT)`` reads what the pipeline left in ``OUT`` — ``summary.json`` (agent, dataset
and last-DQN evaluations, timings, configs), ``agent/metrics.jsonl`` and ``agent/eval/*.json`` —
and writes ``OUT/report.md`` with ``per_game.png``, ``aggregates.png``, ``learning_curves.png`` and
``performance_profile.png`` beside it. It never trains or plays: re-running it is cheap.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from scaledql.errors import UserError
from scaledql.evaluate import EvalReport, plot_performance_profile
from scaledql.suites.scores import has_reference, normalize

ROWS = (("agent", "Scaled QL (offline, multi-game)"),
        ("behaviour_dataset", "Behaviour policy (dataset episodes)"),
        ("behaviour_last_dqn", "Last online-DQN snapshot"))


def _game_normalized(entry: dict, game: str) -> float | None:
    """A game's normalized mean: over *all* dataset episodes when the entry has that mean (the
    dataset row's ``returns`` are an equal-size draw per game, for the aggregate only)."""
    mean_all = entry.get("mean_all_episodes")
    if mean_all is None or not has_reference("minatar", game):
        return entry["normalized"]
    return float(normalize("minatar", game, mean_all))


def _renormalized(report: dict) -> dict:
    """The same report with normalized scores and aggregates recomputed from its raw returns."""
    fresh = EvalReport(report.get("suite", "minatar"),
                       {g: v["returns"] for g, v in report["games"].items()},
                       report.get("seed", 0), report.get("epsilon", 0.0)).to_dict()
    for g, v in report["games"].items():  # keep extra per-game fields (e.g. dataset counts)
        fresh["games"][g] = {**v, **fresh["games"][g]}
    return fresh


def _matrix(report: dict, suite: str) -> np.ndarray:
    return EvalReport(suite, {g: v["returns"] for g, v in report["games"].items()},
                      report.get("seed", 0), report.get("epsilon", 0.0)).normalized_matrix()


def _save(fig, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def plot_per_game(summary: dict, path: Path) -> None:
    games = summary["games"]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(ROWS)
    for i, (key, label) in enumerate(ROWS):
        values = [_game_normalized(summary[key]["games"][g], g) or 0.0 for g in games]
        ax.bar(np.arange(len(games)) + (i - 1) * width, values, width, label=label)
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(1, color="grey", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(games)), games)
    ax.set_ylabel("normalized score (0 random, 1 reference DQN)")
    ax.set_title("Per-game normalized score")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_aggregates(summary: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(10, 3))
    for ax, metric in zip(axes, ("iqm", "median", "mean"), strict=True):
        labels, points, errs = [], [], []
        for key, label in ROWS:
            agg = summary[key]["aggregate"]
            if metric not in agg:
                continue
            lo, hi = agg[f"{metric}_ci"]
            labels.append(label.split(" (")[0])
            points.append(agg[metric])
            errs.append([agg[metric] - lo, hi - agg[metric]])
        y = np.arange(len(labels))
        ax.errorbar(points, y, xerr=np.array(errs).T if errs else None, fmt="o", capsize=4)
        ax.set_yticks(y, labels if metric == "iqm" else [""] * len(labels))
        ax.set_title(f"{metric.upper()} (95% CI)")
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_learning_curves(run: Path, summary: dict, path: Path) -> None:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    train_rows = [r for r in rows if "td_loss" in r]
    evals = sorted(run.glob("eval/step_*.json"))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    if evals:
        steps, iqm, lo, hi = [], [], [], []
        for f in evals:
            agg = json.loads(f.read_text())["aggregate"]
            if "iqm" in agg:
                steps.append(int(f.stem.split("_")[1]))
                iqm.append(agg["iqm"])
                lo.append(agg["iqm_ci"][0])
                hi.append(agg["iqm_ci"][1])
        left.plot(steps, iqm, marker="o", label="Scaled QL (IQM, 95% CI)")
        left.fill_between(steps, lo, hi, alpha=0.2)
        behaviour = summary["behaviour_dataset"]["aggregate"]
        if "iqm" in behaviour:
            left.axhline(behaviour["iqm"], color="C1", ls="--", label="behaviour (dataset) IQM")
        left.set_xlabel("gradient steps")
        left.set_ylabel("normalized IQM")
        left.legend(fontsize=8)
        left.set_title("Evaluation in the games")
    if train_rows:
        steps = [r["step"] for r in train_rows]
        right.plot(steps, [r["td_loss"] for r in train_rows], label="TD (cross-entropy)")
        right.plot(steps, [r["cql_loss"] for r in train_rows], label="CQL term")
        right.set_xlabel("gradient steps")
        right.set_yscale("log")
        right.legend(fontsize=8)
        right.set_title("Training losses")
    fig.tight_layout()
    _save(fig, path)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def write_report(out: Path) -> Path:
    """Write ``out/report.md`` and its plots from the pipeline's outputs in ``out``."""
    out = Path(out)
    summary_file = out / "summary.json"
    if not summary_file.is_file():
        raise UserError(f"{summary_file} does not exist: run `scaledql demo --out {out}` first")
    summary = json.loads(summary_file.read_text())
    for key, _ in ROWS:  # normalize afresh: the reference-score tables may have changed
        summary[key] = _renormalized(summary[key])
    run = out / "agent"
    games = summary["games"]
    plot_per_game(summary, out / "per_game.png")
    plot_aggregates(summary, out / "aggregates.png")
    plot_learning_curves(run, summary, out / "learning_curves.png")
    profiles = {label.split(" (")[0]: _matrix(summary[key], "minatar") for key, label in ROWS}
    profiles = {k: v for k, v in profiles.items() if v.size}
    if profiles:
        plot_performance_profile(profiles, out / "performance_profile.png", seed=summary["seed"])

    params = json.loads((run / "params.json").read_text())
    tc = summary["train_config"]
    agent_cfg = tc.get("learner") or tc["agent"]  # "agent": summaries written before 0.2
    lines = [
        "# scaledql demo — Scaled Q-Learning on the five MinAtar games",
        "",
        f"Seed **{summary['seed']}**{' (quick mode: a smoke test, not a result)' if summary['quick'] else ''}. "
        f"Wall time {summary['wall_seconds'] / 60:.1f} min "
        f"(collect {summary['timings_seconds']['collect'] / 60:.1f}, train "
        f"{summary['timings_seconds']['train'] / 60:.1f}, evaluate "
        f"{summary['timings_seconds']['evaluate'] / 60:.1f}).",
        "",
        "Reproduce: `./run scaledql demo"
        + (" --quick" if summary["quick"] else "")
        + f" --seed {summary['seed']} --out {out}` (data already in `{out}/data` is reused).",
        "",
        "## Aggregate normalized score",
        "",
        "Normalized = (return − random) / (reference − random), with this project's MinAtar "
        "reference scores (`src/scaledql/suites/scores.py`: a CPU-budget reference, barely above "
        "random on asterix and seaquest, where normalized values are large and noisy). "
        "IQM/median/mean with 95% stratified-bootstrap CIs (rliable) over [episodes × games]; "
        "the dataset row draws the same number of episodes from every game (as many as the game "
        "with the fewest finished episodes has), the per-game table uses all of them.",
        "",
        "| policy | IQM | 95% CI | median | mean |",
        "|---|---|---|---|---|",
    ]
    for key, label in ROWS:
        agg = summary[key]["aggregate"]
        if "iqm" in agg:
            ci = f"[{agg['iqm_ci'][0]:.3f}, {agg['iqm_ci'][1]:.3f}]"
            lines.append(f"| {label} | **{agg['iqm']:.3f}** | {ci} | {agg['median']:.3f} | "
                         f"{agg['mean']:.3f} |")
        else:
            lines.append(f"| {label} | — | — | — | — |")
    agent_iqm = summary["agent"]["aggregate"].get("iqm")
    data_iqm = summary["behaviour_dataset"]["aggregate"].get("iqm")
    if agent_iqm is not None and data_iqm is not None:
        verdict = "above" if agent_iqm > data_iqm else "NOT above"
        lines += ["", f"The offline agent's IQM is **{verdict}** the behaviour policy's "
                      f"({agent_iqm:.3f} vs {data_iqm:.3f})."]
    lines += ["", "![aggregates](aggregates.png)", "", "## Per game", "",
              "| game | agent return | dataset return (all episodes) | last DQN return | "
              "agent normalized | dataset normalized | last DQN normalized |",
              "|---|---|---|---|---|---|---|"]
    for g in games:
        a, d, s = (summary[k]["games"][g] for k, _ in ROWS)
        lines.append(f"| {g} | {a['mean']:.2f} | {_fmt(d.get('mean_all_episodes'), 2)} "
                     f"({d.get('episodes_in_dataset')} ep.) | {s['mean']:.2f} | "
                     f"{_fmt(a['normalized'])} | {_fmt(_game_normalized(d, g))} | "
                     f"{_fmt(s['normalized'])} |")
    lines += ["", "![per game](per_game.png)", "", "## Learning curves", "",
              "![learning curves](learning_curves.png)", "", "## Performance profile", "",
              "![performance profile](performance_profile.png)", "", "## Setup", "",
              f"- Data: {summary['config']['collect_steps']:,} steps per game from an online DQN "
              "trained from scratch, every transition logged (exploration included), as the DQN "
              "Replay Dataset was made.",
              f"- Learner: {agent_cfg['encoder']} ×{agent_cfg['width']} encoder, feature dim "
              f"{agent_cfg['feature_dim']}, feature normalization {agent_cfg['feature_norm']}, "
              f"{agent_cfg['loss']} loss, CQL α {agent_cfg['cql_alpha']}, batch "
              f"{agent_cfg['batch_size']}, n-step {agent_cfg.get('n_step', tc.get('n_step'))}, {tc['steps']:,} gradient steps; "
              f"{params['total']:,} parameters (encoder {params['encoder']:,}, projection "
              f"{params['projection']:,}, heads {params['heads']:,}).",
              f"- Evaluation: {summary['config']['eval_episodes']} episodes per game, ε = 0.001, "
              "sticky actions 0.1.",
              "- Full configs: `summary.json`, `agent/config.json`; logs: `agent/metrics.csv`, "
              "`agent/tensorboard/`."]
    path = out / "report.md"
    tmp = path.with_name("report.md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path
