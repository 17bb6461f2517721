"""The report of a fine-tuning experiment folder: final scores with CIs, curves, improvement.

``write_report(OUT)`` reads ``OUT/finetune.json`` and each run's metrics log (its evaluation
rows, ``run_folder.read_rows``) and ``wall.json``, and writes ``OUT/report.md`` with
``curves.png`` beside it.
It never trains or plays, so it can be re-run at any time (``scaledql finetune report OUT``);
unfinished runs are listed and left out of the scores.

Scores: a run's final score on a game is the normalized mean return of its evaluation at its
last step. Per arm the matrix ``[seeds, games]`` of final scores is aggregated with rliable
(IQM and mean, 95% stratified-bootstrap CIs over seeds, stratified by game); the learning
curves are the IQM of that matrix at each evaluation step, drawn by rliable. The improvement
over the best alternative compares the IQM of the best arm that starts from the pretrained
Scaled QL run with the IQM of the best arm that does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scaledql.atomic_files import atomic_write_text
from scaledql.data.store.episodes import kept_text
from scaledql.finetune.common import OFFLINE_ARMS, ONLINE_ARMS, read_spec
from scaledql.run_folder import is_run, read_config, read_rows, read_wall
from scaledql.stats import aggregate


@dataclass
class RunRecord:
    game: str
    seed: int
    steps: int  # the run's target
    evals: list[tuple[int, float, float | None]]  # (step, mean return, normalized)
    episodes: list[tuple[int, float]] = field(default_factory=list)  # online: (end step, return)
    wall: float = 0.0
    eval_episodes: int = 0

    @property
    def final(self) -> tuple[int, float, float | None] | None:
        last = [e for e in self.evals if e[0] == self.steps]
        return last[-1] if last else None


def _record(run: Path, game: str, seed: int, online: bool) -> RunRecord | None:
    if not is_run(run):
        return None
    saved = read_config(run)
    steps = int(saved["steps"])
    rows = read_rows(run)
    ret, norm = ("return", "normalized") if online else (f"{game}/return", f"{game}/normalized")
    evals = {int(r["step"]): (float(r[ret]), r.get(norm)) for r in rows
             if r.get("kind") == "eval" and ret in r}
    wall = float(read_wall(run)["seconds"])
    return RunRecord(game, seed, steps, [(s, *evals[s]) for s in sorted(evals)],
                     [(int(r["step"]), float(r["return"])) for r in rows if r.get("kind") == "episode"],
                     float(wall), int(saved["eval_episodes"]))


def collect(out: Path, spec: dict) -> dict[str, list[RunRecord]]:
    """arm → its runs that have started (in spec order)."""
    online = spec["kind"] == "online"
    records: dict[str, list[RunRecord]] = {}
    for arm in spec["arms"]:
        for game in spec["games"]:
            for seed in spec["seeds"]:
                run = out / arm / f"seed_{seed}" if online else out / arm / game / f"seed_{seed}"
                rec = _record(run, game, seed, online)
                if rec is not None:
                    records.setdefault(arm, []).append(rec)
    return records


def score_matrix(records: list[RunRecord], games: list[str]) -> tuple[np.ndarray, list[int]]:
    """[seeds, games] final normalized scores of the seeds finished on every game."""
    finals = {(r.seed, r.game): r.final for r in records if r.final is not None}
    seeds = sorted({r.seed for r in records})
    rows, used = [], []
    for s in seeds:
        values = [finals.get((s, g)) for g in games]
        if all(v is not None and v[2] is not None for v in values):
            rows.append([v[2] for v in values])
            used.append(s)
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(games)), used


def improvement(scores: dict[str, dict], table: dict) -> str:
    """The one-sentence comparison of the best pretrained arm with the best other arm."""
    ours = {a: s for a, s in scores.items() if table[a].ours}
    others = {a: s for a, s in scores.items() if not table[a].ours}
    if not ours or not others:
        return ("Improvement over the best alternative: not computed (it needs a finished "
                "pretrained arm and a finished other arm).")
    a = max(ours, key=lambda k: ours[k]["iqm"])
    b = max(others, key=lambda k: others[k]["iqm"])
    x, y = ours[a]["iqm"], others[b]["iqm"]
    definition = (f"(IQM of the best arm starting from the pretrained Scaled QL run, `{a}` "
                  f"{x:.3f}, − IQM of the best other arm, `{b}` {y:.3f}) / |{y:.3f}|, final "
                  "normalized scores over seeds × games")
    if abs(y) < 1e-12:
        return f"Improvement over the best alternative: undefined — {definition} divides by 0."
    return f"Improvement over the best alternative: **{(x - y) / abs(y):+.1%}** = {definition}."


def _curve(records: list[RunRecord], games: list[str]) -> tuple[list, list, list, list]:
    """(steps, IQM, lower, upper): at each evaluation step where some seeds have every game,
    the IQM of their [seeds, games] normalized scores with its 95% CI (``stats``)."""
    from scaledql.stats import interval_estimates

    scores: dict[int, dict[int, dict[str, float]]] = {}  # step → seed → game → score
    for r in records:
        for step, _, norm in r.evals:
            if norm is not None:
                scores.setdefault(step, {}).setdefault(r.seed, {})[r.game] = norm
    out: tuple[list, list, list, list] = ([], [], [], [])
    for step in sorted(scores):
        rows = [[by_game[g] for g in games] for _, by_game in sorted(scores[step].items())
                if all(g in by_game for g in games)]
        if rows:
            agg = interval_estimates({"x": np.array(rows)}, ("iqm",))["x"]
            for column, value in zip(out, (step, agg["iqm"], *agg["iqm_ci"]), strict=True):
                column.append(value)
    return out


def plot_curves(records: dict[str, list[RunRecord]], spec: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    from scaledql.reports import plots

    online = spec["kind"] == "online"
    colors = plots.method_colors(list(records))
    fig, axes = plt.subplots(1, 2 if online else 1, figsize=(11 if online else 6, 3.8),
                             squeeze=False)
    left = axes[0][0]
    plots.plot_curves({arm: _curve(recs, spec["games"]) for arm, recs in records.items()}, left,
                      colors, xlabel=spec["x_label"], ylabel="normalized IQM (evaluation)")
    left.set_title("IQM over seeds × games; band: 95% CI over seeds", fontsize=9)
    if online:
        right = axes[0][1]
        drawn: list[tuple[str, np.ndarray]] = []
        for arm, recs in records.items():
            eps = sorted(e for r in recs for e in r.episodes)
            if not eps:
                continue
            steps, returns = np.array(eps).T
            edges = np.linspace(0, max(r.steps for r in recs), 21)
            which = np.clip(np.digitize(steps, edges) - 1, 0, 19)
            centers = [(edges[b] + edges[b + 1]) / 2 for b in range(20) if (which == b).any()]
            means = [returns[which == b].mean() for b in range(20) if (which == b).any()]
            curve = np.array([centers, means])
            same = [a for a, other in drawn if other.shape == curve.shape
                    and np.allclose(other, curve)]
            drawn.append((arm, curve))
            # an identical curve would hide the one beneath: its own dashes, named in the legend
            right.plot(centers, means, color=colors[arm],
                       **(plots.repeat_style(len(same)) if same else {}),
                       label=f"{arm} (same as {same[0]})" if same else arm)
        if drawn:
            right.legend(fontsize=8)
        right.set_xlabel("environment steps")
        right.set_ylabel("episode return (ε-greedy, while learning)")
        right.set_title("training episodes, mean per 1/20 of the run (all seeds)", fontsize=9)
    fig.tight_layout()
    plots.save(fig, path)


def _fmt(agg: dict, key: str) -> str:
    lo, hi = agg[f"{key}_ci"]
    return f"{agg[key]:.3f} [{lo:.3f}, {hi:.3f}]"


def _header(spec: dict) -> list[str]:
    games = ", ".join(spec["games"])
    lines = [f"- Pretrained run: `{spec['from']}` ({spec['suite']}; games: "
             f"{', '.join(spec['pretrained_games'])})"]
    if spec.get("mae"):
        lines.append(f"- MAE run (arm `mae`): `{spec['mae']}`")
    if spec["kind"] == "offline":
        title = f"# Offline fine-tuning to {games}"
        sample = spec.get("sample", "first")
        how = "its first episodes" if sample == "first" else "episodes drawn uniformly over its run"
        lines.append(f"- Data: `{spec['data']}`, fraction {spec['fraction']:g} of each game "
                     f"({how}, whole, holding at least that share of its transitions):")
        lines += [f"  - {g}: {kept_text(k, sample)}" for g, k in spec["kept"].items()]
        lines.append(f"- {spec['steps']:,} gradient steps per run")
    else:
        variant = {k: v for k, v in spec["variant"].items() if v not in (None, False)}
        title = f"# Online fine-tuning to a variant of {games}"
        seen = "in" if spec["in_pretraining"] else "**not** in"
        lines.append(f"- Variant: {variant or 'default settings'} (pretraining data: "
                     f"{ {k: v for k, v in spec['pretrained_env_options'].items() if v is not None} }"
                     f"; the game was {seen} pretraining). Normalized with the game's default "
                     "reference scores (none exist per variant).")
        lines.append(f"- {spec['steps']:,} environment steps per run (dqn arm: "
                     f"{spec['dqn_steps']:,})")
    lines.append(f"- Seeds: {', '.join(map(str, spec['seeds']))}")
    lines += ["- Commands:", *[f"  - `{c}`" for c in spec.get("commands", [])]]
    return [title, "", *lines, ""]


def write_report(out: Path) -> Path:
    out = Path(out)
    spec = read_spec(out)
    table = OFFLINE_ARMS if spec["kind"] == "offline" else ONLINE_ARMS
    records = collect(out, spec)
    games = spec["games"]
    lines = _header(spec)
    episodes = sorted({r.eval_episodes for recs in records.values() for r in recs})
    lines[-1:-1] = [f"- Evaluation: {', '.join(map(str, episodes))} episodes per game, ε = 0.001"]
    lines += ["## Final scores", "",
              "Normalized score of each run's last evaluation (MinAtar: 0 random, 1 the "
              "project's reference; Atari: human-normalized), aggregated per arm over seeds × "
              "games: IQM and mean with 95% stratified-bootstrap CIs (rliable). With few seeds "
              "the intervals are rough.", "",
              "| arm | what | seeds | IQM [95% CI] | mean [95% CI] | final mean return per game "
              "| wall time (all its runs) |", "|---|---|---|---|---|---|---|"]
    scores, unfinished = {}, []
    for arm in spec["arms"]:
        recs = records.get(arm, [])
        unfinished += [f"{arm}/{r.game}/seed_{r.seed}" for r in recs if r.final is None]
        matrix, seeds = score_matrix(recs, games)
        if not len(seeds):
            lines.append(f"| `{arm}` | {table[arm].label} | 0 | — | — | — | — |")
            continue
        agg = aggregate(matrix)
        scores[arm] = agg
        returns = "; ".join(
            f"{g} {np.mean([r.final[1] for r in recs if r.game == g and r.final]):.2f}" for g in games)
        wall = sum(r.wall for r in recs)
        lines.append(f"| `{arm}` | {table[arm].label} | {len(seeds)} | {_fmt(agg, 'iqm')} | "
                     f"{_fmt(agg, 'mean')} | {returns} | {wall / 60:.1f} min |")
    lines += ["", improvement(scores, table), "", "## Learning curves", "",
              "![learning curves](curves.png)", ""]
    if unfinished:
        lines += ["Unfinished runs (left out of the scores; re-run the command to continue): "
                  + ", ".join(unfinished), ""]
    if records:
        plot_curves(records, spec, out / "curves.png")
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
