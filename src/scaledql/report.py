"""Reports from run folders: Markdown plus PNG plots (matplotlib), written atomically.

``write_report(OUT)`` reads what the pipeline left in ``OUT`` — ``summary.json`` (agent, dataset
and last-DQN evaluations, timings, configs), ``agent/metrics.jsonl`` and ``agent/eval/*.json`` —
and writes ``OUT/report.md`` with ``per_game.png``, ``aggregates.png``, ``learning_curves.png`` and
``performance_profile.png`` beside it. It never trains or plays: re-running it is cheap.

Everything is read and checked, and the Markdown composed, before anything is written: a damaged
or incomplete folder is one ``UserError`` naming the file, and leaves the old report as it was.
Each file is replaced atomically.
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
from scaledql.io import atomic_output, atomic_write_text
from scaledql.suites.scores import has_reference, normalize

ROWS = (("agent", "Scaled QL (offline, multi-game)"),
        ("behaviour_dataset", "Behaviour policy (dataset episodes)"),
        ("behaviour_last_dqn", "Last online-DQN snapshot"))
BASELINE_LABELS = {"dt": "Decision Transformer (offline, multi-game)",
                   "bc": "Behaviour cloning (offline, multi-game)"}


def _rows(summary: dict) -> list[tuple[str, str, dict]]:
    """(key, label, evaluation report) of every policy in the summary, the learners first."""
    rows = [("agent", ROWS[0][1], summary["agent"])]
    for algo, report in (summary.get("baselines") or {}).items():
        rows.append((algo, BASELINE_LABELS.get(algo, algo), report))
    rows += [(key, label, summary[key]) for key, label in ROWS[1:]]
    return rows


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
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)


def plot_per_game(summary: dict, path: Path) -> None:
    games = summary["games"]
    rows = _rows(summary)
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(rows)
    for i, (_, label, report) in enumerate(rows):
        values = [_game_normalized(report["games"][g], g) or 0.0 for g in games]
        ax.bar(np.arange(len(games)) + (i - (len(rows) - 1) / 2) * width, values, width,
               label=label, color=f"C{i}")
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(1, color="grey", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(games)), games)
    ax.set_ylabel("normalized score (0 random, 1 reference DQN)")
    ax.set_title("Per-game normalized score")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_aggregates(summary: dict, path: Path) -> None:
    """IQM / median / mean with 95% CIs of every policy, drawn by rliable's plot_utils."""
    from rliable import plot_utils

    points, intervals = {}, {}
    for _, label, report in _rows(summary):
        agg = report["aggregate"]
        if "iqm" not in agg:
            continue
        name = label.split(" (")[0]
        points[name] = np.array([agg[m] for m in ("iqm", "median", "mean")])
        intervals[name] = np.array([[agg[f"{m}_ci"][i] for m in ("iqm", "median", "mean")]
                                    for i in (0, 1)])
    if not points:
        return
    colors = {name: f"C{i}" for i, name in enumerate(points)}
    fig, _ = plot_utils.plot_interval_estimates(
        points, intervals, metric_names=["IQM", "Median", "Mean"], algorithms=list(points),
        colors=colors, xlabel="Normalized score (95% CI)", xlabel_y_coordinate=-0.25,
        subfigure_width=3.6, row_height=0.5, max_ticks=4)
    fig.tight_layout()
    _save(fig, path)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist (an incomplete demo folder?)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not valid JSON ({str(exc)[:100]})") from None


def _run_logs(run: Path) -> tuple[list[dict], list[tuple[int, dict]]]:
    """The agent run's training rows (with a TD loss) and (step, aggregate) of its evaluations."""
    path = run / "metrics.jsonl"
    try:
        lines = path.read_text().splitlines()
        rows = [json.loads(line) for line in lines if line]
    except FileNotFoundError:
        raise UserError(f"{path} does not exist (an incomplete demo folder?)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not valid JSON lines ({str(exc)[:100]})") from None
    train_rows = [r for r in rows if isinstance(r, dict) and "td_loss" in r]
    evals = []
    for f in sorted(run.glob("eval/step_*.json")):
        agg = _read_json(f)
        if not isinstance(agg, dict) or not isinstance(agg.get("aggregate"), dict):
            raise UserError(f"{f}: not an evaluation report")
        evals.append((int(f.stem.split("_")[1]), agg["aggregate"]))
    return train_rows, evals


