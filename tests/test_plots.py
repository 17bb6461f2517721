"""The plots as drawn: no tick labels running into each other, no blank band under a tall figure,
capacity points named, claim verdicts shown, identical curves and single evaluations visible.

Every check measures what matplotlib drew (``get_window_extent`` after ``canvas.draw``), on
figures captured as ``plots.save`` writes them.
"""

from __future__ import annotations

import math

import matplotlib.colors as mcolors
import numpy as np
import pytest
from matplotlib.transforms import Bbox

from scaledql.reports import plots
from scaledql.stats import ALL_METRICS


@pytest.fixture
def drawn(monkeypatch) -> list:
    """Figures passed to ``plots.save`` (written as usual), drawn again for measuring."""
    figures: list = []
    save = plots.save

    def capture(fig, path):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        out = save(fig, path)
        FigureCanvasAgg(fig)  # closing left the figure a canvas that cannot draw
        fig.canvas.draw()
        figures.append(fig)
        return out

    monkeypatch.setattr(plots, "save", capture)
    return figures


def _box(artist, fig) -> Bbox:
    return artist.get_window_extent(fig.canvas.get_renderer())


def _touch(a: Bbox, b: Bbox) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _x_tick_labels(ax) -> list:
    low, high = sorted(ax.get_xlim())
    every = ax.get_xticklabels() + ax.get_xticklabels(minor=True)
    return [t for t in every if t.get_text() and t.get_visible()
            and low <= t.get_position()[0] <= high]


def _tick_overlaps(fig, axes) -> list[tuple[str, str]]:
    labels = [t for ax in axes for t in _x_tick_labels(ax)]
    boxes = [_box(t, fig) for t in labels]
    return [(labels[i].get_text(), labels[j].get_text()) for i in range(len(boxes))
            for j in range(i + 1, len(boxes)) if _touch(boxes[i], boxes[j])]


def _estimates(mid: float, half: float) -> dict:
    return {k: v for key in ALL_METRICS for k, v in ((key, mid),
                                                     (f"{key}_ci", [mid - half, mid + half]))}


def test_neighbouring_panels_tick_labels_do_not_run_together(tmp_path, drawn):
    """Scores near 0 once gave labels like ``−0.0250.000`` across panels."""
    aggregates = {"Scaled QL": _estimates(-0.012, 0.013), "BC": _estimates(0.004, 0.01),
                  "DT": _estimates(-0.02, 0.008), "behaviour": _estimates(-0.007, 0.006)}
    plots.plot_intervals(aggregates, ALL_METRICS, tmp_path / "intervals.png")
    rng = np.random.default_rng(0)
    games = ["asterix", "breakout", "freeway", "seaquest", "space_invaders"]
    per_game = {}
    for m in aggregates:
        mid = rng.uniform(-0.03, 0.02, len(games))
        per_game[m] = (mid, mid - 0.01, mid + 0.012)
    plots.plot_per_game(per_game, games, tmp_path / "per_game.png")  # rows of 3 and 2 games
    for fig, panels in zip(drawn, (len(ALL_METRICS), 3, 2), strict=True):
        axes = fig.axes
        assert len(axes) == panels
        assert all(len(_x_tick_labels(ax)) >= 2 for ax in axes)  # still a readable scale
        assert _tick_overlaps(fig, axes) == []


def test_per_game_rows_keep_the_image_narrow_enough_to_read(tmp_path):
    """Five games in one row made a 2256×345 image: shown at a page's width its text shrank to
    a third. Three a row, stacked: about 1500 px wide, every row as tall as before."""
    import matplotlib.pyplot as plt

    games = ["asterix", "breakout", "freeway", "seaquest", "space_invaders"]
    per_game = {m: (np.full(5, 0.1), np.full(5, 0.05), np.full(5, 0.2))
                for m in ("Scaled QL", "BC", "DT", "behaviour", "last DQN")}
    height, width, _ = plt.imread(plots.plot_per_game(per_game, games,
                                                      tmp_path / "per_game.png")).shape
    assert width < 1700 and height > 2 * 250


