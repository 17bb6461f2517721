"""Every aggregate plot, drawn by rliable's ``plot_utils`` and written atomically as PNG.

One colour per method, the same in every plot of a report (``method_colors``); methods are named
on the axes or in a legend. The numbers come from ``scaledql.stats``; nothing here computes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only: no display needed (or wanted) on a training machine
import matplotlib.pyplot as plt
import numpy as np

from scaledql.atomic_files import atomic_output
from scaledql.reports import layout
from scaledql.stats import METRIC_NAMES

# rliable splits "X<sep>Y" pair names on this; method labels may hold commas (its default).
PAIR_SEPARATOR = "\x1f"
# Claim verdicts in the Okabe-Ito colour-blind palette (rliable's "colorblind" is the same family).
VERDICT_COLORS = {"held": "#009E73", "not held": "#D55E00", "unclear": "#8C8C8C"}
OTHER_VERDICT_COLOR = "#C8C8C8"  # "no data", "incomplete (...)"
# A P(X > Y) interval at least this wide says nothing (two runs a side give [0, 1]): its bar is
# drawn thin so that it does not outweigh the pairs whose intervals carry information.
UNINFORMATIVE_WIDTH = 0.95
# Line styles and markers of a curve identical to one drawn before it (which it would hide).
REPEAT_STYLES = (("--", "s"), (":", "^"), ("-.", "D"), ((0, (6, 2, 1, 2)), "v"))


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
    return save(_intervals(points, intervals, [METRIC_NAMES.get(k, k) for k in metrics],
                           colors, xlabel), path)


def plot_per_game(per_game: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                  games: Sequence[str], path: Path, colors: Mapping[str, tuple] | None = None,
                  xlabel: str = "Mean normalized score (95% CI)", per_row: int = 3) -> Path:
    """Each game's mean with its interval (``stats.per_game_estimates``), one panel per game,
    ``per_row`` panels a row (rows stacked in one PNG: five games in one row made an image so
    wide that its text could not be read at any width it is shown)."""
    rows = [list(range(i, min(i + per_row, len(games)))) for i in range(0, len(games), per_row)]
    images = []
    with tempfile.TemporaryDirectory(dir=Path(path).parent) as tmp:
        for n, row in enumerate(rows):
            points = {m: np.asarray(v[0])[row] for m, v in per_game.items()}
            intervals = {m: np.stack([v[1], v[2]])[:, row] for m, v in per_game.items()}
            fig = _intervals(points, intervals, [games[i] for i in row], colors, xlabel)
            if len(rows) == 1:
                return save(fig, path)
            images.append(plt.imread(save(fig, Path(tmp) / f"row{n}.png")))
    width = max(im.shape[1] for im in images)
    padded = [np.concatenate([im, np.ones((im.shape[0], width - im.shape[1], im.shape[2]),
                                          im.dtype)], axis=1) for im in images]
    with atomic_output(path) as tmp_file:
        plt.imsave(tmp_file, np.concatenate(padded, axis=0), format="png")
    return Path(path)


def _intervals(points: dict, intervals: dict, names: list[str],
               colors: Mapping[str, tuple] | None, xlabel: str):
    """rliable's interval estimates, one panel per name, one row per method; the figure."""
    from rliable import plot_utils

    methods = list(points)
    colors = dict(colors) if colors else method_colors(methods)
    fig, axes = plot_utils.plot_interval_estimates(
        points, intervals, metric_names=names, algorithms=methods, colors=colors, xlabel=xlabel,
        subfigure_width=3.4, row_height=max(0.45, 2.0 / len(methods)), max_ticks=4,
        wspace=0.2)
    axes = list(np.atleast_1d(axes))
    for i, ax in enumerate(axes):
        for row, m in enumerate(methods):
            _mark_if_no_width(ax, points[m][i], intervals[m][:, i], row, colors[m])
        low = min(float(intervals[m][0, i]) for m in methods)
        high = max(float(intervals[m][1, i]) for m in methods)
        pad = 0.08 * (high - low) or 0.05 * max(1.0, abs(high))
        ax.set_xlim(low - pad, high + pad)  # a point on the edge of the range stays visible
    layout.untangle_x_ticks(fig, axes)
    layout.place_below_ticks(fig, axes, fig.texts[-1])  # rliable's x-label, its only text
    return fig


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
    """P(X > Y) with 95% intervals (``stats.improvement_probabilities``), one row per pair.

    Bars take X's colour; when the pairs carry a ``verdict`` (a study's claims), they take the
    verdict's colour instead and a verdict column follows the Y names. An interval spanning
    (nearly) all of [0, 1] is drawn as a thin bar and named in the legend."""
    from matplotlib.patches import Patch
    from rliable import plot_utils

    pairs = list(probabilities)
    methods = list(dict.fromkeys(m for pair in pairs for m in pair))
    colors = dict(colors) if colors else method_colors(methods)
    verdicts = [probabilities[p].get("verdict") for p in pairs]
    judged = any(v is not None for v in verdicts)
    bars = ([VERDICT_COLORS.get(str(v), OTHER_VERDICT_COLOR) for v in verdicts] if judged
            else [colors[x] for x, _ in pairs])
    points = {PAIR_SEPARATOR.join(p): probabilities[p]["p"] for p in pairs}
    intervals = {PAIR_SEPARATOR.join(p): np.array(probabilities[p]["ci"]) for p in pairs}
    fig, ax = plt.subplots(figsize=(5, 0.5 + 0.45 * len(pairs)))
    plot_utils.plot_probability_of_improvement(
        points, intervals, pair_separator=PAIR_SEPARATOR, ax=ax, colors=bars,
        xticks=[0.0, 0.25, 0.5, 0.75, 1.0], labelsize="medium", ticklabelsize="medium")
    wide = False
    for row, (p, bar) in enumerate(zip(pairs, ax.patches, strict=True)):
        low, high = probabilities[p]["ci"]
        if high - low >= UNINFORMATIVE_WIDTH:
            bar.set(y=row - 0.07, height=0.14, alpha=0.45)
            wide = True
        _mark_if_no_width(ax, probabilities[p]["p"], np.array(probabilities[p]["ci"]), row,
                          bars[row])
    ax.set_xlim(-0.02, 1.02)
    ax.axvline(0.5, color="grey", lw=0.8, ls="--")
    handles = []
    if judged:
        shown = list(dict.fromkeys(str(v) for v in verdicts))
        handles += [Patch(color=VERDICT_COLORS.get(v, OTHER_VERDICT_COLOR), label=v)
                    for v in shown]
        _verdict_column(fig, ax, [str(v) for v in verdicts])
    if wide:
        handles.append(Patch(color="grey", alpha=0.45,
                             label="thin: CI spans [0, 1], too few runs to tell"))
    if handles:
        fig.canvas.draw()  # the legend goes under the x-label, wherever rliable put it
        box = ax.xaxis.label.get_window_extent(layout._renderer(fig))
        fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 4),
                   fontsize="small", frameon=False,
                   bbox_to_anchor=(0.5, (box.y0 - 4) / fig.bbox.height))
    return save(fig, path)