def plot_learning_curves(logs: tuple[list[dict], list[tuple[int, dict]]], summary: dict,
                         path: Path) -> None:
    train_rows, evals = logs
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    if evals:
        steps, iqm, lo, hi = [], [], [], []
        for step, agg in evals:
            if "iqm" in agg:
                steps.append(step)
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
    summary = _read_json(summary_file)
    run = out / "agent"
    try:  # read and compose everything first: a bad folder writes nothing
        if not isinstance(summary, dict):
            raise TypeError("not a JSON object")
        for key, _ in ROWS:  # normalize afresh: the reference-score tables may have changed
            summary[key] = _renormalized(summary[key])
        summary["baselines"] = {k: _renormalized(v)
                                for k, v in (summary.get("baselines") or {}).items()}
        logs = _run_logs(run)
        params = _read_json(run / "params.json")
        text = _markdown(out, summary, params)
        profiles = {label.split(" (")[0]: _matrix(report, "minatar")
                    for _, label, report in _rows(summary)}
        profiles = {k: v for k, v in profiles.items() if v.size}
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise UserError(f"{summary_file}: not a complete demo summary ({type(exc).__name__}: "
                        f"{str(exc)[:100]})") from None
    plot_per_game(summary, out / "per_game.png")
    plot_aggregates(summary, out / "aggregates.png")
    plot_learning_curves(logs, summary, out / "learning_curves.png")
    if profiles:
        plot_performance_profile(profiles, out / "performance_profile.png", seed=summary["seed"])
    path = out / "report.md"
    atomic_write_text(path, text)
    return path


def _markdown(out: Path, summary: dict, params: dict) -> str:
    """The report's Markdown (plots are referenced by name)."""
    games = summary["games"]
    tc = summary["train_config"]
    agent_cfg = tc.get("learner") or tc["agent"]  # "agent": summaries written before 0.2
    lines = [
        "# scaledql demo — Scaled Q-Learning on the five MinAtar games",
        "",
        f"Seed **{summary['seed']}**{' (quick mode: a smoke test, not a result)' if summary['quick'] else ''}. "
        f"Wall time {summary['wall_seconds'] / 60:.1f} min "
        "(" + ", ".join(f"{k.replace('_', ' ')} {v / 60:.1f}"
                        for k, v in summary["timings_seconds"].items()) + ").",
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
    for _, label, report in _rows(summary):
        agg = report["aggregate"]
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
        agent_ci = summary["agent"]["aggregate"]["iqm_ci"]
        for algo, report in summary["baselines"].items():
            other = report["aggregate"].get("iqm")
            if other is None:
                continue
            ci = report["aggregate"]["iqm_ci"]
            overlap = agent_ci[0] <= ci[1] and ci[0] <= agent_ci[1]
            word = "above" if agent_iqm > other else "NOT above"
            name = BASELINE_LABELS.get(algo, algo).split(" (")[0]
            lines.append(f"Scaled QL's IQM is **{word}** {name}'s ({agent_iqm:.3f} vs {other:.3f}); "
                         + ("their 95% intervals overlap, so this one seed cannot separate them."
                            if overlap else "their 95% intervals do not overlap (over episodes "
                            "of one seed: not yet evidence over seeds)."))
    lines += ["", "![aggregates](aggregates.png)", "", "## Per game", "",
              "| game | " + " | ".join(label.split(" (")[0] for _, label, _ in _rows(summary))
              + " |", "|---|" + "---|" * len(_rows(summary))]
    for g in games:
        cells = []
        for key, _, report in _rows(summary):
            entry = report["games"][g]
            if key == "behaviour_dataset":
                cells.append(f"{_fmt(entry.get('mean_all_episodes'), 2)} "
                             f"({_fmt(_game_normalized(entry, g))}; "
                             f"{entry.get('episodes_in_dataset')} ep.)")
            else:
                cells.append(f"{entry['mean']:.2f} ({_fmt(entry['normalized'])})")
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: mean return (normalized score).", ""]
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
              f"- Machine: {summary.get('machine', 'not recorded')}. The same command repeats "
              "these numbers byte for byte on this machine; another CPU make or a GPU rounds "
              "differently, so the behaviour DQN learns other data and every number changes "
              "(within the spread over seeds, which one seed does not show).",
              "- Full configs: `summary.json`, `agent/config.json`; logs: `agent/metrics.csv`, "
              "`agent/tensorboard/`."]
    for algo, bc in (summary.get("baseline_configs") or {}).items():
        learner = bc["learner"]
        knobs = ", ".join(f"{k} {learner[k]}" for k in ("encoder", "d_model", "num_layers", "context",
                                                      "batch_size", "lr") if k in learner)
        lines.append(f"- {BASELINE_LABELS.get(algo, algo).split(' (')[0]} (`--algo {algo}`): "
                     f"{bc['steps']:,} gradient steps, {knobs}; config `{algo}/config.json`.")
    return "\n".join(lines) + "\n"
