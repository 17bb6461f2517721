"""Every aggregate plot, drawn by rliable's ``plot_utils`` and written atomically as PNG.

One colour per method, the same in every plot of a report (``method_colors``); methods are named
on the axes or in a legend. The numbers come from ``scaledql.stats``; nothing here computes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed (or wanted) on a training machine
import matplotlib.pyplot as plt
import numpy as np

from scaledql.io import atomic_output
from scaledql.stats import METRIC_NAMES

# rliable splits "X<sep>Y" pair names on this; method labels may hold commas (its default).
PAIR_SEPARATOR = "\x1f"


def method_colors(methods: Sequence[str]) -> dict[str, tuple]:
    """method → colour: rliable's colour-blind palette; past its ten colours, evenly spaced hues
    (a repeated colour would make two methods one)."""
    import seaborn as sns

    palette = "colorblind" if len(methods) <= 10 else "husl"
    return dict(zip(methods, sns.color_palette(palette, n_colors=len(methods)), strict=True))


def save(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` atomically; the bounding box grows to hold rliable's labels,
    which it places outside the axes."""
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def plot_intervals(estimates: Mapping[str, Mapping[str, float | list]], metrics: Sequence[str],
                   path: Path, colors: Mapping[str, tuple] | None = None,
                   xlabel: str = "Normalized score (95% CI)") -> Path:
    """Point estimates and 95% intervals of ``metrics`` (``stats.interval_estimates``'s
    output), one panel per metric, one row per method."""
    methods = list(estimates)
    points = {m: np.array([estimates[m][k] for k in metrics]) for m in methods}
    intervals = {m: np.array([[estimates[m][f"{k}_ci"][i] for k in metrics] for i in (0, 1)])
                 for m in methods}
    return _intervals(points, intervals, [METRIC_NAMES.get(k, k) for k in metrics], path,
                      colors, xlabel)


def plot_per_game(per_game: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                  games: Sequence[str], path: Path, colors: Mapping[str, tuple] | None = None,
                  xlabel: str = "Mean normalized score (95% CI)") -> Path:
    """Each game's mean with its interval (``stats.per_game_estimates``), one panel per game."""
    points = {m: np.asarray(v[0]) for m, v in per_game.items()}
    intervals = {m: np.stack([v[1], v[2]]) for m, v in per_game.items()}
    return _intervals(points, intervals, list(games), path, colors, xlabel)


def _intervals(points: dict, intervals: dict, names: list[str], path: Path,
               colors: Mapping[str, tuple] | None, xlabel: str) -> Path:
    from rliable import plot_utils

    methods = list(points)
    colors = dict(colors) if colors else method_colors(methods)
    fig, axes = plot_utils.plot_interval_estimates(
        points, intervals, metric_names=names, algorithms=methods, colors=colors, xlabel=xlabel,
        xlabel_y_coordinate=-0.6 / max(1, len(methods)) - 0.1, subfigure_width=3.4,
        row_height=max(0.45, 2.0 / len(methods)), max_ticks=4)
    for i, ax in enumerate(np.atleast_1d(axes)):
        for row, m in enumerate(methods):
            _mark_if_no_width(ax, points[m][i], intervals[m][:, i], row, colors[m])
        low = min(float(intervals[m][0, i]) for m in methods)
        high = max(float(intervals[m][1, i]) for m in methods)
        pad = 0.08 * (high - low) or 0.05 * max(1.0, abs(high))
        ax.set_xlim(low - pad, high + pad)  # a point on the edge of the range stays visible
    return save(fig, path)


def _mark_if_no_width(ax, point: float, interval: np.ndarray, row: int, color) -> None:
    """A one-run interval is its point and rliable's bar has no width: mark the point in the
    method's colour so that every method stays visible and recognisable."""
    if float(interval[1] - interval[0]) <= 1e-12 * max(1.0, abs(float(point))):
        ax.plot([point], [row], marker="o", ms=7, color=color, zorder=3)