def _verdict_column(fig, ax, verdicts: Sequence[str]) -> None:
    """Each pair's verdict as text right of rliable's Y names (on its twin axis), in the
    verdict's colour, under a bold "Verdict" header level with "Algorithm Y"."""
    from matplotlib.transforms import blended_transform_factory

    fig.canvas.draw()
    renderer = layout._renderer(fig)
    labels = [t for other in fig.axes if other is not ax for t in other.get_yticklabels()
              if t.get_text()]
    right = max([t.get_window_extent(renderer).x1 for t in labels]
                + [ax.get_window_extent(renderer).x1])
    x = (right + 14) / fig.bbox.width
    for row, verdict in enumerate(verdicts):
        ax.text(x, row, verdict, transform=blended_transform_factory(fig.transFigure,
                                                                     ax.transData),
                va="center", ha="left", fontsize="medium",
                color=VERDICT_COLORS.get(verdict, "#7F7F7F"))
    ax.text(x, 1.0, "Verdict", transform=blended_transform_factory(fig.transFigure,
                                                                   ax.transAxes),
            va="bottom", ha="left", fontsize="medium", fontweight="bold")


def _thousands(x: float, pos: int | None = None) -> str:
    """Step ticks that stay short: 500, 2.5k, 20k, 1.2M."""
    if abs(x) >= 1e6:
        return f"{x / 1e6:g}M"
    return f"{x / 1e3:g}k" if abs(x) >= 1e3 else f"{x:g}"


def step_axis(ax) -> None:
    """A step x-axis whose labels never run together (20000 → 20k, at most 6 ticks; once
    "10000125001500017500")."""
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=5, integer=True))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_thousands))


