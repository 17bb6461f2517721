"""The demo folder's report: Markdown plus PNG plots drawn by rliable, written atomically.

``write_report(OUT)`` reads what the pipeline left in ``OUT`` — ``summary.json`` (agent,
baselines, dataset and last-DQN evaluations, timings, configs) and the run folder ``agent/`` (its
metrics log and evaluations, read with ``run_folder``) — and writes ``OUT/report.md`` with
``aggregates.png``, ``per_game.png``, ``learning_curves.png`` and ``performance_profile.png``
beside it. It never trains or plays: re-running it is cheap.

One seed: every policy is scored over its evaluation *episodes* × games (the same statistics as
a report over runs, ``stats``, with episodes as rows). Each policy is bootstrapped with the seed
of its own evaluation, so its numbers are the ones its evaluation report holds.

Everything is read and checked, and the Markdown composed, before anything is written: a damaged
or incomplete folder is one ``UserError`` naming the file, and leaves the old report as it was.
Each file is replaced atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scaledql.atomic_files import atomic_write_text
from scaledql.errors import UserError
from scaledql.evaluate import EvalReport
from scaledql.reports import plots
from scaledql.run_folder import eval_files, metrics_file, params_file, read_rows
from scaledql.stats import (
    ALL_METRICS,
    interval_estimates,
    per_game_estimates,
    performance_profiles,
    profile_taus,
)
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


def _short(label: str) -> str:
    return label.split(" (")[0]


def _scored(report: dict) -> tuple[dict, np.ndarray]:
    """The report with its per-game normalized scores recomputed from its raw returns (the
    reference tables may have changed since), and its normalized [episodes, games] matrix."""
    evaluation = EvalReport(report.get("suite", "minatar"),
                            {g: v["returns"] for g, v in report["games"].items()},
                            report.get("seed", 0), report.get("epsilon", 0.0))
    # keep extra per-game fields (the dataset row's counts)
    games = {g: {**report["games"][g], **fresh} for g, fresh in evaluation.per_game().items()}
    return {**report, "games": games}, evaluation.normalized_matrix()


def _estimates(summary: dict, matrices: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """(policy → aggregates, policy → per-game means), each policy bootstrapped with its own
    evaluation's seed."""
    seeds = {_short(label): report.get("seed", 0) for _, label, report in _rows(summary)}
    aggregates, per_game = {}, {}
    for name, matrix in matrices.items():
        aggregates.update(interval_estimates({name: matrix}, ALL_METRICS, seed=seeds[name]))
        per_game.update(per_game_estimates({name: matrix}, seed=seeds[name]))
    return aggregates, per_game


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist (an incomplete demo folder?)") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not valid JSON ({str(exc)[:100]})") from None


def _evaluations(run: Path) -> list[tuple[int, dict]]:
    """(step, aggregate) of each of a run's evaluations."""
    evals = []
    for step, f in eval_files(run).items():
        agg = _read_json(f)
        if not isinstance(agg, dict) or not isinstance(agg.get("aggregate"), dict):
            raise UserError(f"{f}: not an evaluation report")
        evals.append((step, agg["aggregate"]))
    return evals


def _run_logs(run: Path) -> tuple[list[dict], list[tuple[int, dict]]]:
    """The agent run's training rows (with a TD loss) and (step, aggregate) of its evaluations."""
    if not metrics_file(run).is_file():
        raise UserError(f"{metrics_file(run)} does not exist (an incomplete demo folder?)")
    return [r for r in read_rows(run) if "td_loss" in r], _evaluations(run)