def test_step_ticks_stay_short(tmp_path):
    """A 20,000-step axis once read "10000125001500017500"."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 20_000], [0, 1])
    plots.step_axis(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels and all(len(t) <= 5 for t in labels) and "20k" in labels
    assert _tick_overlaps(fig, [ax]) == []
    plt.close(fig)


def test_a_tall_interval_plot_keeps_its_x_label_under_the_ticks(tmp_path, drawn):
    """25 methods once left a quarter of the image blank above the x-label."""
    methods = {f"method {i}": {"iqm": i / 250, "iqm_ci": [i / 250 - 0.01, i / 250 + 0.02]}
               for i in range(25)}
    plots.plot_intervals(methods, ["iqm"], tmp_path / "methods.png")
    (fig,) = drawn
    (ax,) = fig.axes
    (label,) = fig.texts
    ticks_bottom = min(_box(t, fig).y0 for t in _x_tick_labels(ax))
    box = _box(label, fig)
    assert box.y1 <= ticks_bottom  # below the tick labels, not on them
    assert ticks_bottom - box.y1 < 0.15 * fig.dpi  # and right under them: no blank band
    assert label.get_text() == "Normalized score (95% CI)"


CAPACITY = {
    "ResNet, feature norm": [(1_240_000, "ResNet-18", (0.012, 0.006, 0.019), 2),
                             (1_880_000, "ResNet-34", (0.010, 0.006, 0.014), 2),
                             (2_290_000, "ResNet-50", (0.006, -0.004, 0.016), 2)],
    "ResNet, no feature norm": [(1_240_000, "ResNet-18, no feature norm", (0.111, 0.07, 0.15), 2),
                                (1_880_000, "ResNet-34, no feature norm", (0.041, 0.0, 0.08), 2),
                                (2_290_000, "ResNet-50, no feature norm", (0.086, 0.07, 0.1), 2)],
    "IMPALA, feature norm": [(1_190_000, "IMPALA", (0.025, 0.009, 0.041), 2)],
    "IMPALA, no feature norm": [(1_190_000, "IMPALA, no feature norm", (0.127, 0.1, 0.18), 2)],
}


def test_capacity_points_carry_their_method_names_and_the_plot_a_title(tmp_path, drawn):
    plots.plot_capacity(CAPACITY, tmp_path / "capacity.png")
    (fig,) = drawn
    (ax,) = fig.axes
    assert ax.get_title()
    names = [t for t in ax.texts if t.get_text() in {"ResNet-18", "ResNet-34", "ResNet-50",
                                                     "IMPALA"}]
    assert sorted(t.get_text() for t in names) == sorted(
        ["ResNet-18", "ResNet-34", "ResNet-50"] * 2 + ["IMPALA"] * 2)
    for text in names:  # each name sits at its own point, in its series' colour
        params, iqm = text.xy
        series = next(s for s, points in CAPACITY.items()
                      if any(p == params and i[0] == iqm for p, _, i, _ in points))
        line = next(ln for ln in ax.lines if ln.get_label() == series)
        assert mcolors.same_color(text.get_color(), line.get_color())
    boxes = [_box(t, fig) for t in names]
    assert not any(_touch(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert _tick_overlaps(fig, [ax]) == []
    assert "M" in " ".join(t.get_text() for t in _x_tick_labels(ax))  # 1.2M, not 1.2×10⁶
    legend = ax.get_legend().get_window_extent(fig.canvas.get_renderer())
    assert legend.y1 < ax.get_window_extent().y0  # below the axes, over no point
    assert not any(_touch(legend, t.get_window_extent())
                   for t in [*_x_tick_labels(ax), ax.xaxis.label])


PAIRS = {("Scaled QL", "behaviour"): {"p": 0.4, "ci": [0.27, 0.53], "verdict": "not held"},
         ("Scaled QL", "DT"): {"p": 0.73, "ci": [0.63, 0.8], "verdict": "held"},
         ("ResNet-34", "ResNet-18"): {"p": 0.5, "ci": [0.35, 0.65], "verdict": "unclear"},
         ("pretrained", "MAE"): {"p": 0.25, "ci": [0.0, 1.0], "verdict": "unclear"}}


def test_claims_plot_shows_each_verdict_and_keeps_two_run_intervals_thin(tmp_path, drawn):
    plots.plot_improvement(PAIRS, tmp_path / "claims.png")
    (fig,) = drawn
    ax, twin = fig.axes
    by_row = {round(t.get_position()[1]): t for t in ax.texts if t.get_text() != "Verdict"}
    for row, entry in enumerate(PAIRS.values()):
        text = by_row[row]
        assert text.get_text() == entry["verdict"]
        assert mcolors.same_color(text.get_color(), plots.VERDICT_COLORS[entry["verdict"]])
        bar = ax.patches[row]
        assert mcolors.same_color(bar.get_facecolor()[:3],
                                  plots.VERDICT_COLORS[entry["verdict"]])
    heights = [bar.get_height() for bar in ax.patches]
    assert heights[3] < heights[0] / 3 and heights[:3] == pytest.approx([heights[0]] * 3)
    # the verdict column is clear of the Y names, and the legend names every colour
    names = [_box(t, fig) for t in twin.get_yticklabels() if t.get_text()]
    verdicts = [_box(t, fig) for t in ax.texts]
    assert names and not any(_touch(a, b) for a in names for b in verdicts)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()][:3] == ["not held", "held", "unclear"]
    assert "[0, 1]" in legend.get_texts()[-1].get_text()


def test_improvement_without_verdicts_keeps_method_colours(tmp_path, drawn):
    plain = {k: {"p": v["p"], "ci": v["ci"]} for k, v in PAIRS.items()}
    colors = plots.method_colors(["Scaled QL", "behaviour", "DT", "ResNet-34", "ResNet-18",
                                  "pretrained", "MAE"])
    plots.plot_improvement(plain, tmp_path / "improvement.png", colors)
    (fig,) = drawn
    ax = fig.axes[0]
    assert not ax.texts
    for bar, (x, _) in zip(ax.patches, plain, strict=True):
        assert mcolors.same_color(bar.get_facecolor()[:3], colors[x])


def test_identical_curves_stay_apart_in_style_and_legend(tmp_path, drawn):
    import matplotlib.pyplot as plt

    same = ([0, 100, 200], [0.1, 0.12, 0.15], [0.08, 0.1, 0.12], [0.12, 0.14, 0.18])
    other = ([0, 100, 200], [0.1, 0.05, 0.08], [0.08, 0.03, 0.05], [0.12, 0.07, 0.1])
    fig, ax = plt.subplots()
    plots.plot_curves({"pretrained": same, "scratch": same, "MAE": same, "BC": other}, ax)
    plots.save(fig, tmp_path / "curves.png")
    lines = {ln.get_label(): ln for ln in ax.lines}
    assert set(lines) == {"pretrained", "scratch (same as pretrained)",
                          "MAE (same as pretrained)", "BC"}
    copies = [lines["pretrained"], lines["scratch (same as pretrained)"],
              lines["MAE (same as pretrained)"]]
    assert len({(ln.get_linestyle(), ln.get_marker()) for ln in copies}) == 3
    assert lines["BC"].get_linestyle() == "-"  # a distinct curve keeps rliable's style
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "scratch (same as pretrained)" in legend


def test_a_single_evaluation_is_a_marked_point_with_its_interval(tmp_path, drawn):
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    fig, ax = plt.subplots()
    plots.plot_curves({"scaled-ql": ([8000], [0.016], [0.006], [0.025]),
                       "bc": ([6000], [-0.001], [-0.008], [0.005])}, ax)
    plots.save(fig, tmp_path / "learning_curves.png")
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2
    segments = [seg for c in bars for seg in c.lines[2][0].get_segments()]
    assert sorted(tuple(np.round(s[:, 1], 3)) for s in segments) == [(-0.008, 0.005),
                                                                    (0.006, 0.025)]
    assert all(ln.get_markersize() >= 9 for ln in ax.lines if not ln.get_label().startswith("_"))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["scaled-ql (one evaluation, step 8,000)", "bc (one evaluation, step 6,000)"]
    assert ax.get_xlim()[0] == 0 and ax.get_xlim()[1] > 8000
    assert any("no curve" in t.get_text() for t in ax.texts)


def test_fine_tuning_arms_with_identical_curves_stay_visible(tmp_path, drawn):
    """Arms whose runs score alike drew one curve over the other, in both panels."""
    from scaledql.finetune.report import RunRecord, plot_curves

    def arm(evals, episodes) -> list[RunRecord]:
        return [RunRecord("breakout", seed, 300, [(s, 1.0, v + 0.01 * seed) for s, v in evals],
                          [(s, r + seed) for s, r in episodes]) for seed in (0, 1)]

    same = ([(0, 0.1), (150, 0.2), (300, 0.25)], [(40, 1.0), (160, 2.0), (290, 3.0)])
    records = {"pretrained": arm(*same), "scratch": arm(*same),
               "single-game DQN": arm([(0, 0.1), (150, 0.0), (300, 0.05)],
                                      [(40, 0.5), (160, 0.5), (290, 1.0)])}
    plot_curves(records, {"kind": "online", "games": ["breakout"],
                          "x_label": "environment steps"}, tmp_path / "curves.png")
    (fig,) = drawn
    for ax in fig.axes:
        lines = {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}
        assert set(lines) == {"pretrained", "scratch (same as pretrained)", "single-game DQN"}
        assert lines["scratch (same as pretrained)"].get_linestyle() != lines[
            "pretrained"].get_linestyle()
        assert "scratch (same as pretrained)" in [t.get_text()
                                                  for t in ax.get_legend().get_texts()]


def test_the_demos_learning_curves_show_bc_and_dt_beside_scaled_ql(tmp_path, drawn):
    from scaledql.reports.demo_report import plot_learning_curves

    def ev(step: int, iqm: float) -> tuple[int, dict]:
        return step, {"iqm": iqm, "iqm_ci": [iqm - 0.02, iqm + 0.02]}

    curves = {"Scaled QL": [ev(s, s / 1e5) for s in (5000, 10000, 15000, 20000)],
              "Decision Transformer": [ev(5000, 0.006)], "Behaviour cloning": [ev(20000, 0.03)]}
    rows = [{"step": s, "td_loss": 2.0, "cql_loss": 1.0, "cql_uniform/breakout": math.log(3)}
            for s in range(100, 20_001, 100)]
    plot_learning_curves(curves, rows, -0.01, tmp_path / "learning_curves.png")
    (fig,) = drawn
    top, td, cql = fig.axes
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert legend[0] == "Scaled QL" and "behaviour policy (dataset)" in legend
    assert "Decision Transformer (evaluated at its end, step 5,000)" in legend
    assert "Behaviour cloning (evaluated at its end, step 20,000)" in legend
    for ax in (top, td, cql):  # short step ticks, apart
        assert _tick_overlaps(fig, [ax]) == [] and "20k" in [t.get_text() for t in _x_tick_labels(ax)]
    assert cql.get_yscale() == "linear" and td.get_yscale() == "linear"
    assert top.get_legend().get_window_extent().y1 < top.get_window_extent().y0  # off the curves