def plot_curves(curves: Mapping[str, tuple[Sequence, Sequence, Sequence, Sequence]], ax,
                colors: Mapping[str, tuple] | None = None, xlabel: str = "gradient steps",
                ylabel: str = "normalized IQM (95% CI)",
                one_point: str | None = "one evaluation, step {x:,.0f}") -> None:
    """An aggregate against training steps per method (steps, point, lower, upper) on ``ax``,
    drawn by rliable's sample-efficiency curve (each method at its own evaluation steps).

    A curve identical to one drawn before it would hide it: it gets a dashed or dotted line and
    hollow markers, and its legend entry says whose copy it is. A method with a single point
    has no curve to draw: its point gets an error bar and ``one_point`` (formatted with its
    ``x``) in its legend entry; when no method has a curve the x-axis starts at 0 and a note
    says so. ``one_point=None`` leaves single points to the caller (``plot_capacity``)."""
    from rliable import plot_utils

    methods = [m for m, c in curves.items() if len(c[0])]
    colors = dict(colors) if colors else method_colors(methods)
    drawn: list[tuple[str, tuple[np.ndarray, ...]]] = []
    singles: list[float] = []
    for m in methods:
        data = tuple(np.asarray(v, dtype=np.float64) for v in curves[m])
        steps, point, lo, hi = data
        plot_utils.plot_sample_efficiency_curve(
            steps, {m: point}, {m: np.stack([lo, hi])}, algorithms=[m], colors=colors, ax=ax,
            xlabel=xlabel, ylabel=ylabel, labelsize="medium", ticklabelsize="medium")
        line, label = ax.lines[-1], m
        same = [name for name, other in drawn if _same_curve(other, data)]
        if same:
            line.set(**repeat_style(len(same)))
            label += f" (same as {same[0]})"
        if len(steps) == 1 and one_point is not None:
            ax.errorbar(steps, point, yerr=np.stack([point - lo, hi - point]), fmt="none",
                        ecolor=colors[m], capsize=5, lw=1.5, label="_nolegend_")
            line.set_markersize(max(line.get_markersize(), 9))
            label += f" ({one_point.format(x=float(steps[0]))})"
            singles.append(float(steps[0]))
        line.set_label(label)
        drawn.append((m, data))
    if methods and len(singles) == len(methods):
        ax.set_xlim(0, 1.1 * max(max(singles), 1.0))  # a lone point reads as "at step N of N"
        ax.text(0.02, 0.03, "one evaluation per method: no curve to draw", fontsize=8,
                color="grey", transform=ax.transAxes)
    if methods:
        ax.legend(fontsize=8)


def repeat_style(copies_before: int) -> dict:
    """Line properties of a curve identical to ``copies_before`` curves drawn before it: its
    own dash pattern and a larger hollow marker, so the ones beneath show through."""
    style, marker = REPEAT_STYLES[(copies_before - 1) % len(REPEAT_STYLES)]
    return {"linestyle": style, "marker": marker, "markerfacecolor": "none",
            "markersize": 7 + 2 * copies_before, "zorder": 2 + copies_before}


def _same_curve(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return all(x.shape == y.shape and np.allclose(x, y, rtol=1e-9, atol=1e-12)
               for x, y in zip(a, b, strict=True))


def plot_capacity(curves: Mapping[str, Sequence[tuple[int, str, tuple[float, float, float], int]]],
                  path: Path, title: str = "Normalized IQM against network size") -> Path:
    """IQM (95% CI) against parameter count, one curve per series (``experiments.results.
    capacity_curves``): rliable's curves, a log x-axis, an error bar at every point so that a
    one-point series (and each point's own interval) stays visible, and every point named by
    its method (less the series' own qualifier, which the legend gives)."""
    colors = method_colors(list(curves))
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    plot_curves({name: tuple(zip(*[(p, *iqm) for p, _, iqm, _ in points], strict=True))
                 for name, points in curves.items()}, ax, colors,
                xlabel="parameters (log scale)", ylabel="normalized IQM (95% CI)", one_point=None)
    labels = []
    for name, points in curves.items():
        x = np.array([p for p, *_ in points], dtype=np.float64)
        mid, low, high = (np.array([iqm[i] for _, _, iqm, _ in points]) for i in range(3))
        ax.errorbar(x, mid, yerr=np.stack([mid - low, high - mid]), fmt="none",
                    ecolor=colors[name], capsize=3, lw=1, label="_nolegend_")
        for params, method, iqm, _ in points:
            labels.append(ax.annotate(_point_name(method, name), (params, iqm[0]),
                                      xytext=(6, 5), textcoords="offset points", fontsize=8,
                                      color=colors[name], va="bottom"))
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_CompactLog())
    ax.xaxis.set_minor_formatter(_CompactLog(labelOnlyBase=False))
    ax.set_title(title, fontsize=10)
    # Below the axes: inside, a legend of six series hides points wherever it goes.
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2,
              frameon=False)
    layout.separate_texts(fig, labels)
    return save(fig, path)


def _point_name(method: str, series: str) -> str:
    """``ResNet-18, no feature norm`` in series ``ResNet, no feature norm`` → ``ResNet-18``."""
    _, sep, qualifier = series.partition(", ")
    suffix = sep + qualifier
    return method[: -len(suffix)] if sep and method.endswith(suffix) else method


class _CompactLog(matplotlib.ticker.LogFormatterSciNotation):
    """Log-axis labels as ``1.2M`` / ``950k`` instead of ``1.2×10⁶``; which ticks get a label
    stays matplotlib's decision."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        if not super().__call__(x, pos):
            return ""
        for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if x >= scale:
                return f"{x / scale:.3g}{unit}"
        return f"{x:.3g}"
