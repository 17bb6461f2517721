"""Layout fixes applied after rliable has drawn a figure, decided from what was drawn.

rliable sizes its text for single large paper figures; in this project's narrow panels its tick
labels run into each other (``−0.0250.000``) and its x-label sits at a fixed figure fraction,
far below a tall figure. Each helper here draws the figure, measures the text's bounding boxes
and changes only what collides.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

GAP_PX = 4.0  # the least space between two labels, in pixels


def _renderer(fig: Figure):
    """The renderer text is measured with (Agg's, the backend ``reports.plots`` selects)."""
    get = getattr(fig.canvas, "get_renderer", None)
    return get() if get is not None else fig._get_renderer()


def boxes_overlap(a: Bbox, b: Bbox, gap: float = GAP_PX) -> bool:
    """Do ``a`` and ``b`` come closer than ``gap`` pixels on both axes?"""
    return (a.x0 < b.x1 + gap and b.x0 < a.x1 + gap
            and a.y0 < b.y1 + gap and b.y0 < a.y1 + gap)


def shown_x_tick_labels(ax) -> list[Text]:
    """The x tick labels the figure shows (major and minor): non-empty, visible, inside the
    view limits."""
    low, high = sorted(ax.get_xlim())
    span = high - low
    return [t for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True)
            if t.get_visible() and t.get_text()
            and low - 1e-9 * span <= t.get_position()[0] <= high + 1e-9 * span]


def _tick_collisions(fig: Figure, axes: Sequence) -> bool:
    renderer = _renderer(fig)
    boxes = [t.get_window_extent(renderer) for ax in axes for t in shown_x_tick_labels(ax)]
    return any(boxes_overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def untangle_x_ticks(fig: Figure, axes: Sequence, max_ticks: int = 4) -> None:
    """Fewer x ticks until no two tick labels touch, within a panel or across neighbouring
    panels (every panel gets the same count, so the row reads alike); when even two or three
    ticks a panel collide, the labels are slanted instead."""
    for n in range(max_ticks, 1, -1):
        for ax in axes:
            ax.xaxis.set_major_locator(MaxNLocator(n))
        fig.canvas.draw()
        if not _tick_collisions(fig, axes):
            return
    for ax in axes:
        for label in ax.get_xticklabels():
            label.set(rotation=35, ha="right", rotation_mode="anchor")
    fig.canvas.draw()


def place_below_ticks(fig: Figure, axes: Sequence, text: Text, gap_px: float = 8.0) -> None:
    """Put ``text`` (a figure text) centred under ``axes``, ``gap_px`` below their lowest tick
    label: rliable's fixed figure fraction leaves inches of blank space under a tall figure."""
    fig.canvas.draw()
    renderer = _renderer(fig)
    bottoms = [t.get_window_extent(renderer).y0 for ax in axes for t in shown_x_tick_labels(ax)]
    bottoms += [ax.get_window_extent(renderer).y0 for ax in axes]
    height = fig.bbox.height
    left = min(ax.get_position().x0 for ax in axes)
    right = max(ax.get_position().x1 for ax in axes)
    text.set(position=((left + right) / 2, (min(bottoms) - gap_px) / height), ha="center",
             va="top")


def separate_texts(fig: Figure, texts: Sequence[Text], step_pt: float = 9.0,
                   tries: int = 8) -> None:
    """Move point labels (``annotate`` texts with an offset in points) apart: a label that
    touches one placed before it goes alternately below and further above its point."""
    renderer = _renderer(fig)
    fig.canvas.draw()
    placed: list[Bbox] = []
    for text in texts:
        dx, dy = text.xyann
        for attempt in range(tries):
            box = text.get_window_extent(renderer)
            if not any(boxes_overlap(box, other, gap=1.0) for other in placed):
                break
            sign = -1 if attempt % 2 == 0 else 1
            text.xyann = (dx, sign * (abs(dy) + step_pt * (attempt // 2 + 1)))
            text.set_va("top" if sign < 0 else "bottom")
        placed.append(text.get_window_extent(renderer))
