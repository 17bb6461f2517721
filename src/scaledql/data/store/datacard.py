"""A dataset's data card: where each game's data came from, how much there is, how good its
behaviour policy was.

    scaledql data card DIR [--json]      writes DIR/DATACARD.md and prints it (or JSON)

Per game: the source, runs and checkpoint files (from the manifest's provenance), transitions,
finished episodes, the mean behaviour return over finished episodes and its normalized score
(human-normalized for Atari: (return - random) / (human - random); reference-normalized for
MinAtar), as ``game.behaviour_score`` defines them. For the dataset: IQM, median and mean of the
normalized behaviour scores with 95% stratified-bootstrap confidence intervals, from rliable
through ``scaledql.stats.aggregate``.

The intervals are over *episodes*: the score matrix is ``[episodes, games]`` and the bootstrap
resamples each game's episodes. Games hold different numbers of episodes, so each game's column
is ``K`` evenly spaced quantiles of its episodes' normalized returns (``K`` = the fewest finished
episodes of any game, at most ``MAX_ROWS``): every game weighs the same, as in rliable, and each
column keeps its game's distribution. Such an interval says how precisely the stored episodes
pin down the behaviour score, not how it would vary over new runs of the behaviour policy.

DQN Replay stores rewards clipped to [-1, 1] (``rewards_clipped`` in the manifest): its returns
are clipped returns, not game scores, and the card marks them so. For games whose rewards are
all -1, 0 or +1 (Pong, Boxing, ...) they are the game score; for others the normalized figure
understates the behaviour policy (positive rewards larger than 1 count as 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scaledql.atomic_files import atomic_output, fsync_dir
from scaledql.data.store.dataset import open_dataset
from scaledql.data.store.game import behaviour_score
from scaledql.stats import aggregate
from scaledql.suites import suite_attribute

CARD = "DATACARD.md"
MAX_ROWS = 1000
PAPER_BEHAVIOUR = 0.51  # the paper's sub-optimal data: behaviour policy at 51% human-normalized


def data_card(root: Path) -> dict[str, Any]:
    """The card of the dataset at ``root`` as a JSON-able dict (see the module docstring)."""
    ds = open_dataset(root, contents=True)  # the behaviour scores come from these arrays
    games: dict[str, Any] = {}
    columns: list[np.ndarray] = []
    scored: list[str] = []
    for name in ds.games:
        g = ds.game(name)
        prov = g.provenance
        runs = prov.get("runs") or {}
        behaviour = behaviour_score(g)
        counts = g.manifest["counts"]
        games[name] = {
            "suite": g.suite,
            "source": prov.get("source", "unknown"),
            "runs": runs,
            "checkpoint_files": sum(len(v) for v in runs.values()),
            "transitions": g.num_transitions,
            "episodes": g.num_episodes,
            "unfinished": counts.get("unfinished", 0),
            "partial_start": counts.get("partial_start", 0),
            "behaviour_return": behaviour.mean_return,
            "normalized_score": behaviour.score,
            "rewards_clipped": g.rewards_clipped,
            "merged_runs": [{k: r.get(k) for k in ("run", "from", "seed", "fraction",
                                                    "transitions", "episodes", "mean_return")}
                            for r in prov.get("merged_runs") or []],
        }
        if behaviour.normalized is not None:
            columns.append(np.sort(behaviour.normalized))
            scored.append(name)
    card: dict[str, Any] = {
        "root": str(ds.root), "games": games,
        "total_transitions": sum(v["transitions"] for v in games.values()),
        "total_episodes": sum(v["episodes"] for v in games.values()),
        "aggregate": None, "aggregate_games": scored, "episodes_per_game": 0,
        "paper_behaviour_score": PAPER_BEHAVIOUR,
    }
    if columns:
        k = min(MAX_ROWS, min(len(c) for c in columns))
        q = (np.arange(k) + 0.5) / k
        matrix = np.stack([np.quantile(c, q, method="inverted_cdf") for c in columns], 1)
        card["aggregate"] = aggregate(matrix, seed=0)
        card["episodes_per_game"] = k
    return card


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] → "0-2,5,7-8"."""
    out: list[str] = []
    nums = sorted(numbers)
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(out)


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _merged_runs(games: dict[str, Any]) -> list[str]:
    """The runs of games made by ``data merge``, a row each; [] when there are none."""
    rows = [(name, r) for name, g in games.items() for r in g.get("merged_runs") or []]
    if not rows:
        return []
    lines = ["Runs (`scaledql data merge`: each run's first share of transitions, in run order):",
             "", "| game | run | from | seed | share | transitions | finished episodes | "
             "behaviour return |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['run']} | {r['from']} | {_num(r['seed'], 'd')} | "
                     f"{r['fraction']:g} | {r['transitions']:,} | {r['episodes']:,} | "
                     f"{_num(r['mean_return'], '.2f')} |")
    return [*lines, ""]