def plot_learning_curves(curves: dict[str, list[tuple[int, dict]]], train_rows: list[dict],
                         behaviour_iqm: float | None, path: Path,
                         colors: dict[str, tuple] | None = None) -> None:
    """Above: each learner's IQM at its evaluations (rliable's curve; CIs over episodes) —
    Scaled QL's every ``eval_every`` steps, BC's and DT's at their end — beside the behaviour
    policy's. Below: Scaled QL's TD loss and CQL term, each on its own linear axis (the CQL
    term beside ln|A|, its value for a Q flat over the actions). Legends below their panels."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(11, 8))
    grid = fig.add_gridspec(2, 2, height_ratios=(1.25, 1), hspace=0.75, wspace=0.25)
    top = fig.add_subplot(grid[0, :])
    scored = {name: [(s, a) for s, a in evals if "iqm" in a] for name, evals in curves.items()}
    scored = {name: pts for name, pts in scored.items() if pts}
    if scored:
        plots.plot_curves({name: ([s for s, _ in pts], [a["iqm"] for _, a in pts],
                                  [a["iqm_ci"][0] for _, a in pts],
                                  [a["iqm_ci"][1] for _, a in pts])
                           for name, pts in scored.items()}, top, colors=colors,
                          one_point="evaluated at its end, step {x:,.0f}")
        if behaviour_iqm is not None:
            top.axhline(behaviour_iqm, color="grey", ls="--", label="behaviour policy (dataset)")
        top.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2,
                   frameon=False)
        top.set_title("Evaluation in the games (IQM, 95% CI over episodes)", fontsize=10)
        top.set_xlim(0, 1.03 * max(s for pts in scored.values() for s, _ in pts))
        plots.step_axis(top)
    for col, (key, title) in enumerate((("td_loss", "Scaled QL: TD loss (cross-entropy)"),
                                        ("cql_loss", "Scaled QL: CQL term"))):
        ax = fig.add_subplot(grid[1, col])
        steps = [r["step"] for r in train_rows if key in r]
        ax.plot(steps, [r[key] for r in train_rows if key in r], label=key.replace("_", " "),
                marker="o" if len(steps) < 3 else None)
        if key == "cql_loss":
            flat = [(r["step"], np.mean([v for k, v in r.items() if k.startswith("cql_uniform/")]))
                    for r in train_rows if any(k.startswith("cql_uniform/") for k in r)]
            if flat:
                ax.plot(*zip(*flat, strict=True), ls="--", color="grey",
                        label="ln|A|, mean over games (Q flat over actions)")
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22),
                      frameon=False)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.set_xlabel("gradient steps", fontsize=9)
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        plots.step_axis(ax)
    plots.save(fig, path)


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
        matrices = {}
        for key, label, report in _rows(summary):
            fresh, matrix = _scored(report)
            if key in (summary.get("baselines") or {}):
                summary["baselines"][key] = fresh
            else:
                summary[key] = fresh
            if matrix.size:
                matrices[_short(label)] = matrix
        games = [g for g in summary["agent"]["games"] if has_reference("minatar", g)]
        aggregates, per_game = _estimates(summary, matrices)
        logs = _run_logs(run)
        curves = {_short(ROWS[0][1]): logs[1]}
        for algo in summary.get("baselines") or {}:
            if (out / algo).is_dir():
                curves[_short(BASELINE_LABELS.get(algo, algo))] = _evaluations(out / algo)
        params = _read_json(params_file(run))
        text = _markdown(out, summary, params, aggregates)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise UserError(f"{summary_file}: not a complete demo summary ({type(exc).__name__}: "
                        f"{str(exc)[:100]})") from None
    colors = plots.method_colors(list(matrices))
    if matrices:
        plots.plot_intervals(aggregates, ALL_METRICS, out / "aggregates.png", colors)
        plots.plot_per_game(per_game, games, out / "per_game.png", colors)
        taus = profile_taus(matrices)
        profiles, bands = performance_profiles(matrices, taus, seed=summary["seed"])
        plots.plot_profiles(profiles, bands, taus, out / "performance_profile.png", colors,
                            rows="episodes")
    plot_learning_curves(curves, logs[0],
                         (aggregates.get(_short(ROWS[1][1])) or {}).get("iqm"),
                         out / "learning_curves.png", colors)
    path = out / "report.md"
    atomic_write_text(path, text)
    return path


def _budget_note(run: Path) -> str:
    """' (10.2 passes over each game's data, 40 target copies)' from the run's budget."""
    from scaledql.training.budget import passes_text, run_budget_of

    budget = run_budget_of(run)
    if not budget:
        return ""
    copies = budget.get("target_copies")
    return (f" ({passes_text(budget)} passes over each game's data"
            + (f", {copies:,} target copies" if copies is not None else "") + ")")


def _markdown(out: Path, summary: dict, params: dict, aggregates: dict[str, dict]) -> str:
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
        + (" --full" if summary["config"].get("full") else "")
        + f" --seed {summary['seed']} --out {out}` (data already in `{out}/data` is reused).",
        "",
        "## Aggregate normalized score",
        "",
        "Normalized = (return − random) / (reference − random), with this project's MinAtar "
        "reference scores (`src/scaledql/suites/scores.py`: per game, an online DQN at the end "
        "of a 1M-step run, so 1 is a trained DQN; the demo's "
        f"{summary['config']['collect_steps'] // 1000}k-step data are far below it). "
        "IQM/median/mean and optimality gap (how far below 1, lower is better) with 95% "
        "stratified-bootstrap CIs (rliable) over [episodes × games]; "
        "the dataset row draws the same number of episodes from every game (as many as the game "
        "with the fewest finished episodes has), the per-game table uses all of them.",
        "",
        "| policy | IQM | 95% CI | median | mean | optimality gap |",
        "|---|---|---|---|---|---|",
    ]
    for _, label, _ in _rows(summary):
        agg = aggregates.get(_short(label))
        if agg:
            ci = f"[{agg['iqm_ci'][0]:.3f}, {agg['iqm_ci'][1]:.3f}]"
            lines.append(f"| {label} | **{agg['iqm']:.3f}** | {ci} | {agg['median']:.3f} | "
                         f"{agg['mean']:.3f} | {agg['optimality_gap']:.3f} |")
        else:
            lines.append(f"| {label} | — | — | — | — | — |")
    agent = aggregates.get(_short(ROWS[0][1]))
    data = aggregates.get(_short(ROWS[1][1]))
    if agent is not None and data is not None:
        agent_iqm, data_iqm = agent["iqm"], data["iqm"]
        verdict = "above" if agent_iqm > data_iqm else "NOT above"
        lines += ["", f"The offline agent's IQM is **{verdict}** the behaviour policy's "
                      f"({agent_iqm:.3f} vs {data_iqm:.3f})."]
        agent_ci = agent["iqm_ci"]
        for algo in summary["baselines"]:
            name = _short(BASELINE_LABELS.get(algo, algo))
            if name not in aggregates:
                continue
            other, ci = aggregates[name]["iqm"], aggregates[name]["iqm_ci"]
            overlap = agent_ci[0] <= ci[1] and ci[0] <= agent_ci[1]
            word = "above" if agent_iqm > other else "NOT above"
            lines.append(f"Scaled QL's IQM is **{word}** {name}'s ({agent_iqm:.3f} vs {other:.3f}); "
                         + ("their 95% intervals overlap, so this one seed cannot separate them."
                            if overlap else "their 95% intervals do not overlap (over episodes "
                            "of one seed: not yet evidence over seeds)."))
    lines += ["", "![aggregates](aggregates.png)", "", "## Per game", "",
              "| game | " + " | ".join(_short(label) for _, label, _ in _rows(summary))
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
    lines += ["", "Cells: mean return (normalized score). The plot: each game's mean normalized "
              "score with a 95% CI over episodes (the dataset row: its equal-size draw).", ""]
    lines += ["", "![per game](per_game.png)", "", "## Learning curves", "",
              "![learning curves](learning_curves.png)", "", "## Performance profile", "",
              "![performance profile](performance_profile.png)", "", "## Setup", "",
              f"- Data: {summary['config']['collect_steps']:,} steps per game from an online DQN "
              "trained from scratch, every transition logged (exploration included), as the DQN "
              "Replay Dataset was made.",
              f"- Learner: {agent_cfg['encoder']} ×{agent_cfg['width']} encoder, feature dim "
              f"{agent_cfg['feature_dim']}, feature normalization {agent_cfg['feature_norm']}, "
              f"{agent_cfg['loss']} loss, CQL α {agent_cfg['cql_alpha']}, batch "
              f"{agent_cfg['batch_size']}, n-step {agent_cfg.get('n_step', tc.get('n_step'))}, {tc['steps']:,} gradient steps"
              f"{_budget_note(out / 'agent')}; "
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
                     f"{bc['steps']:,} gradient steps{_budget_note(out / algo)}, {knobs}; config "
                     f"`{algo}/config.json`.")
    return "\n".join(lines) + "\n"