def plot_profiles(profiles: Mapping[str, np.ndarray], bands: Mapping[str, np.ndarray],
                  taus: np.ndarray, path: Path, colors: Mapping[str, tuple] | None = None,
                  rows: str = "runs", title: str | None = None) -> Path:
    """Performance profiles (``stats.performance_profiles``), a 95% band where there is one;
    ``rows`` names what one row of the score matrices is (runs, episodes)."""
    from rliable import plot_utils

    methods = list(profiles)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    plot_utils.plot_performance_profiles(
        dict(profiles), taus, performance_profile_cis=dict(bands) or None, ax=ax,
        colors=dict(colors) if colors else method_colors(methods),
        xlabel=r"Normalized score ($\tau$)",
        ylabel=rf"Fraction of {rows} $\times$ games with score $> \tau$",
        labelsize="large", ticklabelsize="medium")
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(title)
    return save(fig, path)


def plot_improvement(probabilities: Mapping[tuple[str, str], Mapping], path: Path,
                     colors: Mapping[str, tuple] | None = None) -> Path:
    """P(X > Y) with 95% intervals (``stats.improvement_probabilities``), one row per pair,
    coloured by X's colour."""
    from rliable import plot_utils

    pairs = list(probabilities)
    methods = list(dict.fromkeys(m for pair in pairs for m in pair))
    colors = dict(colors) if colors else method_colors(methods)
    points = {PAIR_SEPARATOR.join(p): probabilities[p]["p"] for p in pairs}
    intervals = {PAIR_SEPARATOR.join(p): np.array(probabilities[p]["ci"]) for p in pairs}
    fig, ax = plt.subplots(figsize=(5, 0.5 + 0.45 * len(pairs)))
    plot_utils.plot_probability_of_improvement(
        points, intervals, pair_separator=PAIR_SEPARATOR, ax=ax,
        colors=[colors[x] for x, _ in pairs], xticks=[0.0, 0.25, 0.5, 0.75, 1.0],
        labelsize="medium", ticklabelsize="medium")
    for row, p in enumerate(pairs):
        _mark_if_no_width(ax, probabilities[p]["p"], np.array(probabilities[p]["ci"]), row,
                          colors[p[0]])
    ax.set_xlim(-0.02, 1.02)
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    return save(fig, path)


def plot_curves(curves: Mapping[str, tuple[Sequence, Sequence, Sequence, Sequence]], ax,
                colors: Mapping[str, tuple] | None = None, xlabel: str = "gradient steps",
                ylabel: str = "normalized IQM (95% CI)") -> None:
    """An aggregate against training steps per method (steps, point, lower, upper) on ``ax``,
    drawn by rliable's sample-efficiency curve (each method at its own evaluation steps)."""
    from rliable import plot_utils

    methods = [m for m, c in curves.items() if len(c[0])]
    colors = dict(colors) if colors else method_colors(methods)
    for m in methods:
        steps, point, lo, hi = (np.asarray(v, dtype=np.float64) for v in curves[m])
        plot_utils.plot_sample_efficiency_curve(
            steps, {m: point}, {m: np.stack([lo, hi])}, algorithms=[m], colors=colors, ax=ax,
            xlabel=xlabel, ylabel=ylabel, labelsize="medium", ticklabelsize="medium")
    if methods:
        ax.legend(fontsize=8)


def plot_capacity(curves: Mapping[str, Sequence[tuple[int, str, tuple[float, float, float], int]]],
                  path: Path) -> Path:
    """IQM (95% CI) against parameter count, one curve per series (``experiments.results.
    capacity_curves``): rliable's curves, a log x-axis, and an error bar at every point so
    that a one-point series (and each point's own interval) stays visible."""
    colors = method_colors(list(curves))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    plot_curves({name: tuple(zip(*[(p, *iqm) for p, _, iqm, _ in points], strict=True))
                 for name, points in curves.items()}, ax, colors, xlabel="parameters",
                ylabel="normalized IQM (95% CI)")
    for name, points in curves.items():
        x = np.array([p for p, *_ in points], dtype=np.float64)
        mid, low, high = (np.array([iqm[i] for _, _, iqm, _ in points]) for i in range(3))
        ax.errorbar(x, mid, yerr=np.stack([mid - low, high - mid]), fmt="none",
                    ecolor=colors[name], capsize=3, lw=1)
    ax.set_xscale("log")
    return save(fig, path)