def card_markdown(card: dict[str, Any]) -> str:
    games = card["games"]
    lines = [f"# Data card: {card['root']}", "",
             f"{len(games)} games, {card['total_transitions']:,} transitions, "
             f"{card['total_episodes']:,} finished episodes.", ""]
    # DQN Replay's runs and checkpoint files only where some game was imported from it
    replay = any(g["runs"] for g in games.values())
    head = ["game", "source", *(["runs: checkpoint files", "files"] if replay else []),
            "transitions", "finished episodes", "behaviour return", "normalized score"]
    lines += ["| " + " | ".join(head) + " |",
              "|---|---|" + "---:|" * (len(head) - 2)]
    for name, g in games.items():
        runs = "; ".join(f"{r}: {_ranges(c)}" for r, c in g["runs"].items()) or "-"
        ret = _num(g["behaviour_return"], ".2f")
        if g["rewards_clipped"] and g["behaviour_return"] is not None:
            ret += " (clipped)"
        cells = [name, g["source"], *([runs, str(g["checkpoint_files"])] if replay else []),
                 f"{g['transitions']:,}", f"{g['episodes']:,}", ret,
                 _num(g["normalized_score"], ".3f")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += _merged_runs(games)
    agg = card["aggregate"]
    if agg is None:
        lines.append("No game has both finished episodes and reference scores: no aggregate.")
    else:
        def ci(key: str) -> str:
            lo, hi = agg[f"{key}_ci"]
            return f"{agg[key]:.3f} [{lo:.3f}, {hi:.3f}]"

        lines += [f"Behaviour score over {len(card['aggregate_games'])} games (normalized; "
                  "95% stratified-bootstrap CIs, rliable):", "",
                  f"- IQM {ci('iqm')}", f"- median {ci('median')}", f"- mean {ci('mean')}", "",
                  f"CIs are over episodes: each game contributes {card['episodes_per_game']} "
                  "evenly spaced quantiles of its finished episodes' normalized returns (the "
                  "fewest any game has, at most 1000), resampled within the game; they measure "
                  "how precisely the stored episodes fix the behaviour score, not the spread "
                  "over new runs of the behaviour policy."]
    suites = dict.fromkeys(g["suite"] for g in games.values())
    for note in dict.fromkeys(suite_attribute(name, "data_card_note", None) for name in suites):
        if note:  # a suite's own reference point (Atari: the paper's human-normalized one)
            lines += ["", note.format(**card)]
    if any(g["rewards_clipped"] for g in games.values()):
        lines += ["", "Clipped: the source stored rewards clipped to [-1, 1] (DQN Replay), so "
                      "these returns are clipped returns, not game scores; for games with "
                      "rewards beyond +-1 the normalized scores understate the behaviour "
                      "policy."]
    return "\n".join(lines) + "\n"


def write_card(card: dict[str, Any], root: Path) -> str:
    """Write ``root/DATACARD.md`` atomically; returns its text."""
    text = card_markdown(card)
    path = Path(root) / CARD
    with atomic_output(path, fsync=True) as tmp:
        tmp.write_text(text)
    fsync_dir(path.parent)
    return text
